"""curation.storage: the same tests on local disk and on a real S3 API server (moto) on loopback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import storage
from curation.storage import StorageConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A fresh empty directory URI: a tmp dir, or a prefix in a fresh bucket on the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/root"


def test_write_read_roundtrip(root):
    uri = storage.join(root, "a", "b.bin")
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"hello")
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"hello"
    with storage.open_write(uri) as f:  # overwrite
        f.write(b"0123456789" * 1000)
    with storage.open_read(uri) as f:
        assert f.read(5) == b"01234"
        f.seek(-3, io.SEEK_END)
        assert f.read() == b"789"
        f.seek(10)
        assert f.read(10) == b"0123456789"
    assert storage.exists(storage.join(root, "a"))  # a directory / prefix with objects


def test_writer_exception_leaves_nothing(root):
    uri = storage.join(root, "x.bin")
    storage.write_bytes(uri, b"old")
    with pytest.raises(RuntimeError):
        with storage.open_write(uri) as f:
            f.write(b"half-written")
            raise RuntimeError("boom")
    assert storage.read_bytes(uri) == b"old"
    assert storage.list_files(root) == [uri]  # no temp file left behind


def test_abandoned_writer_is_not_committed(root):
    uri = storage.join(root, "abandoned.bin")
    f = storage.open_write(uri)
    f.write(b"never closed")
    del f
    assert not storage.exists(uri)
    assert storage.list_files(root) == []


def test_killed_publish_leaves_nothing_complete(root):
    # A process killed in the middle of a publish (no exception handler runs) leaves dest absent.
    dest = storage.join(root, "killed")
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from curation import storage
        with storage.publish({dest!r}) as staging:
            storage.write_bytes(storage.join(staging, "part-0.bin"), b"x")
            os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=120)
    assert proc.returncode == 9
    assert not storage.exists(dest)
    assert not storage.is_complete(dest)


def test_missing_object_errors_name_the_uri(root):
    uri = storage.join(root, "missing.bin")
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.read_bytes(uri)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.open_read(uri)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.download_to_local(uri, None)


def test_list_is_recursive_sorted_and_respects_directory_bounds(root):
    names = ["z.txt", "a/2.txt", "a/1.txt", "a/deep/er/3.txt", "b.txt"]
    for n in names:
        storage.write_bytes(storage.join(root, n), n.encode())
    storage.write_bytes(root + "2/other.txt", b"sibling with a shared name prefix")
    listed = storage.list_files(root)
    assert listed == sorted(storage.join(root, n) for n in names)
    assert storage.list_files(storage.join(root, "a")) == sorted(
        storage.join(root, n) for n in names if n.startswith("a/")
    )
    assert storage.list_files(storage.join(root, "nothing-here")) == []
    for uri in listed:
        assert storage.read_bytes(uri) == uri[len(root) + 1 :].encode()


def test_glob(root):
    for n in ["p/part-0.parquet", "p/part-1.parquet", "p/part-1.crc", "p/sub/part-2.parquet", "q/part-3.parquet"]:
        storage.write_bytes(storage.join(root, n), b"x")
    j = lambda n: storage.join(root, n)  # noqa: E731
    assert storage.glob_paths(j("p/*.parquet")) == [j("p/part-0.parquet"), j("p/part-1.parquet")]
    assert storage.glob_paths(j("*/part-?.parquet")) == [
        j("p/part-0.parquet"), j("p/part-1.parquet"), j("q/part-3.parquet")
    ]
    assert storage.glob_paths(j("p/**/*.parquet")) == [
        j("p/part-0.parquet"), j("p/part-1.parquet"), j("p/sub/part-2.parquet")
    ]
    assert storage.glob_paths(j("p/part-[1-2].*")) == [j("p/part-1.crc"), j("p/part-1.parquet")]
    assert storage.glob_paths(j("p/part-0.parquet")) == [j("p/part-0.parquet")]
    assert storage.glob_paths(j("nope/*")) == []


def test_delete_prefix(root):
    for n in ["d/1", "d/2/3", "dd/4"]:
        storage.write_bytes(storage.join(root, n), b"x")
    assert storage.delete_prefix(storage.join(root, "d")) == 2
    assert storage.list_files(root) == [storage.join(root, "dd/4")]
    assert storage.delete_prefix(storage.join(root, "d")) == 0


def test_parquet_through_file_objects(root):
    table = pa.table({"uuid": [f"{i:032x}" for i in range(500)], "n": list(range(500))})
    uri = storage.join(root, "t.parquet")
    with storage.open_write(uri) as f:
        pq.write_table(table, f)
    with storage.open_read(uri) as f:
        assert pq.read_table(f).equals(table)


def _table(n: int = 3000) -> pa.Table:
    return pa.table({"uuid": [f"{i:032x}" for i in range(n)], "n": list(range(n)),
                     "text": [None if i % 7 == 0 else "ñ" * (i % 13) for i in range(n)]})


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zstd", "row_group_size": 500},
                                    {"compression": None, "use_dictionary": False}])
def test_write_table_writes_the_bytes_of_pq_write_table(root, tmp_path, kwargs):
    """The curate job's outputs must not change when they go through storage (local or S3)."""
    table = _table()
    reference = tmp_path / "reference.parquet"
    pq.write_table(table, reference, **kwargs)
    uri = storage.join(root, "deep", "er", "t.parquet")  # parents are created (locally)
    size = storage.write_table(table, uri, **kwargs)
    assert storage.read_bytes(uri) == reference.read_bytes() and size == reference.stat().st_size
    assert storage.read_table(uri).equals(table)
    assert storage.read_table(uri, columns=["n"]).column("n").to_pylist() == list(range(3000))
    assert storage.list_files(root) == [uri]  # no temporary file left beside it


def test_write_table_failure_keeps_the_old_file(root):
    uri = storage.join(root, "t.parquet")
    storage.write_table(_table(10), uri)
    before = storage.read_bytes(uri)
    with pytest.raises(TypeError):
        storage.write_table(_table(10), uri, no_such_parquet_option=1)
    assert storage.read_bytes(uri) == before and storage.list_files(root) == [uri]


def test_read_table_of_a_missing_file_names_it(root):
    with pytest.raises(FileNotFoundError, match="gone.parquet"):
        storage.read_table(storage.join(root, "gone.parquet"))


@pytest.mark.parametrize("array", [np.arange(1000, dtype=np.float64) / 7, np.zeros((0,), np.float32),
                                   np.arange(12, dtype=np.int64).reshape(3, 4), np.array([True, False])])
def test_save_npy_writes_the_bytes_of_np_save(root, tmp_path, array):
    reference = tmp_path / "reference.npy"
    np.save(reference, array, allow_pickle=False)
    uri = storage.join(root, "probs", "en.npy")
    storage.save_npy(uri, array)
    assert storage.read_bytes(uri) == reference.read_bytes()
    loaded = storage.load_npy(uri)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape and np.array_equal(loaded, array)


def test_save_npy_keeps_the_name_and_refuses_objects(root):
    uri = storage.join(root, "probs.bin")  # np.save(path) would have written probs.bin.npy
    storage.save_npy(uri, np.ones(3))
    assert storage.list_files(root) == [uri]
    with pytest.raises(ValueError):
        storage.save_npy(storage.join(root, "obj.npy"), np.array([{"a": 1}], dtype=object))
    assert storage.list_files(root) == [uri]  # the failed save left nothing


def test_load_npy_never_unpickles(root):
    uri = storage.join(root, "obj.npy")
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    storage.write_bytes(uri, buf.getvalue())
    with pytest.raises(ValueError, match="pickle"):
        storage.load_npy(uri)


def test_makedirs(root):
    uri = storage.join(root, "a", "b")
    storage.makedirs(uri)
    storage.makedirs(uri)  # again: fine
    if storage.is_s3(uri):
        assert not storage.exists(uri)  # nothing to create on S3: a prefix exists with its objects
    else:
        assert os.path.isdir(uri)
    storage.save_npy(storage.join(uri, "x.npy"), np.ones(2))
    assert storage.list_files(root) == [storage.join(uri, "x.npy")]


def test_publish_success(root):
    dest = storage.join(root, "out")
    with storage.publish(dest) as staging:
        assert staging != dest
        storage.write_bytes(storage.join(staging, "part-0.bin"), b"zero")
        storage.write_bytes(storage.join(staging, "sub/part-1.bin"), b"one")
        assert not storage.exists(dest)  # nothing visible before the commit
        assert not storage.is_complete(dest)
    assert storage.is_complete(dest)
    assert storage.list_files(dest) == [
        storage.join(dest, "_SUCCESS"), storage.join(dest, "part-0.bin"), storage.join(dest, "sub/part-1.bin")
    ]
    assert storage.read_bytes(storage.join(dest, "sub/part-1.bin")) == b"one"
    # staging is gone: the only files under root are the published ones
    assert storage.list_files(root) == storage.list_files(dest)


def test_publish_failure_leaves_dest_absent(root):
    dest = storage.join(root, "out")
    with pytest.raises(RuntimeError, match="midway"):
        with storage.publish(dest) as staging:
            storage.write_bytes(storage.join(staging, "part-0.bin"), b"zero")
            raise RuntimeError("failed midway")
    assert not storage.exists(dest)
    assert not storage.is_complete(dest)
    assert storage.list_files(root) == []


def test_publish_failure_leaves_existing_dest_unchanged(root):
    dest = storage.join(root, "out")
    with storage.publish(dest) as staging:
        storage.write_bytes(storage.join(staging, "part-0.bin"), b"v1")
    before = {u: storage.read_bytes(u) for u in storage.list_files(dest)}
    with pytest.raises(ValueError):
        with storage.publish(dest) as staging:
            storage.write_bytes(storage.join(staging, "part-0.bin"), b"v2")
            storage.write_bytes(storage.join(staging, "part-9.bin"), b"v2")
            raise ValueError("bad record")
    assert {u: storage.read_bytes(u) for u in storage.list_files(dest)} == before
    assert storage.is_complete(dest)
    assert storage.list_files(root) == sorted(before)


def test_publish_replaces_existing_output(root):
    dest = storage.join(root, "out")
    with storage.publish(dest) as staging:
        storage.write_bytes(storage.join(staging, "part-0.bin"), b"v1")
        storage.write_bytes(storage.join(staging, "stale.bin"), b"v1 only")
    with storage.publish(dest) as staging:
        storage.write_bytes(storage.join(staging, "part-0.bin"), b"v2")
        storage.write_bytes(storage.join(staging, "part-1.bin"), b"v2")
    assert storage.list_files(dest) == [
        storage.join(dest, n) for n in ["_SUCCESS", "part-0.bin", "part-1.bin"]
    ]
    assert storage.read_bytes(storage.join(dest, "part-0.bin")) == b"v2"
    assert storage.is_complete(dest)
    assert storage.list_files(root) == storage.list_files(dest)


def test_publish_empty_output_is_complete(root):
    dest = storage.join(root, "empty")
    with storage.publish(dest):
        pass
    assert storage.is_complete(dest)
    assert storage.list_files(dest) == [storage.join(dest, "_SUCCESS")]


def test_download_to_local_caches(root, tmp_path):
    uri = storage.join(root, "model.bin")
    storage.write_bytes(uri, b"v1" * 100)
    target = tmp_path / "cache" / "model.bin"
    path = storage.download_to_local(uri, target)
    assert open(path, "rb").read() == b"v1" * 100
    if storage.is_s3(uri):
        mtime = os.stat(path).st_mtime_ns
        assert storage.download_to_local(uri, target) == path
        assert os.stat(path).st_mtime_ns == mtime  # cached: not downloaded again
    storage.write_bytes(uri, b"v2" * 50)
    if not storage.is_s3(uri):  # local copies are keyed on size + mtime; make the change visible
        os.utime(storage._local(uri), ns=(1, 1))
    assert open(storage.download_to_local(uri, target), "rb").read() == b"v2" * 50


# --- S3 only ------------------------------------------------------------------------------------


def test_s3_missing_bucket_is_a_clear_error(s3_server):
    uri = "s3://no-such-bucket-xyz/k.bin"
    with pytest.raises(FileNotFoundError, match="bucket.*no-such-bucket-xyz"):
        storage.read_bytes(uri)
    with pytest.raises(FileNotFoundError, match="no-such-bucket-xyz"):
        storage.list_files("s3://no-such-bucket-xyz/p")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-xyz"):
        storage.write_bytes(uri, b"x")
    assert not storage.exists(uri)


def test_s3_multipart_upload_and_explicit_endpoint(s3_server, s3_bucket, monkeypatch):
    # The endpoint comes from the explicit config even when the environment names none.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    config = StorageConfig(endpoint_url=s3_server, multipart_threshold=5 * 1024 * 1024,
                           multipart_chunksize=5 * 1024 * 1024, spool_bytes=1024 * 1024)
    data = os.urandom(1024) * (11 * 1024)  # 11 MiB -> 3 parts
    uri = f"s3://{s3_bucket}/big/blob.bin"
    with storage.open_write(uri, config) as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i : i + (1 << 20)])
    head = storage.s3_client(config).head_object(Bucket=s3_bucket, Key="big/blob.bin")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag
    assert storage.read_bytes(uri, config) == data
    with storage.open_read(uri, config) as f:
        f.seek(7 * 1024 * 1024 + 5)
        assert f.read(100) == data[7 * 1024 * 1024 + 5 : 7 * 1024 * 1024 + 105]


def test_s3_incomplete_dest_is_flagged(s3_bucket):
    # A dest whose commit was cut short (objects but no _SUCCESS) reads as incomplete.
    dest = f"s3://{s3_bucket}/half"
    storage.write_bytes(dest + "/part-0.bin", b"x")
    assert storage.exists(dest)
    assert not storage.is_complete(dest)


def test_s3_staging_lives_under_staging_prefix(s3_bucket):
    dest = f"s3://{s3_bucket}/runs/out"
    with storage.publish(dest, run_id="r1") as staging:
        assert staging == f"s3://{s3_bucket}/runs/_staging/r1/out"
        storage.write_bytes(staging + "/p.bin", b"x")
        assert storage.list_files(f"s3://{s3_bucket}/runs/_staging") == [staging + "/p.bin"]
    assert storage.list_files(f"s3://{s3_bucket}/runs/_staging") == []


def test_s3_client_is_lazy_and_per_process(s3_server):
    a = storage.s3_client()
    assert storage.s3_client() is a


def test_publish_refuses_bucket_root(s3_bucket):
    with pytest.raises(ValueError, match="bucket root"):
        with storage.publish(f"s3://{s3_bucket}/"):
            pass


def test_atomic_local_path_renames_on_success_and_keeps_the_old_file_on_error(tmp_path):
    from curation.storage import atomic_local_path

    target = tmp_path / "f.bin"
    with atomic_local_path(target) as tmp:
        assert tmp != str(target) and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "wb").write(b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with atomic_local_path(target) as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"one" and os.listdir(tmp_path) == ["f.bin"]  # no temp file left


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    """A training job running as another user must be able to read manifests and shards."""
    old = os.umask(umask)
    try:
        storage.write_bytes(str(tmp_path / "f.json"), b"{}")
        with storage.publish(str(tmp_path / "out")) as staging:
            storage.write_bytes(storage.join(staging, "part-0"), b"x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "f.json").st_mode & 0o777) == mode
    assert (os.stat(tmp_path / "out" / "part-0").st_mode & 0o777) == mode


def test_list_children_names_only_the_first_level(root):
    for rel in ("a.txt", "sub/x.bin", "sub/deep/y.bin", "sub2/z.bin"):
        storage.write_bytes(storage.join(root, rel), b"1")
    assert storage.list_children(root) == ["a.txt", "sub", "sub2"]
    assert storage.list_children(storage.join(root, "sub")) == ["deep", "x.bin"]
    assert storage.list_children(storage.join(root, "missing")) == []


def test_list_children_on_s3_is_one_delimited_request(s3_bucket):
    """check_output and run collection look at an output's top level: with thousands of parts
    under it they must not list every object (the old listing did)."""
    root = f"s3://{s3_bucket}/out"
    for k in range(30):
        storage.write_bytes(storage.join(root, "matched", f"part-{k:05d}.parquet"), b"1")
    storage.write_bytes(storage.join(root, "_MANIFEST.json"), b"{}")
    calls = []

    def record(params, **_kw):
        calls.append(dict(params))

    client = storage.s3_client()
    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", record)
    try:
        assert storage.list_children(root) == ["_MANIFEST.json", "matched"]
    finally:
        client.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", record)
    assert len(calls) == 1 and calls[0].get("Delimiter") == "/"
