"""Merge one language's source candidates into its final entry list, with stable entry ids.

Entry id order (documented, stable, never from iterating a set): sources in the order of
`MetadataConfig.sources` (wordnet, wiki_unigram, wiki_bigram, wiki_title, number); within a
source, entries sorted by Unicode code point. An entry already taken by an earlier source is
skipped ("first source wins"), so its source label is the earliest one. The result depends
only on the language's own candidates, so adding another language never changes these ids.

Cleaning: NFC, whitespace runs collapsed to one space, trimmed; dropped when empty,
punctuation-only (`curation.text.is_punctuation_only`) or longer than `max_entry_chars`.
Every candidate is either kept or counted under `dropped_<reason>` per source.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from curation.text import is_punctuation_only
from metadata.config import MetadataConfig

_WS_RE = re.compile(r"\s+")


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


def merge_language(candidates: dict[str, Iterable[str]], config: MetadataConfig | None = None
                   ) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """(entries, sources, stats per source) of one language; entry i gets id i."""
    config = config or MetadataConfig()
    candidates = dict(candidates)
    if "number" in config.sources:
        candidates["number"] = number_entries(config.numbers_upto)
    entries: list[str] = []
    sources: list[str] = []
    seen: set[str] = set()
    stats: dict[str, dict[str, int]] = {}
    for source in config.sources:
        st: Counter = Counter()
        cleaned = set()
        for raw in candidates.get(source, ()):
            st["candidates"] += 1
            entry, reason = clean_entry(raw, config.max_entry_chars)
            if reason:
                st[f"dropped_{reason}"] += 1
                continue
            if entry in cleaned:
                st["dropped_duplicate_in_source"] += 1
                continue
            cleaned.add(entry)
        for entry in sorted(cleaned):
            if entry in seen:
                st["dropped_duplicate"] += 1
                continue
            seen.add(entry)
            entries.append(entry)
            sources.append(source)
            st["kept"] += 1
        if st:
            stats[source] = dict(sorted(st.items()))
    return entries, sources, stats
