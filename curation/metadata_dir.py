"""The versioned metadata directory (DESIGN section 5): write one language, read entries and automata.

Layout:
    manifest.json            version, build config, per-language counts by source, checksums
    entries/<lang>.parquet   entry_id (int32, dense from 0), entry, source
    automata/<lang>.ac       pyahocorasick STORE_INTS automaton, value = entry_id

Both the metadata build (writer) and the curate job and sample generator (readers) use this
module, so the format lives in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, OrderedDict
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from curation.matcher import automaton_digest, build_automaton, load_automaton, save_automaton
from curation.schemas import METADATA_ENTRIES
from curation.storage import atomic_local_path

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_language(root: str | os.PathLike, lang: str, entries: Sequence[str], sources: Sequence[str]) -> dict:
    """Write entries/<lang>.parquet and automata/<lang>.ac; entry i gets id i. Returns manifest info."""
    if len(entries) != len(sources):
        raise ValueError("entries and sources differ in length")
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "entries"), exist_ok=True)
    os.makedirs(os.path.join(root, "automata"), exist_ok=True)
    table = pa.table(
        {
            "entry_id": pa.array(range(len(entries)), pa.int32()),
            "entry": pa.array(list(entries), pa.string()),
            "source": pa.array(list(sources), pa.string()),
        },
        schema=METADATA_ENTRIES,
    )
    entries_path = os.path.join(root, "entries", f"{lang}.parquet")
    with atomic_local_path(entries_path) as tmp:
        # fixed writer options so identical entries give identical bytes
        pq.write_table(table, tmp, compression="zstd", write_statistics=False, store_schema=True)
    ac_path = os.path.join(root, "automata", f"{lang}.ac")
    automaton = build_automaton(entries)
    save_automaton(automaton, ac_path)
    return {
        "entries": len(entries),
        "by_source": dict(sorted(Counter(sources).items())),
        "sha256": {
            f"entries/{lang}.parquet": file_sha256(entries_path),
            f"automata/{lang}.ac": file_sha256(ac_path),
        },
        # the .ac bytes differ between saves of the same automaton; its content does not
        "automaton_content_sha256": automaton_digest(automaton),
    }


def write_manifest(root: str | os.PathLike, version: str, languages: dict[str, dict], build_config: dict) -> dict:
    """Write manifest.json last, so a directory with a manifest is complete."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "languages": {k: languages[k] for k in sorted(languages)},
        "build_config": build_config,
    }
    path = os.path.join(os.fspath(root), MANIFEST)
    with atomic_local_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    return manifest


class MetadataDir:
    """Read side of a local metadata directory, with a bounded cache of loaded automata."""

    def __init__(self, root: str | os.PathLike, max_loaded: int = 16):
        self.root = os.fspath(root)
        path = os.path.join(self.root, MANIFEST)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.root}: no {MANIFEST}; not a (complete) metadata directory")
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        self.max_loaded = max_loaded
        self._automata: OrderedDict[str, object] = OrderedDict()

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def languages(self) -> list[str]:
        return sorted(self.manifest["languages"])

    def num_entries(self, lang: str) -> int:
        return int(self.manifest["languages"][lang]["entries"])

    def entries(self, lang: str) -> list[str]:
        table = pq.read_table(os.path.join(self.root, "entries", f"{lang}.parquet"), columns=["entry"])
        return table.column("entry").to_pylist()

    def entries_table(self, lang: str) -> pa.Table:
        return pq.read_table(os.path.join(self.root, "entries", f"{lang}.parquet"))

    def automaton(self, lang: str):
        """The language's automaton, loaded once; least recently used ones are dropped past max_loaded."""
        if lang in self._automata:
            self._automata.move_to_end(lang)
            return self._automata[lang]
        automaton = load_automaton(os.path.join(self.root, "automata", f"{lang}.ac"))
        self._automata[lang] = automaton
        while len(self._automata) > self.max_loaded:
            self._automata.popitem(last=False)
        return automaton
