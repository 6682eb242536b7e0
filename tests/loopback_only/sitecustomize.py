"""Loaded by every Python process of the test suite (the tests' own and Spark's workers, which
inherit PYTHONPATH from conftest): a TCP/UDP connect to anything but loopback raises before a
socket is opened, so a regression in a guard under test fails the test and no packet leaves
127.0.0.0/8 or ::1. Tests of forbidden targets rely on this, not on the guard they test."""

from __future__ import annotations

import ipaddress
import socket


class NonLoopbackConnect(ConnectionRefusedError):
    """A test process tried to reach an address other than loopback."""


def _check(sock, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets and the like never leave the machine
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise NonLoopbackConnect(f"tests connect to loopback addresses only, not {host!r}") from None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise NonLoopbackConnect(f"tests connect to loopback addresses only, not {host}")


def attempt_connect(host: str, port: int = 80) -> str:
    """What a TCP connect to (host, port) ends in: "connected" or the exception's class name
    (here, for the suite's tests: importable in Spark's workers, unlike a test module)."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(0.01)
        s.connect((host, port))
        return "connected"
    except Exception as exc:  # noqa: BLE001 - the class name is the answer
        return type(exc).__name__
    finally:
        s.close()


def install() -> None:
    cls = socket.socket
    if getattr(cls, "_loopback_only", False):
        return
    connect, connect_ex = cls.connect, cls.connect_ex

    def guarded_connect(self, address):
        _check(self, address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _check(self, address)
        return connect_ex(self, address)

    cls.connect, cls.connect_ex = guarded_connect, guarded_connect_ex
    cls._loopback_only = True


install()
