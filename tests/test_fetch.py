"""curation.fetch against a real HTTP server on loopback that serves images and hostile cases.

`HostileServer` is also used by tests/test_download_job.py. No traffic ever leaves loopback:
the forbidden-address cases must be refused before a connection is attempted.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from curation.download_config import DownloadConfig
from curation.fetch import Fetcher, address_refusal, backoff_seconds, fetch_many

# --- generated test images -------------------------------------------------------------------


def make_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A deterministic noisy gradient (noise makes the file size realistic for a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) * 127 // max(width + height, 1))], -1)
    arr = np.clip(base + rng.integers(-40, 40, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_png(width: int, height: int, mode: str = "RGBA", color=(10, 200, 30, 128)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color[: len(mode)] if mode != "P" else 3).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A ~100-byte PNG that declares width x height pixels (IHDR rewritten, CRC fixed)."""
    raw = make_png(1, 1, "L", (0,))
    ihdr_at = raw.index(b"IHDR")
    ihdr = raw[ihdr_at : ihdr_at + 17]
    new = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:17]
    crc = struct.pack(">I", zlib.crc32(new) & 0xFFFFFFFF)
    return raw[:ihdr_at] + new + crc + raw[ihdr_at + 21 :]


# --- the server ------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up on purpose (caps, deadlines) are expected here, not errors to print."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class HostileServer:
    """ThreadingHTTPServer on 127.0.0.1 with image routes and hostile routes.

    Routes: /img/<name> (registered bytes), /status/<code>, /slow (headers after `slow` s),
    /dribble (body bytes every 0.3 s), /trickle (header bytes every 0.2 s), /redirect/<n>, /loop, /loop-a <-> /loop-b,
    /to?u=<url> (302 there), /big (Content-Length over any cap), /big-chunked (no length),
    /reset (closes without answering), /flaky/<key>/<n> (503 n times, then an image),
    /short (a body shorter than its Content-Length), /gzip-bomb (content-coded, over the cap decoded),
    /fake.jpg (text with an image Content-Type), /html, /hold/<name> (image after 0.2 s, for
    concurrency counting), /empty.
    """

    def __init__(self):
        self.images: dict[str, tuple[bytes, str]] = {}
        self.slow = 3.0
        self.flaky_counts: dict[str, int] = {}
        self.flaky_ok = True  # when False, /flaky never recovers
        self.requests: list[tuple[str, str, int]] = []  # (path, Host header, client port)
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code, body=b"", ctype="application/octet-stream", headers=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):  # noqa: C901 - one branch per route
                path = urlsplit(self.path).path
                with outer.lock:
                    outer.requests.append((self.path, self.headers.get("Host", ""), self.client_address[1]))
                try:
                    self._route(path)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _route(self, path):
                parts = path.strip("/").split("/")
                if parts[0] == "img" and len(parts) == 2 and parts[1] in outer.images:
                    body, ctype = outer.images[parts[1]]
                    return self._send(200, body, ctype)
                if parts[0] == "hold":
                    with outer.lock:
                        outer.inflight += 1
                        outer.max_inflight = max(outer.max_inflight, outer.inflight)
                    time.sleep(0.2)
                    with outer.lock:
                        outer.inflight -= 1
                    body, ctype = outer.images[parts[1]]
                    return self._send(200, body, ctype)
                if parts[0] == "status":
                    return self._send(int(parts[1]), b"no", "text/plain")
                if parts[0] == "slow":
                    time.sleep(outer.slow)
                    return self._send(200, outer.images["a.jpg"][0], "image/jpeg")
                if parts[0] == "trickle":  # a tarpit: headers one byte at a time, never finished
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(100):
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        time.sleep(0.2)
                    self.close_connection = True
                    return None
                if parts[0] == "dribble":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.3)
                    return None
                if parts[0] == "redirect":
                    n = int(parts[1])
                    loc = f"/redirect/{n - 1}" if n > 0 else "/img/a.jpg"
                    return self._send(302, b"", "text/plain", {"Location": loc})
                if parts[0] == "loop":
                    return self._send(301, b"", "text/plain", {"Location": "/loop"})
                if parts[0] == "loop-a":
                    return self._send(302, b"", "text/plain", {"Location": "/loop-b"})
                if parts[0] == "loop-b":
                    return self._send(302, b"", "text/plain", {"Location": "/loop-a"})
                if parts[0] == "to":
                    target = parse_qs(urlsplit(self.path).query)["u"][0]
                    return self._send(302, b"", "text/plain", {"Location": target})
                if parts[0] == "big":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    return None  # the client must refuse on the header alone
                if parts[0] == "big-chunked":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    block = b"\xff" * 65536
                    for _ in range(64):  # 4 MiB at most
                        self.wfile.write(block)
                    return None
                if parts[0] == "short":  # declares more than it sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(outer.images["a.jpg"][0][:1000])
                    self.close_connection = True
                    return None
                if parts[0] == "gzip-bomb":  # small on the wire, over any cap once decoded
                    body = gzip.compress(b"\xff" * (8 << 20), compresslevel=9)
                    return self._send(200, body, "image/jpeg", {"Content-Encoding": "gzip"})
                if parts[0] == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                if parts[0] == "flaky":
                    key, n = parts[1], int(parts[2])
                    with outer.lock:
                        count = outer.flaky_counts.get(key, 0)
                        outer.flaky_counts[key] = count + 1
                    if count < n or not outer.flaky_ok:
                        return self._send(503, b"busy", "text/plain", {"Retry-After": "0"})
                    return self._send(200, outer.images["a.jpg"][0], "image/jpeg")
                if parts[0] == "fake.jpg":
                    return self._send(200, b"<html>not an image at all</html>" * 10, "image/jpeg")
                if parts[0] == "html":
                    return self._send(200, b"<html></html>", "text/html; charset=utf-8")
                if parts[0] == "empty":
                    return self._send(200, b"", "image/jpeg")
                return self._send(404, b"not found", "text/plain")

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, name: str, body: bytes, ctype: str = "image/jpeg") -> str:
        self.images[name] = (body, ctype)
        return f"{self.base}/img/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def standard_images(server: HostileServer) -> None:
    good = make_jpeg(320, 240, seed=1)
    server.add("a.jpg", good)
    server.add("b.jpg", make_jpeg(200, 400, seed=2))
    server.add("dup.jpg", good)  # same bytes as a.jpg under another URL
    server.add("c.png", make_png(300, 300))
    server.add("trunc.jpg", good[: len(good) // 2])
    server.add("bomb.png", png_bomb(30000, 30000), "image/png")
    server.add("bomb2.png", png_bomb(9000, 9000), "image/png")  # under Pillow's limit, over ours


@pytest.fixture(scope="module")
def server():
    with HostileServer() as srv:
        standard_images(srv)
        yield srv


FAST = DownloadConfig(
    allow_loopback=True, connect_timeout=1.0, read_timeout=0.5, total_timeout=1.5, retries=2,
    backoff_base=0.01, backoff_max=0.05, max_bytes=2 * 1024 * 1024, threads=8,
)


@pytest.fixture(scope="module")
def fetcher():
    f = Fetcher(FAST)
    yield f
    f.close()


# --- tests -----------------------------------------------------------------------------------


def test_fetches_image_bytes_and_sends_host_and_user_agent(server, fetcher):
    res = fetcher.fetch(f"{server.base}/img/a.jpg")
    assert res.ok and res.body == server.images["a.jpg"][0] and res.status == 200 and res.attempts == 1


def test_hostname_is_sent_as_host_header_while_connecting_to_checked_ip(server):
    seen = []

    def resolver(host, port):
        seen.append(host)
        return ["127.0.0.1"]

    f = Fetcher(FAST, resolver=resolver)
    res = f.fetch(f"http://images.example.test:{server.port}/img/a.jpg")
    assert res.ok
    assert seen == ["images.example.test"]
    assert server.requests[-1][1] == f"images.example.test:{server.port}"


def test_loopback_refused_without_the_allow_flag(server):
    strict = Fetcher(DownloadConfig(connect_timeout=1.0, total_timeout=2.0))
    n_before = len(server.requests)
    for url in (f"{server.base}/img/a.jpg", f"http://localhost:{server.port}/img/a.jpg", f"http://[::1]:{server.port}/x"):
        res = strict.fetch(url)
        assert res.reason == "forbidden_address", (url, res)
        assert res.attempts == 1
    assert len(server.requests) == n_before  # nothing reached the server


@pytest.mark.parametrize(
    "ip,allowed",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("240.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fc00::1", False),
        ("::1", False),
        ("2002:0a00:0001::1", False),  # 6to4 around 10.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 around 169.254.169.254
        ("2002:7f00:0001::1", False),  # 6to4 around 127.0.0.1
        ("2002:0808:0808::1", True),  # 6to4 around 8.8.8.8
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("fec0::1", False),  # site-local (deprecated, private)
        ("feff::1", False),
    ],
)
def test_address_refusal_table(ip, allowed):
    assert (address_refusal(ip) is None) == allowed


def test_allow_flags_are_narrow():
    assert address_refusal("127.0.0.1", allow_loopback=True) is None
    assert address_refusal("10.0.0.1", allow_loopback=True) == "private"
    assert address_refusal("10.0.0.1", allow_private=True) is None
    # link-local (cloud metadata) stays refused whatever the flags
    assert address_refusal("169.254.169.254", allow_loopback=True, allow_private=True) == "link-local"
    assert address_refusal("2002:a9fe:a9fe::1", allow_loopback=True, allow_private=True) == "link-local"
    assert address_refusal("2002:7f00:1::1", allow_loopback=True) is None  # loopback, wrapped, is loopback
    assert address_refusal("fec0::1") == "private" and address_refusal("fec0::1", allow_private=True) is None


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00::1]/x", "http://0.0.0.0/"],
)
def test_redirect_to_forbidden_address_is_refused_before_connecting(server, target):
    class Recording(Fetcher):
        def _pool(self, scheme, ip, port, host):
            opened.append(ip)
            return super()._pool(scheme, ip, port, host)

    opened: list[str] = []
    f = Recording(FAST)
    res = f.fetch(f"{server.base}/to?u={target}")
    assert res.reason == "forbidden_address"
    assert res.final_url == target and res.attempts == 1
    assert opened == ["127.0.0.1"]  # only the server's: no connection was even set up to the target
    f.close()


def test_redirect_to_forbidden_hostname_is_refused(server):
    def resolver(host, port):
        return {"evil.test": ["10.1.2.3"], "mixed.test": ["93.184.216.34", "127.0.0.1"]}.get(host, ["127.0.0.1"])

    f = Fetcher(DownloadConfig(allow_loopback=True, total_timeout=2.0), resolver=resolver)
    assert f.fetch(f"{server.base}/to?u=http://evil.test/x.jpg").reason == "forbidden_address"
    strict = Fetcher(DownloadConfig(total_timeout=2.0), resolver=resolver)
    assert strict.fetch("http://mixed.test/x.jpg").reason == "forbidden_address"


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://example.com/a.jpg", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("data:image/png;base64,AAAA", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("http:///nohost", "bad_url"),
        ("http://example.com:99999/x", "bad_url"),
        ("not a url", "bad_scheme"),
    ],
)
def test_bad_urls(fetcher, url, reason):
    assert fetcher.fetch(url).reason == reason


def test_redirects_followed_up_to_the_limit(server, fetcher):
    ok = fetcher.fetch(f"{server.base}/redirect/3")
    assert ok.ok and ok.final_url.endswith("/img/a.jpg")
    assert fetcher.fetch(f"{server.base}/redirect/{FAST.max_redirects + 1}").reason == "too_many_redirects"
    assert fetcher.fetch(f"{server.base}/loop").reason == "redirect_loop"
    assert fetcher.fetch(f"{server.base}/loop-a").reason == "redirect_loop"


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/status/404", "http_404"),
        ("/status/403", "http_403"),
        ("/status/418", "http_4xx"),
        ("/nothing-here", "http_404"),
        ("/html", "not_an_image"),
        ("/big", "too_large"),
        ("/big-chunked", "too_large"),
        ("/slow", "timeout"),
        ("/dribble", "timeout"),
        ("/trickle", "timeout"),
        ("/reset", "connection_error"),
        ("/short", "connection_error"),
        ("/gzip-bomb", "too_large"),
        ("/status/500", "http_5xx"),
    ],
)
def test_hostile_responses_end_as_counted_reasons(server, fetcher, path, reason):
    if reason == "timeout":  # one attempt is enough to show the deadline; retries are tested below
        fetcher = Fetcher(FAST.replace(retries=0))
    res = fetcher.fetch(server.base + path)
    assert res.reason == reason, res
    assert res.body is None


def test_transient_errors_are_retried_with_a_bound(server, fetcher):
    res = fetcher.fetch(f"{server.base}/flaky/k1/2")
    assert res.ok and res.attempts == 3
    res = fetcher.fetch(f"{server.base}/flaky/k2/5")
    assert res.reason == "http_5xx" and res.attempts == FAST.retries + 1
    assert fetcher.fetch(f"{server.base}/status/404").attempts == 1  # permanent: no retry


def test_backoff_is_deterministic_exponential_and_capped():
    a = [backoff_seconds("http://x/y", k, 0.5, 100) for k in range(5)]
    assert a == [backoff_seconds("http://x/y", k, 0.5, 100) for k in range(5)]
    for k, v in enumerate(a):
        assert 0.25 * 2**k <= v < 0.75 * 2**k
    assert backoff_seconds("http://x/y", 20, 0.5, 3.0) == 3.0
    assert backoff_seconds("http://x/y", 1, 0.5, 100) != backoff_seconds("http://x/z", 1, 0.5, 100)


def test_per_host_cap_and_connection_reuse(server):
    cfg = FAST.replace(per_host_concurrency=2, threads=8, total_timeout=5.0, read_timeout=3.0)
    f = Fetcher(cfg)
    server.max_inflight = 0
    start = len(server.requests)
    items = [(i, f"{server.base}/hold/a.jpg?i={i}") for i in range(8)]
    out = list(fetch_many(f, items))
    assert sorted(k for k, *_ in out) == list(range(8)) and all(r.ok for _, r, _, _ in out)
    assert server.max_inflight <= 2
    ports = {p for _, _, p in server.requests[start:]}
    assert len(ports) <= 2  # 8 requests over at most 2 kept-alive connections
    f.close()


def test_fetch_many_frees_each_result_once_consumed(server, fetcher):
    """A shard's bodies must not pile up in memory until the shard ends: each result (and the
    body it carries) is freed once the caller has moved on, while later ones are still coming."""
    import gc
    import weakref

    items = [(i, f"{server.base}/img/a.jpg?i={i}") for i in range(12)]
    gen = fetch_many(fetcher, items, threads=2)
    refs = []
    for _ in range(6):
        _key, res, _body, reason = next(gen)
        assert reason is None
        refs.append(weakref.ref(res))
        del res, _body
    gc.collect()
    assert all(r() is None for r in refs[:5]), "results of consumed items are still referenced"
    assert len(list(gen)) == 6  # the rest still arrive


def test_fetch_many_runs_process_and_counts_its_exceptions(server, fetcher):
    def process(body):
        if body[:2] != b"\xff\xd8":
            raise RuntimeError("boom")
        return len(body), None

    items = [("ok", f"{server.base}/img/a.jpg"), ("bad", f"{server.base}/fake.jpg"), ("gone", f"{server.base}/status/410")]
    got = {k: (v, reason) for k, _, v, reason in fetch_many(fetcher, items, process)}
    assert got["ok"] == (len(server.images["a.jpg"][0]), None)
    assert got["bad"] == (None, "process_error")
    assert got["gone"] == (None, "http_410")


def test_fetch_many_processes_at_most_process_concurrency_bodies_at_once(server, fetcher):
    lock, now, peak = threading.Lock(), [0], [0]

    def process(body):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return len(body), None

    items = [(i, f"{server.base}/img/a.jpg?q={i}") for i in range(8)]
    for limit in (1, 2):
        peak[0] = 0
        got = list(fetch_many(fetcher, items, process, threads=8, process_concurrency=limit))
        assert sorted(k for k, _, v, reason in got if v and reason is None) == list(range(8))
        assert 1 <= peak[0] <= limit  # without the gate all 8 fetching threads would process at once


def test_connection_refused_is_a_connection_error(fetcher):
    res = fetcher.fetch("http://127.0.0.1:1/x.jpg")  # nothing listens on port 1
    assert res.reason == "connection_error" and res.attempts == FAST.retries + 1


def test_https_to_a_plain_http_server_fails_cleanly(server, fetcher):
    res = fetcher.fetch(f"https://127.0.0.1:{server.port}/img/a.jpg")  # TLS handshake against plain HTTP
    assert res.reason in ("ssl_error", "connection_error") and res.body is None


def test_waiting_for_a_host_slot_is_not_a_timeout(server):
    # 5 requests of 0.2 s each through one slot: the last waits 0.8 s, longer than its 0.5 s budget
    cfg = FAST.replace(per_host_concurrency=1, threads=5, total_timeout=0.5, read_timeout=0.45, retries=0)
    f = Fetcher(cfg)
    out = list(fetch_many(f, [(i, f"{server.base}/hold/a.jpg?q={i}") for i in range(5)]))
    assert [r.reason for _, r, _, _ in out] == [None] * 5
    f.close()
