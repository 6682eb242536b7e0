"""The suite's own connector refuses non-loopback targets before any socket connects, in the
test process and in Spark's Python workers (tests/loopback_only/sitecustomize.py)."""

from __future__ import annotations

import socket

import pytest

FORBIDDEN = ("169.254.169.254", "10.0.0.1", "192.168.1.1", "8.8.8.8", "2002:a9fe:a9fe::1", "::ffff:10.0.0.1")


def _attempt(host: str) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(0.01)
        s.connect((host, 80))
        return "connected"
    except Exception as exc:  # noqa: BLE001 - the class name is the answer
        return type(exc).__name__
    finally:
        s.close()


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
    def attempt(host: str) -> str:  # nested: pickled by value (workers cannot import this test module)
        import socket

        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(0.01)
            s.connect((host, 80))
            return "connected"
        except Exception as exc:  # noqa: BLE001 - the class name is the answer
            return type(exc).__name__
        finally:
            s.close()

    got = spark.sparkContext.parallelize(FORBIDDEN, 2).map(attempt).collect()
    assert got == ["NonLoopbackConnect"] * len(FORBIDDEN)
