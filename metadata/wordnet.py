"""WordNet sources: English synset names from WordNet 3.0, other languages' lemmas from OMW.

- Princeton WordNet 3.0 database files `data.{noun,verb,adj,adv}`: one synset per line,
  `offset lex_filenum ss_type w_cnt word lex_id ...`; the synset's name is its first word as
  NLTK's `ss.name()` gives it (MetaCLIP's English WordNet source): adjective position markers
  ("(a)", "(p)", "(ip)") removed, lower-cased ("Einstein" -> "einstein": NLTK names synsets by
  `lemma.lower()`), then '_' -> ' '. With `wordnet_cut_name_at_dot` the name is also cut at its
  first '.' as MetaCLIP's `name[:name.find(".")]` does. License header lines start with two spaces.
- Open Multilingual Wordnet tab files (`wn-data-<iso>.tab`, also `wn-cldr-<iso>.tab`):
  `offset-pos<TAB><iso>:lemma<TAB>lemma` (older files, DanNet and the Norwegian wordnet among
  them, write a bare `lemma` and take their language from the file name or the header line);
  every lemma is kept with '_' -> ' ' and its '+'
  markers removed ("50周年+的" -> "50周年的": OMW marks affixes and morpheme joints with '+',
  which no text contains; MetaCLIP 2 drops them the same way), other columns (`:def`, `:exe`)
  ignored; '#' lines are headers. The ISO 639-3 code maps to a unit (its language's Wikipedia
  code, metadata/alignment.py) and a metadata language through `curation.languages`
  (cmn -> zh, nob -> no, ...).

Files may be plain or compressed (bz2/xz/gz by magic bytes). Lines that cannot be decoded or
parsed are counted (`invalid_utf8`, `bad_line`), never fatal.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from metadata.config import MetadataConfig
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


def synset_names(path: str, stats: Counter | None = None, cut_at_dot: bool = False) -> Iterator[str]:
    """The NLTK name (without `.pos.nn`) of each synset of a WordNet 3.0 data file, one per synset."""
    stats = stats if stats is not None else Counter()
    for line in _lines(path, stats):
        if not line or line.startswith("  "):
            continue
        parts = line.split(" ", 5)
        if len(parts) < 5 or not parts[0].isdigit():
            stats["bad_line"] += 1
            continue
        word = _ADJ_MARKER_RE.sub("", parts[4]).lower()
        if cut_at_dot and "." in word:
            word = word[:word.index(".")]
            stats["names_cut_at_dot"] += 1
        word = word.replace("_", " ").strip()
        if word:
            stats["synsets"] += 1
            yield word
        else:
            stats["empty_name"] += 1


def omw_lemmas(path: str, stats: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(iso639-3 code, lemma) of every lemma row of an OMW tab file."""
    stats = stats if stats is not None else Counter()
    m = _TAB_RE.match(os.path.basename(path))
    file_iso = m.group(1) if m else ""
    for line in _lines(path, stats):
        if not line:
            continue
        if line.startswith("#"):  # "# <project><TAB><iso><TAB><url><TAB><licence>"
            head = line.split("\t")
            if not file_iso and len(head) > 1:
                file_iso = head[1].strip()
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            stats["bad_line"] += 1
            continue
        # "<iso>:lemma", or a bare "lemma" in older files (DanNet, the Norwegian wordnet), whose
        # language is the file's
        iso, colon, field = parts[1].partition(":")
        if not colon:
            if iso != "lemma":
                stats["bad_line"] += 1
                continue
            iso, field = "", "lemma"
        if field != "lemma":  # lemma:root, def, exe, ...
            continue
        lemma = parts[2].replace("_", " ")
        if "+" in lemma:
            lemma = lemma.replace("+", "")
            stats["plus_markers_removed"] += 1
        lemma = lemma.strip()
        if lemma:
            stats["lemmas"] += 1
            yield (iso or file_iso), lemma


def wordnet_records(path: str, align_to_lid: bool = True, languages: Iterable[str] | None = None,
                    config: MetadataConfig | None = None) -> Iterator[Record]:
    """('w', unit, lemma, source, 1) for one wordnet file, then ('s', langs, stat, file, n).

    `languages` are metadata languages; a unit is the Wikipedia code of the lemma's language.
    """
    from metadata.alignment import lang_for_iso3, unit_for_iso3

    config = config or MetadataConfig()
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
                for word in synset_names(path, stats, cut_at_dot=config.wordnet_cut_name_at_dot):
                    yield ("w", "en", word, "wn30", 1)
        elif kind == "omw":
            cache: dict[str, tuple[str, str]] = {}
            for iso, lemma in omw_lemmas(path, stats):
                got = cache.get(iso)
                if got is None:
                    got = cache[iso] = (unit_for_iso3(iso), lang_for_iso3(iso, align_to_lid))
                unit, lang = got
                if wanted is not None and lang not in wanted:
                    stats["excluded_language"] += 1
                    continue
                seen_langs.add(lang)
                yield ("w", unit, lemma, "omw", 1)
        else:
            stats["ignored_file"] += 1
    except ERRORS as exc:
        stats["corrupt_input"] += 1
        stats[f"corrupt_input:{type(exc).__name__}"] += 1
    lang = ",".join(sorted(seen_langs))
    for key, n in sorted(stats.items()):
        yield ("s", lang, f"wordnet:{key}", name, int(n))
