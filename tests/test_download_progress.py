"""The download job's progress and summary hints (issue 17 items 13 and 16).

Progress must advance per image, not per shard: a shard of thousands of images would otherwise
sit at 0 for minutes. A Spark accumulator reaches the driver only when its task ends, so the
test watches the counts while a single shard is still running. The summary must say which
flag fetches refused loopback/private targets, and a rerun that fetched nothing because every
shard was complete must point to --retry-failed.
"""

from __future__ import annotations

import io
import re
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fetch import HostileServer, make_jpeg

from curation.download_config import DownloadConfig
from curation.download_shards import refusal_kind
from curation.schemas import CURATED
from curation.urls import image_uuid
from jobs import download as download_job

CFG = DownloadConfig(
    allow_loopback=True, connect_timeout=1.0, read_timeout=2.0, total_timeout=3.0, retries=0,
    backoff_base=0.01, backoff_max=0.02, shard_size=100, threads=1, per_host_concurrency=1,
    max_bytes=1024 * 1024, image_size=64, dedup=False,
)


@pytest.fixture(scope="module")
def server():
    with HostileServer() as srv:
        for i in range(12):
            srv.add(f"p{i}.jpg", make_jpeg(120 + 4 * i, 100, seed=500 + i))
        yield srv


def write_curated(path, urls) -> None:
    rows = [{"uuid": image_uuid(u), "url": u, "text": f"t{i}", "lang": "en", "entry_ids": [i]}
            for i, u in enumerate(urls)]
    path.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED), str(path / "part-0.parquet"))


LINE = re.compile(r"download: (\d+)/(\d+) shards, (\d+)/(\d+) images \((\d+) ok, (\d+) failed\), [\d.]+ images/s, ETA \S+")


@pytest.mark.spark
def test_progress_advances_per_image_while_a_shard_runs(spark, server, tmp_path, monkeypatch):
    # /hold/ answers after 0.2 s and one thread fetches: the one shard takes >= 2.4 s
    urls = [f"{server.base}/hold/p{i}.jpg" for i in range(12)]
    write_curated(tmp_path / "curated", urls)
    monkeypatch.setattr(download_job, "PROGRESS_LOG_EVERY_S", 0.1)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: progress lines, no bar
    lines = []
    report = download_job.run(spark, str(tmp_path / "curated"), str(tmp_path / "images"), CFG, log=lines.append)
    assert report["succeeded"] == 12 and report["shards"] == 1
    got = [tuple(int(x) for x in m.groups()) for m in map(LINE.fullmatch, lines) if m]
    assert got, lines
    # (shards done, shards, images done, queued, ok, failed): images advance inside the running shard
    assert any(s == 0 and 0 < done < 12 and queued == 12 for s, _n, done, queued, _ok, _f in got), got
    assert got[-1] == (1, 1, 12, 12, 12, 0)
    dones = [g[2] for g in got]
    assert dones == sorted(dones)


def test_live_counts_take_the_latest_attempt_of_each_task():
    live = download_job.LiveCounts("127.0.0.1", "127.0.0.1")
    try:
        with download_job.LiveReporter(live.address, 0) as rep:
            for ok in (True, True, False):
                rep(ok)
        with download_job.LiveReporter(live.address, 1) as rep:
            rep(True)
        deadline = time.monotonic() + 5
        while live.totals() != (3, 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.totals() == (3, 1)
        token = live.token
        live.take(f"{token} 0 0 1 0".encode())  # a late, older datagram of the same attempt: ignored
        live.take(b"stranger 0 5 100 100")  # another run's token: ignored
        live.take(b"\xff garbage")
        assert live.totals() == (3, 1)
        live.take(f"{token} 0 1 1 0".encode())  # partition 0 retried: its new attempt replaces the old
        assert live.totals() == (2, 0)
    finally:
        live.close()
    rep = download_job.LiveReporter(None, 0)  # no driver socket: counts only, never fails the task
    rep(True)
    assert (rep.ok, rep.failed) == (1, 0)


def test_progress_line():
    line = download_job.progress_line(3, 1500, 6000, 1400, 100, shards=10, elapsed=30.0)
    assert line == "download: 3/10 shards, 1,500/6,000 images (1,400 ok, 100 failed), 50.0 images/s, ETA 1m30s"
    assert download_job.progress_line(0, 0, 0, 0, 0, shards=2, elapsed=1.0).endswith("ETA ?")


def _report(**kw):
    r = {"timings_s": {"total": 1.0}, "input_rows": 10, "succeeded": 5, "failed": 5, "shards": 2, "shards_run": 2,
         "shards_retried": 0, "images_per_s_this_run": 1.0, "output": "/o/images", "retry_failed": False,
         "failures": {"forbidden_address": 4, "http_404": 1}, "forbidden_by": {"loopback": 3, "link-local": 1}}
    r.update(kw)
    lines = []
    download_job.print_summary(r, log=lines.append)
    return "\n".join(lines)


def test_summary_points_to_the_flags_that_fetch_refused_targets():
    text = _report()
    assert "3 loopback (fetched with --allow-loopback" in text and "1 link-local" in text
    assert "--allow-private" not in text and "--retry-failed" not in text  # shards ran now: nothing to rerun
    assert "private (fetched with --allow-private" in _report(forbidden_by={"private": 4})
    assert "hint" not in _report(failures={"http_404": 1}, forbidden_by={})
    assert refusal_kind("127.0.0.1 -> 127.0.0.1 (loopback; allowed by --allow-loopback)") == "loopback"
    assert refusal_kind("h -> 169.254.169.254 (link-local)") == "link-local" and refusal_kind(None) == "unknown"


def test_summary_of_a_rerun_that_fetched_nothing_points_to_retry_failed():
    text = _report(shards_run=0)
    assert ("5 URLs failed earlier; rerun with --retry-failed (--retry-reasons forbidden_address to retry only "
            "those) to fetch them again") in text
    assert "--retry-failed" not in _report(shards_run=0, retry_failed=True)
    # duplicates and rows without a uuid are never retried
    assert "--retry-failed" not in _report(shards_run=0, failures={"duplicate": 2, "missing_uuid": 1}, forbidden_by={})


@pytest.mark.spark
def test_refused_loopback_then_allowed_then_retried(spark, server, tmp_path):
    """The issue's sequence: loopback refused; a rerun with --allow-loopback fetches nothing and
    says so; --retry-failed --retry-reasons forbidden_address fetches them."""
    urls = [f"{server.base}/img/p{i}.jpg" for i in range(3)]
    write_curated(tmp_path / "curated", urls)
    src, out = str(tmp_path / "curated"), str(tmp_path / "images")
    quiet = {"progress": False, "log": lambda *_: None}
    first = download_job.run(spark, src, out, CFG.replace(allow_loopback=False, threads=4), **quiet)
    assert first["failures"] == {"forbidden_address": 3} and first["forbidden_by"] == {"loopback": 3}
    lines = []
    download_job.print_summary(first, log=lines.append)
    assert any("--allow-loopback" in ln for ln in lines), lines
    failed = pq.read_table(f"{out}/_failed/shard-00000.parquet").to_pylist()
    assert all(r["detail"].endswith("(loopback; allowed by --allow-loopback)") for r in failed), failed
    second = download_job.run(spark, src, out, CFG.replace(threads=4), **quiet)
    lines = []
    download_job.print_summary(second, log=lines.append)
    assert second["shards_run"] == 0 and second["succeeded"] == 0
    assert any("3 URLs failed earlier; rerun with --retry-failed" in ln for ln in lines), lines
    third = download_job.run(spark, src, out, CFG.replace(threads=4), retry_failed=True,
                             retry_reasons=frozenset({"forbidden_address"}), **quiet)
    assert third["succeeded"] == 3 and third["failures"] == {} and third["forbidden_by"] == {}
