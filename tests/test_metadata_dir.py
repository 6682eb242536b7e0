"""curation.metadata_dir's checksums and the curate job's metadata caches (curation.annotate):
a damaged or replaced file is refused with both digests; replaced metadata, local or on the
loopback S3 server, is read again instead of matched with the old automata."""

from __future__ import annotations

import os

import pytest

from curation import annotate, metadata_dir, storage
from curation.matcher import match_ids
from curation.metadata_dir import MetadataChecksumError, MetadataDir, write_language, write_manifest
from curation.samples.alt_texts import write_sample_metadata

# two versions of a one-language metadata: "cat" only in A, "bird" only in B, "dog" in both (other ids)
VERSION_A = ("A", ["dog", "cat"])
VERSION_B = ("B", ["bird", "dog"])


def _write(root, version: str, entries: list[str]) -> str:
    info = write_language(root, "en", entries, ["concept"] * len(entries))
    write_manifest(root, version, {"en": info}, {"test": version})
    return str(root)


def _upload(root: str, bucket: str, prefix: str) -> str:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                storage.write_bytes(f"s3://{bucket}/{prefix}/{os.path.relpath(path, root)}", f.read())
    return f"s3://{bucket}/{prefix}"


def _matches(res, *texts: str) -> list[list[int]]:
    automaton = res.automaton("en")
    return [match_ids(automaton, t).tolist() for t in texts]


def _flip_bit(path: str, offset: int) -> None:
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)


# --- item 6: every file is checked against the manifest before it is parsed ---------------------


def test_bit_flipped_automaton_is_refused_with_both_digests(tmp_path):
    write_sample_metadata(tmp_path, ["en", "de"])
    path = str(tmp_path / "automata" / "en.ac")
    expected = MetadataDir(tmp_path).manifest["languages"]["en"]["sha256"]["automata/en.ac"]
    # a flip inside the node table: pyahocorasick loads it and matches differently, no error
    _flip_bit(path, 80)
    md = MetadataDir(tmp_path)
    with pytest.raises(MetadataChecksumError) as err:
        md.automaton("en")
    msg = str(err.value)
    assert path in msg and expected in msg and metadata_dir.file_sha256(path) in msg
    assert md.loads == 0 and md.automaton("de") is not None  # the other languages stay usable


def test_replaced_automaton_and_entries_are_refused(tmp_path):
    """A valid file of other entries in place of the recorded one loads fine today; it must not."""
    root = _write(tmp_path / "a", *VERSION_A)
    other = _write(tmp_path / "b", *VERSION_B)
    os.replace(os.path.join(other, "automata", "en.ac"), os.path.join(root, "automata", "en.ac"))
    with pytest.raises(MetadataChecksumError, match="en.ac: sha256 [0-9a-f]{64} does not match [0-9a-f]{64}"):
        MetadataDir(root).automaton("en")
    os.replace(os.path.join(other, "entries", "en.parquet"), os.path.join(root, "entries", "en.parquet"))
    with pytest.raises(MetadataChecksumError, match="en.parquet"):
        MetadataDir(root).entries("en")
    with pytest.raises(MetadataChecksumError, match="en.parquet"):
        MetadataDir(root).entries_table("en")


def test_checksums_are_computed_once_per_file_not_per_load(tmp_path, monkeypatch):
    write_sample_metadata(tmp_path, ["en", "de"])
    hashed = []
    real = metadata_dir.file_sha256
    monkeypatch.setattr(metadata_dir, "file_sha256", lambda path: hashed.append(os.path.basename(path)) or real(path))
    md = MetadataDir(tmp_path, max_loaded=1)
    for lang in ("en", "de", "en", "de", "en"):
        assert md.automaton(lang) is not None
    assert md.loads == 5 and sorted(hashed) == ["de.ac", "en.ac"]  # the LRU reloads; the hash is remembered
    # a file replaced after it was checked (new inode) is checked again when it is next loaded
    other = _write(tmp_path / "other", *VERSION_B)
    os.replace(os.path.join(other, "automata", "en.ac"), tmp_path / "automata" / "en.ac")
    md.automaton("de")  # evicts en
    with pytest.raises(MetadataChecksumError):
        md.automaton("en")


# --- item 7: the caches are keyed by the manifest's digest, not by the URI ----------------------


def test_replaced_s3_metadata_is_fetched_again(tmp_path, s3_bucket):
    cache = str(tmp_path / "cache")
    uri = _upload(_write(tmp_path / "a", *VERSION_A), s3_bucket, "meta")
    first = annotate.worker_resources(uri, None, max_loaded=4, cache_dir=cache)
    assert first.metadata.version == "A"
    assert _matches(first, "a cat", "a dog", "a bird") == [[1], [0], []]

    uri_b = _upload(_write(tmp_path / "b", *VERSION_B), s3_bucket, "meta")  # same prefix, same keys
    assert uri_b == uri
    fresh = annotate.WorkerResources(uri, None, max_loaded=4, cache_dir=cache)
    assert fresh.metadata.version == "B"
    assert _matches(fresh, "a cat", "a dog", "a bird") == [[], [1], [0]]
    assert fresh.local_root != first.local_root  # one cache directory per manifest digest
    # the process-wide cache of a reused Python worker sees the new version too
    again = annotate.worker_resources(uri, None, max_loaded=4, cache_dir=cache)
    assert again is not first and again.metadata.version == "B"
    assert _matches(again, "a cat", "a dog", "a bird") == [[], [1], [0]]
    assert annotate.worker_resources(uri, None, max_loaded=4, cache_dir=cache) is again  # unchanged: reused
    with pytest.raises(ValueError, match=f"changed during the run .*{first.manifest_sha256}"):
        annotate.worker_resources(uri, None, max_loaded=4, cache_dir=cache,
                                  expected_manifest_sha256=first.manifest_sha256)
    # and back to A: its cache directory (already complete) is used again, still verified
    _upload(_write(tmp_path / "a2", *VERSION_A), s3_bucket, "meta")
    back = annotate.worker_resources(uri, None, max_loaded=4, cache_dir=cache)
    assert back.metadata.version == "A" and _matches(back, "a cat", "a bird") == [[1], []]


def test_damaged_cached_automaton_is_downloaded_again(tmp_path, s3_bucket):
    cache = str(tmp_path / "cache")
    uri = _upload(_write(tmp_path / "a", *VERSION_A), s3_bucket, "meta")
    res = annotate.WorkerResources(uri, None, max_loaded=4, cache_dir=cache)
    assert _matches(res, "a cat") == [[1]]
    cached = os.path.join(res.local_root, "automata", "en.ac")
    other = _write(tmp_path / "b", *VERSION_B)
    os.replace(os.path.join(other, "automata", "en.ac"), cached)  # the cache file no longer holds A's automaton
    again = annotate.WorkerResources(uri, None, max_loaded=4, cache_dir=cache)
    assert again.local_root == res.local_root
    assert _matches(again, "a cat", "a dog", "a bird") == [[1], [0], []]
    assert metadata_dir.file_sha256(cached) == again.metadata.manifest["languages"]["en"]["sha256"]["automata/en.ac"]


def test_local_metadata_replaced_in_place_is_loaded_again(tmp_path):
    root = _write(tmp_path / "meta", *VERSION_A)
    first = annotate.worker_resources(root, None, max_loaded=4)
    assert _matches(first, "a cat") == [[1]]
    _write(root, *VERSION_B)  # a rebuild into the same directory
    res = annotate.worker_resources(root, None, max_loaded=4)
    assert res is not first and res.metadata.version == "B"
    assert _matches(res, "a cat", "a bird") == [[], [0]]
    assert res.manifest_sha256 == metadata_dir.manifest_sha256(root) != first.manifest_sha256
