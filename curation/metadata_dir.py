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
    """Read side of a local metadata directory, with a bounded cache of loaded automata.

    The cache is bounded by count and, with `max_loaded_mb`, by size: automata of the full
    metadata range from kilobytes to hundreds of megabytes (a loaded automaton takes about its
    file's size in memory), so a count alone bounds memory only when languages are alike.
    """

    def __init__(self, root: str | os.PathLike, max_loaded: int = 16, max_loaded_mb: float = 0):
        self.root = os.fspath(root)
        path = os.path.join(self.root, MANIFEST)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.root}: no {MANIFEST}; not a (complete) metadata directory")
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        self.max_loaded = max_loaded
        self.max_loaded_bytes = int(max_loaded_mb * 1024 * 1024)
        self._automata: OrderedDict[str, tuple[object, int]] = OrderedDict()  # lang -> (automaton, file bytes)
        self.loads = 0  # automata read from disk: far above the language count means the cache is too small

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
        """The language's automaton, loaded once; least recently used ones are dropped past
        max_loaded automata or max_loaded_mb (the one just asked for always stays)."""
        if lang in self._automata:
            self._automata.move_to_end(lang)
            return self._automata[lang][0]
        path = os.path.join(self.root, "automata", f"{lang}.ac")
        automaton = load_automaton(path)
        self.loads += 1
        self._automata[lang] = (automaton, os.path.getsize(path))
        while len(self._automata) > 1 and (len(self._automata) > self.max_loaded or self._over_budget()):
            self._automata.popitem(last=False)
        return automaton

    def _over_budget(self) -> bool:
        return bool(self.max_loaded_bytes) and sum(size for _, size in self._automata.values()) > self.max_loaded_bytes
