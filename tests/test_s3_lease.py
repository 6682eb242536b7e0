"""One writer per S3 output: the lease (storage.S3Lease) and the jobs' output_lock on a real
S3 API server on loopback (moto server mode, which implements S3's conditional writes)."""

from __future__ import annotations

import json
import time

import pytest

from curation import runs, storage


def _lease(uri: str, run: str, **kw) -> storage.S3Lease:
    return storage.S3Lease(uri, {"run_id": run, "host": "test-host"}, **kw)


def test_a_held_lease_refuses_a_second_holder_and_names_the_first(s3_bucket):
    uri = f"s3://{s3_bucket}/.out.lock"
    with _lease(uri, "run-a", heartbeat_s=None):
        with pytest.raises(storage.LeaseHeld, match="run_id run-a, host test-host"):
            _lease(uri, "run-b").acquire()
        assert json.loads(storage.read_bytes(uri))["run_id"] == "run-a"
    assert not storage.exists(uri)  # released
    with _lease(uri, "run-b", heartbeat_s=None):
        assert json.loads(storage.read_bytes(uri))["run_id"] == "run-b"


def test_a_silent_lease_is_taken_over_and_its_old_holder_cannot_release_it(s3_bucket):
    uri = f"s3://{s3_bucket}/.out.lock"
    dead = _lease(uri, "run-dead", heartbeat_s=None).acquire()  # a driver killed without cleanup
    time.sleep(2.2)  # LastModified has one-second resolution
    new = _lease(uri, "run-new", stale_after_s=1.0, heartbeat_s=None).acquire()
    assert json.loads(storage.read_bytes(uri))["run_id"] == "run-new"
    dead.release()  # a late release of the old holder deletes nothing: the object is no longer its own
    assert json.loads(storage.read_bytes(uri))["run_id"] == "run-new"
    new.release()
    assert not storage.exists(uri)


def test_the_heartbeat_keeps_a_lease_alive_and_a_taken_over_holder_knows(s3_bucket):
    uri = f"s3://{s3_bucket}/.out.lock"
    alive = _lease(uri, "run-alive", stale_after_s=2.0, heartbeat_s=0.3).acquire()
    try:
        time.sleep(3.5)  # longer than stale_after_s: only the heartbeat keeps it fresh
        with pytest.raises(storage.LeaseHeld, match="run-alive"):
            _lease(uri, "run-other", stale_after_s=2.0, heartbeat_s=None).acquire()
        assert json.loads(storage.read_bytes(uri))["heartbeats"] >= 3
        alive.check()
        storage.write_bytes(uri, b'{"run_id": "an operator"}')  # someone overwrote it by hand
        deadline = time.time() + 5
        while not alive.lost and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(storage.LeaseHeld, match="lost its lease"):
            alive.check()
    finally:
        alive.release()
    assert json.loads(storage.read_bytes(uri))["run_id"] == "an operator"  # not ours to delete


def test_output_lock_on_s3_is_exclusive_and_lives_beside_the_output(s3_bucket):
    out = f"s3://{s3_bucket}/crawl/curated-out"
    with runs.output_lock(out, "curate") as lease:
        assert lease.uri == f"s3://{s3_bucket}/crawl/.curated-out.lock"
        with pytest.raises(runs.LockHeld, match="another curate run holds the lease on"):
            with runs.output_lock(out, "curate"):
                pass
        assert storage.list_files(out) == []  # nothing inside the output
    with runs.output_lock(out, "curate"):
        pass


def test_the_curate_job_refuses_a_held_s3_output_before_starting_spark(s3_bucket, tmp_path, capsys, monkeypatch):
    from jobs import curate

    inp = tmp_path / "in.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.samples.alt_texts import write_sample_metadata

    pq.write_table(pa.table({"URL": ["http://img.test/a.jpg"], "TEXT": ["a cat"]}), inp)
    write_sample_metadata(tmp_path / "metadata", languages=["en"])
    out = f"s3://{s3_bucket}/out"
    sessions = []
    monkeypatch.setattr(curate, "build_session", lambda cfg: sessions.append(cfg))  # records a start-up
    with runs.output_lock(out, "curate"):
        rc = curate.main(["--input", str(inp), "--metadata", str(tmp_path / "metadata"), "--output", out])
    assert rc == 2 and sessions == []  # refused before any SparkSession
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the lease on" in err[0]


def test_a_run_that_lost_its_lease_does_not_publish(s3_bucket):
    out = f"s3://{s3_bucket}/out"
    with runs.output_lock(out, "curate", stale_after_s=1.0, heartbeat_s=None) as lease:
        time.sleep(2.2)  # silent past stale_after_s: another run takes the lease over
        other = _lease(lease.uri, "run-other", stale_after_s=1.0, heartbeat_s=None).acquire()
        lease.lost = True  # what the heartbeat finds on its next beat (If-Match fails)
        with pytest.raises(storage.LeaseHeld, match="lost its lease"):
            with storage.publish_versioned(out, "_MANIFEST.json") as staging:
                storage.write_bytes(storage.join(staging, "_MANIFEST.json"), b"{}")
        assert not storage.exists(storage.join(out, "_MANIFEST.json"))  # nothing published
        assert storage.list_files(out) == []  # and the run removed its own prefix
        other.release()
