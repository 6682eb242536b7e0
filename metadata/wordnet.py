"""WordNet sources: English synset names from WordNet 3.0, other languages' lemmas from OMW.

- Princeton WordNet 3.0 database files `data.{noun,verb,adj,adv}`: one synset per line,
  `offset lex_filenum ss_type w_cnt word lex_id ...`; the synset's name is its first word
  (as NLTK's `dog.n.01`), with '_' -> ' ' and adjective position markers ("(a)", "(p)",
  "(ip)") removed. License header lines start with two spaces.
- Open Multilingual Wordnet tab files (`wn-data-<iso>.tab`, also `wn-cldr-<iso>.tab`):
  `offset-pos<TAB><iso>:lemma<TAB>lemma`; every lemma is kept ('_' -> ' '), other columns
  (`:def`, `:exe`) ignored; '#' lines are headers. The ISO 639-3 code maps to a metadata
  language through `curation.languages` (cmn -> zh, nob -> no, ...).

Files may be plain or compressed (bz2/xz/gz by magic bytes). Lines that cannot be decoded or
parsed are counted (`invalid_utf8`, `bad_line`), never fatal.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from metadata.dump_reader import ERRORS, open_decompressed, open_input

Record = tuple[str, str, str, str, int]

_WN_DATA_RE = re.compile(r"^data\.(noun|verb|adj|adv)(?:\.(?:xz|bz2|gz))?$")
_TAB_RE = re.compile(r"^wn-(?:data|cldr)-([a-z]{3})(?:[-_][A-Za-z0-9]+)?\.tab(?:\.(?:xz|bz2|gz))?$")
_ADJ_MARKER_RE = re.compile(r"\((?:a|p|ip)\)$")


def wordnet_kind(path: str) -> str | None:
    """'wn30' for a WordNet 3.0 data file, 'omw' for an OMW tab file, None otherwise."""
    name = os.path.basename(path)
    if _WN_DATA_RE.match(name):
        return "wn30"
    if _TAB_RE.match(name):
        return "omw"
    return None


def find_wordnet_files(root: str) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if wordnet_kind(p):
                out.append(p)
    return sorted(out)


def _lines(path: str, stats: Counter) -> Iterator[str]:
    with open_input(path) as raw:
        stream = open_decompressed(raw)
        for bline in stream:
            try:
                yield bline.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                stats["invalid_utf8"] += 1


def synset_names(path: str, stats: Counter | None = None) -> Iterator[str]:
    """First lemma of each synset of a WordNet 3.0 data file."""
    stats = stats if stats is not None else Counter()
    for line in _lines(path, stats):
        if not line or line.startswith("  "):
            continue
        parts = line.split(" ", 5)
        if len(parts) < 5 or not parts[0].isdigit():
            stats["bad_line"] += 1
            continue
        word = _ADJ_MARKER_RE.sub("", parts[4]).replace("_", " ").strip()
        if word:
            stats["synsets"] += 1
            yield word


def omw_lemmas(path: str, stats: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(iso639-3 code, lemma) of every lemma row of an OMW tab file."""
    stats = stats if stats is not None else Counter()
    m = _TAB_RE.match(os.path.basename(path))
    file_iso = m.group(1) if m else ""
    for line in _lines(path, stats):
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            stats["bad_line"] += 1
            continue
        iso, _, field = parts[1].partition(":")
        if field != "lemma":
            if not _:
                stats["bad_line"] += 1
            continue
        lemma = parts[2].replace("_", " ").strip()
        if lemma:
            stats["lemmas"] += 1
            yield (iso or file_iso), lemma


def wordnet_records(path: str, align_to_lid: bool = True, languages: Iterable[str] | None = None) -> Iterator[Record]:
    """('w', lang, lemma, source, 1) for one wordnet file, then ('s', lang, stat, file, n)."""
    from metadata.alignment import lang_for_iso3

    name = os.path.basename(path)
    stats: Counter = Counter()
    wanted = set(languages) if languages else None
    kind = wordnet_kind(path)
    stats["inputs"] += 1
    seen_langs: set[str] = set()
    try:
        if kind == "wn30":
            if wanted is None or "en" in wanted:
                seen_langs.add("en")
                for word in synset_names(path, stats):
                    yield ("w", "en", word, "wn30", 1)
        elif kind == "omw":
            cache: dict[str, str] = {}
            for iso, lemma in omw_lemmas(path, stats):
                lang = cache.get(iso)
                if lang is None:
                    lang = cache[iso] = lang_for_iso3(iso, align_to_lid)
                if wanted is not None and lang not in wanted:
                    stats["excluded_language"] += 1
                    continue
                seen_langs.add(lang)
                yield ("w", lang, lemma, "omw", 1)
        else:
            stats["ignored_file"] += 1
    except ERRORS as exc:
        stats["corrupt_input"] += 1
        stats[f"corrupt_input:{type(exc).__name__}"] += 1
    lang = ",".join(sorted(seen_langs))
    for key, n in sorted(stats.items()):
        yield ("s", lang, f"wordnet:{key}", name, int(n))
