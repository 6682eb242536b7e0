"""The curate job on a real Spark standalone cluster on loopback (issue 13): the bytes of local[*].

Why: local mode runs every task in the driver's JVM, so it cannot catch what only a cluster
does: executors in other processes (their own working directories, the venv's Python, the
package imported there, task bodies pickled by reference), tasks of one phase spread over two
machines' worth of workers, and settings that reach executors only through the Spark conf. The
job is run as a user runs it (`python jobs/curate.py --master spark://...`), once on a master
with two one-core workers (tests/cluster.py) and once in local[*], and every file of matched/,
counts/, curated/, entry_probs/, rejects/ and thresholds.json must be byte-identical.

The S3 variant puts inputs, metadata, output and per-input state on the loopback S3 server, with
the AWS settings only in the job's environment: the workers' own environment has none, so it
passes only because the job forwards them to its executors, and no filesystem is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.identical_outputs import COMPARED
from bench.identical_outputs import digests as _digests
from curation import runs, storage
from curation.layout import CurateOutput
from jobs.curate import APP_NAME
from tests.cluster import ROOT, StandaloneCluster, loopback_env

pytestmark = pytest.mark.slow
def digests(output: str) -> dict[str, str]:
    return _digests(output, (*COMPARED, "rejects"))


T_EN = 40  # the sample's t_en (Makefile SAMPLE_T_EN), as bench/identical_outputs.py runs it
# the standard AWS chain: what a user exports for boto3, and what the job must hand its executors
AWS_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """One master and two workers (1 core, 1 GiB each) on 127.0.0.1, stopped after the module."""
    with StandaloneCluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, cores=1, memory="1g") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The built-in sample, written as a user writes it."""
    out = tmp_path_factory.mktemp("cluster-sample")
    subprocess.run([sys.executable, "-m", "jobs.make_sample", "--out", str(out)], cwd=ROOT, env=loopback_env(),
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return out


def curate(master: str, inputs: str, metadata: str, output: str, env: dict | None = None,
           extra: Sequence[str] = ()) -> str:
    """`python jobs/curate.py` with the sample's settings; its stdout (the summary)."""
    cmd = [sys.executable, os.path.join("jobs", "curate.py"), "--master", master, "--input", inputs,
           "--metadata", metadata, "--output", output, "--t-en", str(T_EN), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or loopback_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def local_run(sample, tmp_path_factory) -> Path:
    """The output of a local[*] run on the sample: what the cluster runs must reproduce."""
    out = tmp_path_factory.mktemp("local-run") / "out"
    curate("local[*]", str(sample / "wat" / "*.wat.gz"), str(sample / "metadata"), str(out))
    assert {name.split(os.sep)[0] for name in digests(str(out))} == {*COMPARED, "rejects"}
    return out


def _assert_same_outputs(got: dict[str, str], want: dict[str, str]) -> None:
    differ = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    assert not differ, f"{len(differ)} of {len(want)} files differ from local[*]: {differ[:10]}"


def _executor_logs(cluster: StandaloneCluster, app_id: str) -> list[str]:
    """The stderr of every executor the app had, per worker (<work-dir>/<app-id>/<executor-id>/stderr)."""
    logs = []
    for i in range(cluster.workers):
        app_dir = cluster.root / f"worker-{i}" / app_id
        logs.append("".join(p.read_text(errors="replace") for p in sorted(app_dir.glob("*/stderr"))))
    return logs


def _check_ran_on_every_worker(cluster: StandaloneCluster, output: str) -> None:
    with open(os.path.join(output, "_MANIFEST.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["spark"]["master"] == cluster.master_url
    deadline = time.monotonic() + 30  # the master moves an app to "completed" once its driver has gone
    while not (apps := [a for a in cluster.status()["completedapps"] if a["name"] == APP_NAME]):
        assert time.monotonic() < deadline, cluster.status()
        time.sleep(0.5)
    app = max(apps, key=lambda a: a["starttime"])["id"]  # this run's: the latest
    for i, log in enumerate(_executor_logs(cluster, app)):
        assert "Finished task" in log, f"worker-{i} ran no task of {app}"


def test_cluster_daemons_bind_loopback_and_executors_refuse_other_addresses(spark_cluster, tmp_path):
    """The suite's loopback guard holds in the executors' Python workers too, and they run this
    venv's Python with this repository's packages."""
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        import json, os, socket, sys
        from jobs.common import build_spark

        def check(_):
            import curation
            try:
                socket.create_connection(("192.0.2.1", 9), timeout=1)  # TEST-NET-1: must never be tried
                refused = None
            except OSError as exc:
                refused = type(exc).__name__
            yield {"python": sys.executable, "curation": os.path.dirname(curation.__file__), "refused": refused}

        c1 = "-XX:TieredStopAtLevel=1"  # a probe: spare the shared cores the C2 JIT
        spark = build_spark("probe", sys.argv[1], {"spark.executor.extraJavaOptions": c1},
                            local_conf={"spark.driver.extraJavaOptions": c1})
        print(json.dumps(spark.sparkContext.parallelize(range(4), 4).mapPartitions(check).collect()))
        spark.stop()
    """))
    proc = subprocess.run([sys.executable, str(probe), spark_cluster.master_url], cwd=ROOT, env=loopback_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {r["refused"] for r in rows} == {"NonLoopbackConnect"}
    assert {r["python"] for r in rows} == {sys.executable}
    assert {r["curation"] for r in rows} == {str(ROOT / "curation")}
    for w in spark_cluster.status()["workers"]:
        assert w["host"] == "127.0.0.1", w


def test_curate_on_a_standalone_cluster_writes_the_bytes_of_local_mode(spark_cluster, sample, local_run, tmp_path):
    out = str(tmp_path / "out")  # a local path: both workers see it, as they would a shared filesystem
    curate(spark_cluster.master_url, str(sample / "wat" / "*.wat.gz"), str(sample / "metadata"), out)
    _assert_same_outputs(digests(out), digests(str(local_run)))
    _check_ran_on_every_worker(spark_cluster, out)


def test_curate_on_a_standalone_cluster_in_and_out_of_s3(spark_cluster, sample, local_run, s3_server, s3_bucket,
                                                         tmp_path):
    """Inputs, metadata, output and state on the loopback S3 server, as README's cluster section
    runs it; the AWS settings live only in the job's environment (the workers know none,
    tests/cluster.py NO_AWS): the job must forward them to its executors. The outputs are the
    bytes of the local run but for rejects/, whose `source` column names each input as given
    (here its s3:// URI): its rows must be the same otherwise."""
    root = f"s3://{s3_bucket}/cluster"
    s3_sample = storage.join(root, "sample")
    for path in sorted(p for p in sample.rglob("*") if p.is_file()):
        storage.write_bytes(storage.join(s3_sample, path.relative_to(sample).as_posix()), path.read_bytes())
    env = loopback_env()
    assert all(env.get(k) for k in AWS_ENV)  # set by the s3_server fixture: the standard boto3 chain
    out = storage.join(root, "out")
    curate(spark_cluster.master_url, storage.join(s3_sample, "wat", "*.wat.gz"), storage.join(s3_sample, "metadata"),
           out, env=env, extra=["--cache-dir", str(tmp_path / "automata-cache")])  # not the user's ~/.cache
    assert storage.is_complete(out)
    assert any(f.endswith("/stats.json") for f in storage.list_files(storage.join(root, ".out.state")))
    got, want = digests(out), digests(str(local_run))
    rejects = sorted(k for k in want if k.startswith("rejects" + os.sep))
    assert rejects and sorted(k for k in got if k.startswith("rejects" + os.sep)) == rejects
    _assert_same_outputs({k: v for k, v in got.items() if k not in rejects},
                         {k: v for k, v in want.items() if k not in rejects})
    published = CurateOutput.published(out)
    for name in rejects:
        table, expected = storage.read_table(published.path(name)), pq.read_table(local_run / name)
        sources = [str(sample) + s[len(s3_sample):] for s in table.column("source").to_pylist()]
        table = table.set_column(table.schema.get_field_index("source"), "source", pa.array(sources, pa.string()))
        assert table.equals(expected), name
    manifest = runs.read_json(published.manifest)
    assert manifest["spark"]["master"] == spark_cluster.master_url
