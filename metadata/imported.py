"""Imported metadata lists: a MetaCLIP-style metadata.json as a language's source.

MetaCLIP 2 does not rebuild English: it reuses MetaCLIP 1's `metadata.json` (a JSON list of
500k entries) as its English metadata, and English anchors the whole curation (`p`, and with it
every `t_lang`, comes from the English counts). So any language may take its entries from such
a file: `jobs/build_metadata.py --import-metadata en=metadata.json`.

A file is a JSON list of strings (MetaCLIP 1's metadata.json, MetaCLIP 2's per-language
data/metadata/<lang>.json) or a JSON object whose keys are the entries (MetaCLIP 2's
metadata_per_lang/<lang>.json, entry -> source letter). The entries become the `imported`
source of their language; `MetadataConfig.imported_replaces_build` (default, the reference's
way) makes them the language's only source besides the numbers, else they come first and the
built sources add what they lack (caps then count only entries new after the list).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from metadata.merge import LanguageCandidates


def parse_import_specs(specs: Iterable[str] | None) -> dict[str, str]:
    """{lang: path} from 'LANG=PATH' items; a language given twice is an error."""
    out: dict[str, str] = {}
    for spec in specs or ():
        lang, sep, path = spec.partition("=")
        lang = lang.strip()
        if not sep or not lang or not path.strip():
            raise ValueError(f"--import-metadata wants LANG=PATH, got {spec!r}")
        if lang in out:
            raise ValueError(f"--import-metadata: language {lang} given twice")
        out[lang] = path.strip()
    return dict(sorted(out.items()))


def read_metadata_json(path: str) -> list[str]:
    """The entries of a MetaCLIP-style metadata file (local or s3://), in file order."""
    from curation import storage

    try:
        data = json.loads(storage.read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON metadata file ({exc})") from None
    if isinstance(data, dict):
        data = list(data)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a metadata file is a JSON list of entries (or an object keyed by entry), "
                         f"got {type(data).__name__}")
    bad = next((i for i, e in enumerate(data) if not isinstance(e, str)), None)
    if bad is not None:
        raise ValueError(f"{path}: entry {bad} is {type(data[bad]).__name__}, not a string")
    return data


def with_imports(groups: Iterable[LanguageCandidates], imported: Mapping[str, list[str]],
                 replace: bool = True) -> Iterator[LanguageCandidates]:
    """The languages of `groups` with the imported lists added; languages that only an import
    holds come after, in code point order.

    An imported list belongs to the unit named like its language (the language's own Wikipedia
    code), so without `replace` the built sources of that code count their caps after it. With
    `replace`, a language with an import keeps none of its built candidates.
    """
    done = set()
    for group in groups:
        entries = imported.get(group.lang)
        if entries is not None:
            done.add(group.lang)
            units = {} if replace else {u: dict(s) for u, s in group.units.items()}
            units.setdefault(group.lang, {})["imported"] = entries
            keep = (lambda d: {}) if replace else dict
            group = LanguageCandidates(group.lang, units, keep(group.rank_by), keep(group.rules))
        yield group
    for lang in sorted(set(imported) - done):
        yield LanguageCandidates(lang, {lang: {"imported": imported[lang]}})
