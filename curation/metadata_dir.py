"""The versioned metadata directory (DESIGN section 5): write one language, read entries and automata.

Layout:
    manifest.json            version, build config, per-language counts by source, checksums
    entries/<lang>.parquet   entry_id (int32, dense from 0), entry, source
    automata/<lang>.ac       pyahocorasick STORE_INTS automaton, value = entry_id

Both the metadata build (writer) and the curate job and sample generator (readers) use this
module, so the format lives in one place.

Every file a reader opens is first checked against the sha256 the manifest records for it
(`MetadataChecksumError` on a mismatch, naming the file and both digests): a bit flip in an
automaton otherwise loads without complaint and silently changes which texts match (or
crashes pyahocorasick), and a file replaced after its manifest was read would be matched under
the other version's name. The check runs before the file is parsed and once per file and
process (a file whose size, mtime and inode are unchanged is not hashed again when the LRU
reloads it), so its cost is one read of each automaton per worker, not one per record.
`manifest_sha256` identifies a metadata version by its manifest's bytes, so a cache (the
curate job's per-worker resources, curation.annotate) can tell a replaced directory from the
one it loaded.
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


class MetadataChecksumError(ValueError):
    """A metadata file whose bytes are not those its manifest records (corrupt or replaced)."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_path(root: str) -> str:
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{root}: no {MANIFEST}; not a (complete) metadata directory")
    return path


def manifest_sha256(root: str | os.PathLike) -> str:
    """sha256 of a local metadata directory's manifest.json: the identity of its version."""
    return file_sha256(_manifest_path(os.fspath(root)))


def write_language(root: str | os.PathLike, lang: str, entries: Sequence[str], sources: Sequence[str],
                   padding: str = "project") -> dict:
    """Write entries/<lang>.parquet and automata/<lang>.ac; entry i gets id i. Returns manifest info.
    `padding`: how entries become the automaton's keys (curation.text.pad_entry)."""
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
    automaton = build_automaton(entries, padding)
    save_automaton(automaton, ac_path)
    padding_info = {} if padding == "project" else {"entry_padding": padding}  # older manifests: project
    return {
        **padding_info,
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
        with open(_manifest_path(self.root), "rb") as f:
            raw = f.read()
        self.manifest = json.loads(raw.decode("utf-8"))
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self.max_loaded = max_loaded
        self.max_loaded_bytes = int(max_loaded_mb * 1024 * 1024)
        self._automata: OrderedDict[str, tuple[object, int]] = OrderedDict()  # lang -> (automaton, file bytes)
        self._verified: dict[str, tuple[int, int, int]] = {}  # path -> (size, mtime_ns, inode) when it matched
        self.loads = 0  # automata read from disk: far above the language count means the cache is too small

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def languages(self) -> list[str]:
        return sorted(self.manifest["languages"])

    def num_entries(self, lang: str) -> int:
        return int(self.manifest["languages"][lang]["entries"])

    def verified_path(self, lang: str, rel: str) -> str:
        """The local path of `rel` (e.g. "automata/en.ac"), after checking its bytes against the
        sha256 the manifest records for it; MetadataChecksumError when they differ (or none is recorded)."""
        path = os.path.join(self.root, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such metadata file: {path}") from None
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._verified.get(path) == stamp:
            return path
        expected = self.manifest["languages"].get(lang, {}).get("sha256", {}).get(rel)
        if expected is None:
            raise MetadataChecksumError(f"{path}: the manifest records no sha256 for {rel}; refusing to use it unverified")
        actual = file_sha256(path)
        if actual != expected:
            raise MetadataChecksumError(
                f"{path}: sha256 {actual} does not match {expected} recorded in {MANIFEST} "
                f"(version {self.version}); the file is corrupt or was replaced after the manifest was written"
            )
        self._verified[path] = stamp
        return path

    def entries(self, lang: str) -> list[str]:
        return self.entries_table(lang, columns=["entry"]).column("entry").to_pylist()

    def entries_table(self, lang: str, columns: Sequence[str] | None = None) -> pa.Table:
        return pq.read_table(self.verified_path(lang, f"entries/{lang}.parquet"), columns=columns)

    def automaton(self, lang: str):
        """The language's automaton, loaded once; least recently used ones are dropped past
        max_loaded automata or max_loaded_mb (the one just asked for always stays)."""
        if lang in self._automata:
            self._automata.move_to_end(lang)
            return self._automata[lang][0]
        path = self.verified_path(lang, f"automata/{lang}.ac")  # before parsing: a corrupt file can crash the loader
        automaton = load_automaton(path)
        self.loads += 1
        self._automata[lang] = (automaton, os.path.getsize(path))
        while len(self._automata) > 1 and (len(self._automata) > self.max_loaded or self._over_budget()):
            self._automata.popitem(last=False)
        return automaton

    def _over_budget(self) -> bool:
        return bool(self.max_loaded_bytes) and sum(size for _, size in self._automata.values()) > self.max_loaded_bytes
