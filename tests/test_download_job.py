"""The download job (jobs/download.py, curation/download_shards.py) end to end: real local Spark, real loopback HTTP server with hostile cases.

Every URL must end as an image row or a counted failure reason; shards are readable by
pyarrow, decode with Pillow and join back to curated/ by uuid; a crash midway plus a rerun
gives exactly the rows of a clean run; --retry-failed recovers URLs that failed transiently.
"""

from __future__ import annotations

import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_fetch import HostileServer, make_jpeg, standard_images

from curation import download_shards
from curation.download_config import DownloadConfig
from curation.schemas import CURATED, IMAGES, MATCHED
from curation.urls import image_uuid
from jobs import download
from jobs import download as download_job

pytestmark = pytest.mark.spark

CFG = DownloadConfig(
    allow_loopback=True, connect_timeout=1.0, read_timeout=1.5, total_timeout=2.0, retries=1,
    backoff_base=0.01, backoff_max=0.02, shard_size=6, threads=8, per_host_concurrency=8,
    max_bytes=1024 * 1024, image_size=64,
)

# path on the server -> expected failure reason (None = an image row)
HOSTILE = {
    "/status/404": "http_404",
    "/slow": "timeout",
    "/loop": "redirect_loop",
    "/redirect/9": "too_many_redirects",
    "/to?u=http://169.254.169.254/latest/meta-data/": "forbidden_address",
    "/to?u=http://10.0.0.1/x.jpg": "forbidden_address",
    "/img/trunc.jpg": "truncated_image",
    "/fake.jpg": "not_an_image",
    "/html": "not_an_image",
    "/big": "too_large",
    "/big-chunked": "too_large",
    "/img/bomb.png": "decompression_bomb",
    "/img/bomb2.png": "decompression_bomb",
    "/reset": "connection_error",
    "/empty": "empty_body",
    "/flaky/job/0": None,  # recovers unless the server is told otherwise
    "/redirect/2": None,
    "/img/a.jpg": None,
    "/img/dup.jpg": None,
    "/img/c.png": None,
}
# these four serve the bytes of a.jpg: all but the smallest uuid are dropped as duplicates
SAME_AS_A = ("/flaky/job/0", "/redirect/2", "/img/a.jpg", "/img/dup.jpg")


@pytest.fixture(scope="module")
def server():
    with HostileServer() as srv:
        srv.slow = 2.5  # past total_timeout
        standard_images(srv)
        for i in range(14):
            srv.add(f"g{i}.jpg", make_jpeg(160 + 8 * i, 120, seed=100 + i))
        yield srv


def _urls(server) -> list[str]:
    urls = [server.base + p for p in HOSTILE] + [f"{server.base}/img/g{i}.jpg" for i in range(14)]
    return urls + ["ftp://example.com/x.jpg", "http://127.0.0.1:1/x"]  # bad scheme; a closed port


def _expected(server) -> dict[str, str | None]:
    exp = {server.base + p: r for p, r in HOSTILE.items()}
    exp.update({f"{server.base}/img/g{i}.jpg": None for i in range(14)})
    exp["ftp://example.com/x.jpg"] = "bad_scheme"
    exp["http://127.0.0.1:1/x"] = "connection_error"
    return exp


def write_curated(path, urls) -> pa.Table:
    rows = [{"uuid": image_uuid(u), "url": u, "text": f"a photo number {i}", "lang": "en", "entry_ids": [i, i + 1]}
            for i, u in enumerate(urls)]
    table = pa.Table.from_pylist(rows, schema=CURATED)
    os.makedirs(path, exist_ok=True)
    pq.write_table(table.slice(0, 20), os.path.join(path, "part-00000.parquet"))
    pq.write_table(table.slice(20), os.path.join(path, "part-00001.parquet"))
    return table


def _outcomes(out) -> dict[str, str | None]:
    """uuid -> None (image row) or failure reason, from the output files alone."""
    res = {u: None for u in pq.read_table(out, columns=["uuid"]).column("uuid").to_pylist()}
    for name in sorted(os.listdir(os.path.join(out, "_failed"))):
        for r in pq.read_table(os.path.join(out, "_failed", name)).to_pylist():
            assert r["uuid"] not in res
            res[r["uuid"]] = r["reason"]
    dups = pq.read_table(os.path.join(out, "_dedup", "duplicates.parquet")).to_pylist()
    for d in dups:
        assert d["uuid"] not in res
        res[d["uuid"]] = "duplicate"
    return res


@pytest.fixture(scope="module")
def clean_run(spark, server, tmp_path_factory):
    base = tmp_path_factory.mktemp("dl")
    curated = write_curated(str(base / "curated"), _urls(server))
    out = str(base / "images")
    report = download_job.run(spark, str(base / "curated"), out, CFG, progress=False, log=lambda *_: None)
    return curated, out, report


def test_every_url_is_an_image_or_a_counted_reason(server, clean_run):
    curated, out, report = clean_run
    by_url = dict(zip(curated.column("url").to_pylist(), curated.column("uuid").to_pylist(), strict=True))
    got = _outcomes(out)
    assert len(got) == curated.num_rows == report["input_rows"] == report["attempted"]
    same = sorted(by_url[server.base + p] for p in SAME_AS_A)
    for url, reason in _expected(server).items():
        u = by_url[url]
        if u in same:
            continue
        assert got[u] == reason, (url, got[u])
    assert got[same[0]] is None  # the smallest uuid is the one kept
    assert [got[u] for u in same[1:]] == ["duplicate"] * 3
    assert report["accounting_ok"] and report["duplicates"] == 3
    assert report["succeeded"] == sum(1 for r in got.values() if r is None) == 16
    failures = dict(report["failures"])
    assert failures["forbidden_address"] == 2 and failures["decompression_bomb"] == 2 and failures["duplicate"] == 3
    assert report["failed"] == sum(failures.values()) == curated.num_rows - 16


def test_shards_read_with_pyarrow_decode_with_pillow_and_join_back(clean_run):
    curated, out, report = clean_run
    table = pq.read_table(out)  # the directory reads as the image table alone
    assert table.schema.equals(IMAGES, check_metadata=False)
    assert len(set(table.column("uuid").to_pylist())) == table.num_rows
    cur = {r["uuid"]: r for r in curated.to_pylist()}
    for r in table.to_pylist():
        img = Image.open(io.BytesIO(r["image"]))
        img.load()
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (r["width"], r["height"])
        assert min(img.size) <= CFG.image_size
        c = cur[r["uuid"]]  # joins back by uuid
        assert r["url"] == c["url"] and len(r["texts"]) == 1
        t = r["texts"][0]
        assert (t["text"], t["lang"], t["entry_ids"]) == (c["text"], c["lang"], c["entry_ids"])
    names = sorted(os.listdir(out))
    shard_files = [n for n in names if n.startswith("shard-")]
    assert shard_files == [n for n in names if n.endswith(".parquet")]  # a *.parquet glob finds shards only
    assert len(shard_files) == report["shards"] == 6  # ceil(36 / 6)
    assert shard_files[-1] == "shard-00005.parquet" and "_SUCCESS" in names and "_MANIFEST.json" in names
    for n in shard_files:  # rows inside a shard are sorted by uuid
        uu = pq.read_table(os.path.join(out, n), columns=["uuid"]).column("uuid").to_pylist()
        assert uu == sorted(uu)
    stats = [json.load(open(os.path.join(out, "_stats", f))) for f in sorted(os.listdir(os.path.join(out, "_stats")))]
    assert sum(s["attempted"] for s in stats) == curated.num_rows
    for s in stats:
        assert s["succeeded"] + sum(s["failures"].values()) == s["attempted"]
        assert s["resizer"] == "torch"  # resizer "auto", and torch is installed in the test environment
    manifest = json.load(open(os.path.join(out, "_MANIFEST.json")))
    assert manifest["config"]["image_size"] == CFG.image_size and manifest["succeeded"] == report["succeeded"]
    assert manifest["resizers"] == ["torch"]
    # what the shards hold, for training (no curate run's manifest beside this hand-made curated/)
    assert manifest["source"] == "curated" and manifest["curate_run"] is None


def test_rerun_of_a_complete_output_changes_nothing(spark, clean_run):
    curated, out, report = clean_run
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if n.endswith(".parquet")}
    again = download_job.run(spark, os.path.join(os.path.dirname(out), "curated"), out, CFG, progress=False,
                         log=lambda *_: None)
    assert again["shards_run"] == 0 and again["succeeded"] == report["succeeded"]
    after = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if n.endswith(".parquet")}
    assert before == after


def _rows(out) -> dict[str, str]:
    t = pq.read_table(out, columns=["uuid", "sha256"])
    uu = t.column("uuid").to_pylist()
    assert len(uu) == len(set(uu))
    return dict(zip(uu, t.column("sha256").to_pylist(), strict=True))


def test_crash_midway_then_rerun_gives_the_clean_result(spark, server, clean_run, tmp_path):
    curated, clean_out, _ = clean_run
    src = os.path.join(os.path.dirname(clean_out), "curated")
    out = str(tmp_path / "images")
    with pytest.raises(Exception, match="crash_after_shard"):
        download_job.run(spark, src, out, CFG.replace(crash_after_shard=3), progress=False, log=lambda *_: None)
    assert not os.path.exists(os.path.join(out, "_SUCCESS"))
    assert os.path.exists(os.path.join(out, "shard-00003.parquet"))  # written, but not marked complete
    assert not os.path.exists(os.path.join(out, "_stats", "shard-00003.json"))
    report = download_job.run(spark, src, out, CFG, progress=False, log=lambda *_: None)
    assert report["shards_run"] >= 1 and report["accounting_ok"]
    assert os.path.exists(os.path.join(out, "_SUCCESS"))
    assert _rows(out) == _rows(clean_out)
    assert _outcomes(out) == _outcomes(clean_out)


def test_retry_failed_recovers_transient_failures(spark, server, tmp_path):
    urls = [f"{server.base}/flaky/retry{i}/0" for i in range(3)] + [f"{server.base}/img/g{i}.jpg" for i in range(3)]
    urls.append(f"{server.base}/status/404")
    src = str(tmp_path / "curated")
    write_curated(src, urls)
    out = str(tmp_path / "images")
    cfg = CFG.replace(dedup=False)
    server.flaky_ok = False
    try:
        first = download_job.run(spark, src, out, cfg, progress=False, log=lambda *_: None)
    finally:
        server.flaky_ok = True
    assert first["failures"] == {"http_5xx": 3, "http_404": 1} and first["succeeded"] == 3
    second = download_job.run(spark, src, out, cfg, retry_failed=True, progress=False, log=lambda *_: None)
    assert second["retried_urls"] == 4 and second["shards_run"] == 0
    assert second["failures"] == {"http_404": 1} and second["succeeded"] == 6 and second["accounting_ok"]
    rows = _rows(out)
    assert set(rows) == {image_uuid(u) for u in urls[:-1]}
    # a second retry finds only the 404 and changes nothing else
    third = download_job.run(spark, src, out, cfg, retry_failed=True, retry_reasons=frozenset({"http_404"}),
                         progress=False, log=lambda *_: None)
    assert third["retried_urls"] == 1 and _rows(out) == rows


def test_matched_input_keeps_all_texts(spark, server, tmp_path):
    src = str(tmp_path / "matched")
    os.makedirs(src)
    urls = [f"{server.base}/img/g{i}.jpg" for i in range(4)]
    rows = [{"uuid": image_uuid(u), "url": u, "texts": [
        {"text": f"t{i}-{j}", "source": "alt", "page_url": "https://example.com/p", "lid": "en", "lid_prob": 0.9,
         "lang": "en", "entry_ids": [j]} for j in range(i + 1)]} for i, u in enumerate(urls)]
    pq.write_table(pa.Table.from_pylist(rows, schema=MATCHED), os.path.join(src, "part-0.parquet"))
    out = str(tmp_path / "images")
    report = download_job.run(spark, src, out, CFG.replace(shard_size=100), progress=False, log=lambda *_: None)
    assert report["input_kind"] == "matched" and report["succeeded"] == 4 and report["shards"] == 1
    assert json.load(open(os.path.join(out, "_MANIFEST.json")))["source"] == "matched"
    got = {r["uuid"]: r["texts"] for r in pq.read_table(out).to_pylist()}
    for r in rows:
        assert [t["text"] for t in got[r["uuid"]]] == [t["text"] for t in r["texts"]]
        assert got[r["uuid"]][0]["lid_prob"] == pytest.approx(0.9)


def test_cli_flags_build_the_config():
    args = download.build_parser().parse_args(
        ["--input", "in", "--output", "out", "--threads", "3", "--allow-loopback", "--set", "jpeg_quality=70",
         "--set", "dedup=false", "--set", "backoff_base=0.1"])
    cfg = download.config_from_args(args)
    assert (cfg.threads, cfg.allow_loopback, cfg.jpeg_quality, cfg.dedup, cfg.backoff_base) == (3, True, 70, False, 0.1)
    with pytest.raises(ValueError):
        download.config_from_args(download.build_parser().parse_args(["--input", "i", "--output", "o", "--set", "nope=1"]))


def test_cli_keeps_every_historic_flag_and_reads_a_config_file(tmp_path, capsys):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"_comment": "a note", "download": {"threads": 5, "image_size": 128, "dedup": False}}))
    args = download.build_parser().parse_args(
        ["--input", "in", "--output", "out", "--config", str(path), "--shard-size", "7", "--per-host", "2",
         "--image-size", "96", "--jpeg-quality", "80", "--max-bytes", "1000", "--retries", "0", "--timeout", "1.5",
         "--user-agent", "ua/1", "--allow-private", "--set", "threads=9", "--set", "shard_size=3"])
    cfg = download.config_from_args(args)
    assert cfg == DownloadConfig(threads=9, image_size=96, dedup=False, shard_size=7, per_host_concurrency=2,
                                 jpeg_quality=80, max_bytes=1000, retries=0, total_timeout=1.5, user_agent="ua/1",
                                 allow_private=True)  # file < --set < named flags
    with pytest.raises(SystemExit):  # a bad value is a usage error before Spark starts
        download.main(["--input", "i", "--output", "o", "--set", "jpeg_quality=101"])
    assert "jpeg_quality must be in [1, 100]" in capsys.readouterr().err


def test_shard_of_is_stable():
    assert [download_shards.shard_of(u, 7) for u in ("a", "b", "c")] == [download_shards.shard_of(u, 7) for u in ("a", "b", "c")]
    assert {download_shards.shard_of(str(i), 4) for i in range(100)} == {0, 1, 2, 3}


def test_output_on_s3(spark, server, s3_bucket, tmp_path):
    import boto3

    urls = [f"{server.base}/img/g{i}.jpg" for i in range(5)] + [f"{server.base}/status/404", f"{server.base}/img/dup.jpg",
                                                               f"{server.base}/img/a.jpg"]
    src = str(tmp_path / "curated")
    write_curated(src, urls)
    out = f"s3://{s3_bucket}/run1/images"
    report = download_job.run(spark, src, out, CFG.replace(shard_size=4), progress=False, log=lambda *_: None)
    assert report["succeeded"] == 6 and report["failures"] == {"http_404": 1, "duplicate": 1} and report["shards"] == 2
    s3 = boto3.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="run1/images/")["Contents"])
    assert "run1/images/_SUCCESS" in keys and "run1/images/shard-00001.parquet" in keys
    body = s3.get_object(Bucket=s3_bucket, Key="run1/images/shard-00000.parquet")["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.equals(IMAGES, check_metadata=False)
    again = download_job.run(spark, src, out, CFG.replace(shard_size=4), progress=False, log=lambda *_: None)
    assert again["shards_run"] == 0 and again["succeeded"] == 6


def test_dedup_pass_across_shards_is_idempotent_without_spark(server, tmp_path):
    """run_shard + dedup_pass directly: the smallest uuid of equal images survives, in any shard."""
    out = str(tmp_path / "images")
    a, dup, b = (f"{server.base}/img/{n}" for n in ("a.jpg", "dup.jpg", "b.jpg"))
    shard0 = [("u3", a, [{"text": "x"}]), ("u5", b, [{"text": "y"}]), ("u5", b, [{"text": "again"}])]
    shard1 = [("u1", dup, [{"text": "z"}]), ("u4", f"{server.base}/status/404", [{"text": "w"}])]
    s0 = download_shards.run_shard(out, 0, shard0, CFG)
    s1 = download_shards.run_shard(out, 1, shard1, CFG)
    assert s0["failures"] == {"duplicate_uuid": 1} and s1["failures"] == {"http_404": 1}
    first = download_shards.dedup_pass(out, 2, CFG)
    assert first == {"duplicates": 1, "shards_rewritten": 1}
    assert _rows(out).keys() == {"u1", "u5"}  # u3 (same bytes as u1) dropped from shard 0
    dups = pq.read_table(os.path.join(out, "_dedup", "duplicates.parquet")).to_pylist()
    assert dups == [{"uuid": "u3", "sha256": dups[0]["sha256"], "kept_uuid": "u1", "shard": 0}]
    stats0 = json.load(open(os.path.join(out, "_stats", "shard-00000.json")))
    assert stats0["failures"] == {"duplicate": 1, "duplicate_uuid": 1} and stats0["succeeded"] == 1
    assert stats0["attempted"] == 3
    snapshot = {n: open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out)) if n.endswith(".parquet")}
    assert download_shards.dedup_pass(out, 2, CFG) == {"duplicates": 1, "shards_rewritten": 0}
    assert snapshot == {n: open(os.path.join(out, n), "rb").read() for n in snapshot}
