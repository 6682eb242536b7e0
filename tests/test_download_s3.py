"""The download job reads an s3:// input (issue 13): real local Spark, a real S3 API server (moto) and
a real image server, both on loopback.

The job reads its input through curation.storage, not Spark's Hadoop layer (which has no
FileSystem for "s3" without the S3A connector), so the same input on S3 or on disk must give
the same output files, byte for byte, whether the output is on S3 or on disk.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fetch import HostileServer, make_jpeg, standard_images

from curation import storage
from curation.download_config import DownloadConfig
from curation.schemas import CURATED
from curation.urls import image_uuid
from jobs import download as download_job
from jobs.common import task_env

pytestmark = pytest.mark.spark

CFG = DownloadConfig(
    allow_loopback=True, connect_timeout=1.0, read_timeout=1.5, total_timeout=2.0, retries=0,
    backoff_base=0.01, backoff_max=0.02, shard_size=4, threads=4, per_host_concurrency=4,
    max_bytes=1024 * 1024, image_size=64,
)
# per-run values: where it ran and how fast
RUN_KEYS = ("input", "output", "timings_s", "images_per_s_this_run")


@pytest.fixture(scope="module")
def server():
    with HostileServer() as srv:
        standard_images(srv)
        for i in range(8):
            srv.add(f"s{i}.jpg", make_jpeg(150 + 10 * i, 110, seed=300 + i))
        yield srv


def curated_files(server) -> dict[str, bytes]:
    """A small curated/ directory as the curate job writes it (CURATED schema, two part files,
    _SUCCESS and _MANIFEST.json beside them), as {relative name: bytes}."""
    urls = [f"{server.base}/img/s{i}.jpg" for i in range(8)]
    urls += [f"{server.base}/status/404", f"{server.base}/img/a.jpg", f"{server.base}/img/dup.jpg",
             f"{server.base}/to?u=http://10.0.0.1/x.jpg"]
    rows = [{"uuid": image_uuid(u), "url": u, "text": f"photo {i}", "lang": "en", "entry_ids": [i]}
            for i, u in enumerate(urls)]
    rows.append({"uuid": None, "url": f"{server.base}/img/b.jpg", "text": "no uuid", "lang": "en", "entry_ids": []})
    table = pa.Table.from_pylist(rows, schema=CURATED)
    out = {}
    for name, part in (("part-00000.parquet", table.slice(0, 7)), ("part-00001.parquet", table.slice(7))):
        buf = io.BytesIO()
        pq.write_table(part, buf)
        out[name] = buf.getvalue()
    out["_SUCCESS"] = b""
    out["_MANIFEST.json"] = json.dumps({"metadata_version": "test-v1"}).encode()
    return out


def put(root: str, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        storage.write_bytes(storage.join(root, name), data)
    return root


def output_files(root: str) -> dict[str, object]:
    """Every file of a download output by relative name: bytes, or the JSON minus per-run values."""
    got = {}
    for uri in storage.list_files(root):
        rel = uri[len(root.rstrip("/")) + 1:]
        data = storage.read_bytes(uri)
        if rel.endswith(".json"):
            doc = json.loads(data)
            for k in (*RUN_KEYS, "seconds", "finished", "created", "plan"):
                doc.pop(k, None)
            got[rel] = doc
        else:
            got[rel] = data
    return got


def test_input_and_output_on_s3_give_the_files_of_a_local_run(spark, server, s3_bucket, tmp_path, monkeypatch):
    files = curated_files(server)
    local_in = put(str(tmp_path / "curated"), files)
    s3_in = put(f"s3://{s3_bucket}/run/curated", files)
    quiet = {"progress": False, "log": lambda *_: None}

    local = download_job.run(spark, local_in, str(tmp_path / "images"), CFG, **quiet)
    on_s3 = download_job.run(spark, s3_in, f"s3://{s3_bucket}/run/images", CFG, **quiet)
    # the input summarised in Spark tasks too (as for inputs of many files), output on disk: the
    # tasks read S3 with the driver's settings although the output is not on S3
    monkeypatch.setattr(download_job, "DRIVER_SUMMARY_MAX_FILES", 0)
    s3_to_local = download_job.run(spark, s3_in, str(tmp_path / "images-from-s3"), CFG, **quiet)

    assert local["input_rows"] == 13 and local["succeeded"] == 9 and local["accounting_ok"]
    assert local["failures"] == {"duplicate": 1, "forbidden_address": 1, "http_404": 1, "missing_uuid": 1}
    for report in (on_s3, s3_to_local):
        assert {k: v for k, v in report.items() if k not in RUN_KEYS} == \
            {k: v for k, v in local.items() if k not in RUN_KEYS}
    want = output_files(str(tmp_path / "images"))
    assert "shard-00003.parquet" in want and "_SUCCESS" in want and "_dedup/duplicates.parquet" in want
    assert want["_MANIFEST.json"]["metadata_version"] == "test-v1"  # read from the input's manifest
    assert output_files(f"s3://{s3_bucket}/run/images") == want
    assert output_files(str(tmp_path / "images-from-s3")) == want

    again = download_job.run(spark, s3_in, f"s3://{s3_bucket}/run/images", CFG, **quiet)  # resume: nothing to do
    assert again["shards_run"] == 0 and again["succeeded"] == local["succeeded"]


def test_tasks_get_the_s3_settings_when_only_the_input_is_on_s3(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    env = task_env("/local/images", "s3://bucket/run/curated")
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9" and env["AWS_ACCESS_KEY_ID"] == "k"
    assert task_env("/local/images", "/local/curated") == {}


def test_a_missing_or_wrong_input_is_said_before_spark_starts(tmp_path, capsys):
    assert download_job.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("download: error:") and str(tmp_path / "nope") in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    assert download_job.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "no files ending in .parquet" in capsys.readouterr().err


def test_input_summary_counts_rows_without_uuid_from_the_footer(tmp_path):
    from curation.download_shards import input_records, input_summary

    rows = [{"uuid": None if i % 3 == 0 else f"u{i}", "url": f"http://x/{i}", "text": "t", "lang": "en",
             "entry_ids": [i]} for i in range(10)]
    path = str(tmp_path / "p.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED), path, row_group_size=4)
    s = input_summary(path)
    assert (s["rows"], s["no_uuid"], s["columns"]) == (10, 4, CURATED.names)
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATED), path, row_group_size=4, write_statistics=False)
    assert input_summary(path)["no_uuid"] == 4  # read where the footer has no null counts
    recs = list(input_records(path, "curated"))
    assert [r[0] for r in recs] == [f"u{i}" for i in range(10) if i % 3]
    assert recs[0][2] == [{"text": "t", "source": None, "page_url": None, "lid": None, "lid_prob": None,
                           "lang": "en", "entry_ids": [1]}]
