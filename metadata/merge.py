"""Merge one language's candidates into its final entry list, with caps and stable entry ids.

As the reference does it (MetaCLIP 2 metadata/build_metadata.py, then align_lid_to_wiki.py):

1. per unit (one Wikipedia code, metadata/alignment.py), sources in `MetadataConfig.sources`
   order (imported, number, wordnet, wiki_unigram, wiki_bigram, wiki_title): each candidate is
   cleaned; one already taken by the unit is skipped; a capped source (`Ranked.cap`) walks its
   candidates best first and stops once `cap` *new* entries are taken, so duplicates of
   earlier sources (a unigram that is a WordNet lemma, a title that is a unigram) do not use up
   the cap;
2. the units of the language are unioned (zh + zh_yue + zh_classical ...; every code that
   feeds `other`): an entry's source is the earliest one any unit took it from.

Entry id order (documented, stable, never from iterating a set): sources in the order of
`MetadataConfig.sources`; within a source, entries sorted by Unicode code point. The result
depends only on the language's own candidates, so adding another language never changes these
ids.

Cleaning: NFC, whitespace runs collapsed to one space, trimmed; dropped when empty,
punctuation-only (`curation.text.is_punctuation_only`) or longer than `max_entry_chars`.
Every candidate a unit examines is either kept or counted under `dropped_<reason>`; the ones a
cap never reached are `over_cap`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from curation.text import is_punctuation_only
from metadata.config import MetadataConfig

_WS_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Ranked:
    """One source's candidates of one unit.

    `entries` best first; `cap`: at most this many new entries are taken (None: every new one);
    `available`: how many candidates the source's rule offered before any cap (the report's
    "before"), when `entries` is only the head of them (the build sends a capped source's
    candidates only down to its cap plus what earlier sources can have taken).
    """

    entries: Sequence[str]
    cap: int | None = None
    available: int | None = None


@dataclass
class LanguageCandidates:
    """What the build hands the merge for one language: {unit: {source: candidates}}, what
    ranked each unit's titles ('pageviews' / 'inlinks') and its rules ('metaclip1' / 'metaclip2')."""

    lang: str
    units: dict[str, dict[str, Ranked | Iterable[str]]]
    rank_by: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)


class Merged(NamedTuple):
    entries: list[str]
    sources: list[str]
    by_source: dict[str, dict[str, int]]  # per source, summed over units, with the final `entries`
    by_unit: dict[str, dict[str, dict[str, int]]]  # per unit, per source


def clean_entry(raw: str, max_chars: int = 256) -> tuple[str | None, str | None]:
    """(entry, None) or (None, reason) with reason empty / punctuation_only / too_long."""
    if not isinstance(raw, str):
        return None, "empty"
    entry = _WS_RE.sub(" ", unicodedata.normalize("NFC", raw)).strip()
    if not entry:
        return None, "empty"
    if len(entry) > max_chars:
        return None, "too_long"
    if is_punctuation_only(entry):
        return None, "punctuation_only"
    return entry, None


def number_entries(upto: int) -> list[str]:
    return [str(i) for i in range(upto + 1)]


def _ranked(c: Ranked | Iterable[str]) -> Ranked:
    if isinstance(c, Ranked):
        return c
    return Ranked(c if isinstance(c, Sequence) and not isinstance(c, str) else list(c))


def select_unit(sources: Mapping[str, Ranked | Iterable[str]], config: MetadataConfig | None = None
                ) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """({entry: source} taken by one unit, stats per source); step 1 of the module docstring."""
    config = config or MetadataConfig()
    taken: dict[str, str] = {}
    stats: dict[str, dict[str, int]] = {}
    for source in config.sources:
        if source == "number":
            cands = Ranked(number_entries(config.numbers_upto))
        elif source in sources:
            cands = _ranked(sources[source])
        else:
            continue
        entries, cap = cands.entries, cands.cap
        st: Counter = Counter()
        st["candidates"] = len(entries) if cands.available is None else max(cands.available, len(entries))
        if cap is not None:
            st["cap"] = max(cap, 0)
        in_source: set[str] = set()
        new = examined = 0
        for raw in entries:
            if cap is not None and new >= cap:
                break
            examined += 1
            entry, reason = clean_entry(raw, config.max_entry_chars)
            if reason:
                st[f"dropped_{reason}"] += 1
                continue
            if entry in in_source:
                st["dropped_duplicate_in_source"] += 1
                continue
            in_source.add(entry)
            if entry in taken:
                st["dropped_duplicate"] += 1
                continue
            taken[entry] = source
            new += 1
        st["selected"] = new
        if cap is not None:
            st["over_cap"] = st["candidates"] - examined
            if new < cap and examined == len(entries) < st["candidates"]:
                # the head sent was too short to fill the cap: a bound of the build is wrong
                st["cap_unfilled_truncated"] = cap - new
        stats[source] = dict(sorted((k, v) for k, v in st.items() if v or k in ("selected", "candidates", "cap")))
    return taken, stats


def merge_language(units: Mapping[str, Mapping[str, Ranked | Iterable[str]]], config: MetadataConfig | None = None
                   ) -> Merged:
    """Entries (entry i gets id i), their sources and the stats of one language from its units."""
    config = config or MetadataConfig()
    order = {s: i for i, s in enumerate(config.sources)}
    best: dict[str, int] = {}
    by_unit: dict[str, dict[str, dict[str, int]]] = {}
    for unit in sorted(units):
        taken, by_unit[unit] = select_unit(units[unit], config)
        for entry, source in taken.items():
            i = order[source]
            if best.get(entry, i) >= i:
                best[entry] = i
    if not units:  # a language without candidates still gets the numbers (curation needs `other`)
        taken, _ = select_unit({}, config)
        best = {e: order[s] for e, s in taken.items()}
    entries = sorted(best, key=lambda e: (best[e], e))
    sources = [config.sources[best[e]] for e in entries]
    final = Counter(sources)
    by_source: dict[str, dict[str, int]] = {}
    for source in config.sources:
        total: Counter = Counter()
        for st in by_unit.values():
            total.update(st.get(source, {}))
        if total or final[source]:
            total["entries"] = final[source]
            by_source[source] = dict(sorted(total.items()))
    return Merged(entries, sources, by_source, by_unit)
