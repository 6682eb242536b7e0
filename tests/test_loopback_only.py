"""The suite's own connector refuses non-loopback targets before any socket connects, in the
test process and in Spark's Python workers (tests/loopback_only/sitecustomize.py)."""

from __future__ import annotations

import socket

import pytest

FORBIDDEN = ("169.254.169.254", "10.0.0.1", "192.168.1.1", "8.8.8.8", "2002:a9fe:a9fe::1", "::ffff:10.0.0.1")


def _attempt(host: str) -> str:
    from sitecustomize import attempt_connect  # tests/loopback_only, on every process's path

    return attempt_connect(host)


@pytest.mark.parametrize("host", FORBIDDEN)
def test_the_test_process_cannot_reach_other_addresses(host):
    assert _attempt(host) == "NonLoopbackConnect"


def test_loopback_still_connects():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    finally:
        server.close()


@pytest.mark.spark
def test_spark_workers_cannot_reach_other_addresses(spark):
    from sitecustomize import attempt_connect  # a module the workers import too: pickled by reference

    got = spark.sparkContext.parallelize(FORBIDDEN, 2).map(attempt_connect).collect()
    assert got == ["NonLoopbackConnect"] * len(FORBIDDEN)
