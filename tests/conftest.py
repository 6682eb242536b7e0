"""Shared fixtures: one real local SparkSession, a real S3 API server (moto) on loopback, shared data."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Every process of the suite (this one, and Spark's Python workers, which inherit PYTHONPATH)
# can connect to loopback only: tests/loopback_only/sitecustomize.py.
LOOPBACK_ONLY = str(ROOT / "tests" / "loopback_only")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (LOOPBACK_ONLY, os.environ.get("PYTHONPATH")) if p)
sys.path.insert(0, LOOPBACK_ONLY)
import sitecustomize as _loopback_only  # noqa: E402

if not hasattr(_loopback_only, "NonLoopbackConnect"):  # an interpreter-wide sitecustomize came first
    import importlib.util

    _spec = importlib.util.spec_from_file_location("loopback_only", os.path.join(LOOPBACK_ONLY, "sitecustomize.py"))
    _loopback_only = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_loopback_only)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when this machine lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real third-party data not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_file(relpath: str) -> Path:
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"{path} is absent on this machine")
    return path


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one local SparkSession of the test session (2 cores, small shuffles, no UI)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("worldclip-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.memory", "2g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.python.daemon.module", "jobs.spark_daemon")  # as jobs.common.build_spark in local mode
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto, server mode) on loopback; yields its endpoint URL.

    The standard AWS environment variables point boto3 at it, as they would on a cluster.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3")}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=endpoint,
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the loopback S3 server; yields its name."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
