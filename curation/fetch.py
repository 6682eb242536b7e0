"""Safe, polite HTTP fetching of untrusted image URLs (urllib3, connection reuse, thread pool).

Safety, in the order it is applied to every hop (first request and each redirect):
1. only http/https; a URL that does not parse is `bad_url`;
2. the host is resolved here and every address is checked: loopback, private, link-local
   (incl. the 169.254.169.254 cloud metadata service), multicast, reserved, unspecified and
   any other non-global address is refused (`forbidden_address`) BEFORE a connection is
   made, unless loopback/private are explicitly allowed; link-local etc. are never allowed;
3. the connection goes to the checked IP itself (the Host header and TLS SNI/certificate
   check carry the name), so a second DNS answer cannot swap in another address (rebinding);
4. redirects are followed by hand, each hop re-checked, at most `max_redirects`, loops named;
5. per attempt: connect timeout, read (silence) timeout and a total wall-clock deadline;
   the body is capped by Content-Length and again while streaming (`too_large`).

Transient failures (5xx, 429, timeouts, connection resets) are retried a bounded number of
times with exponential backoff whose jitter is a hash of (url, attempt): no global RNG, so
reruns behave the same. A per-host semaphore caps simultaneous requests to one host.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import urllib3
import urllib3.connection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from curation.download_config import DownloadConfig

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_REASONS = frozenset({"timeout", "connection_error", "http_429", "http_5xx"})
REASONS = (
    "bad_url",
    "bad_scheme",
    "dns_error",
    "forbidden_address",
    "timeout",
    "connection_error",
    "ssl_error",
    "too_many_redirects",
    "redirect_loop",
    "too_large",
    "not_an_image",  # declared Content-Type is text/html, json, ... (body not read)
    "http_403",
    "http_404",
    "http_410",
    "http_429",
    "http_4xx",
    "http_5xx",
    "http_other",
    "fetch_error",  # an unexpected exception inside the fetcher (a bug): counted, never raised
)
_NOT_IMAGE_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "application/xhtml")
_CHUNK = 64 * 1024
_SIZED_CHUNK = 1 << 20  # reads of a body of declared length: one or two calls for a typical image


@dataclass(frozen=True)
class FetchResult:
    url: str
    body: bytes | None  # the image bytes when ok
    reason: str | None  # failure reason code, None when ok
    status: int | None = None
    final_url: str | None = None
    attempts: int = 1
    detail: str | None = None  # short human hint (exception text), for logs only
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class _Fail(Exception):
    def __init__(self, reason: str, detail: str | None = None, status: int | None = None, retry_after=None):
        super().__init__(reason)
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after


_tls = threading.local()


class _Watched:
    """Tells the watchdog which connection the current thread is using (set in request())."""

    def request(self, *args, **kwargs):
        holder = getattr(_tls, "holder", None)
        if holder is not None:
            holder[0] = self
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _Watchdog:
    """Enforces the total deadline on blocking reads: a server that trickles its status line or
    headers one byte per few seconds never trips the read timeout, so at the deadline the
    socket is shut down from this thread and the blocked read returns."""

    def __init__(self, tick: float = 0.1):
        self._tick = tick
        self._lock = threading.Lock()
        self._active: dict[int, tuple[float, list]] = {}
        self._fired: set[int] = set()
        self._next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, holder: list) -> int:
        with self._lock:
            self._next += 1
            token = self._next
            self._active[token] = (deadline, holder)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; True when the deadline fired for this token."""
        with self._lock:
            self._active.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                expired = [(t, h) for t, (d, h) in self._active.items() if d < now and t not in self._fired]
                for t, _h in expired:
                    self._fired.add(t)
            for _t, holder in expired:
                sock = getattr(holder[0], "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def stop(self) -> None:
        self._stop.set()


# IPv6 ranges decided here rather than by the running Python's tables (which differ between
# versions): an address that carries an IPv4 address is judged by that IPv4 address, since a
# 6to4 relay or NAT64 gateway delivers to it; deprecated site-local is as private as fc00::/7.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 address reaches, if it is one."""
    if addr.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
        return addr.ipv4_mapped
    if addr.sixtofour is not None:  # 2002:0a00:0001:: is routed to 10.0.0.1
        return addr.sixtofour
    if addr in _NAT64:  # 64:ff9b::a00:1 is translated to 10.0.0.1
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


# the download job's flag that allows a refused kind of address (the others are never allowed)
_ALLOWED_BY = {"loopback": "; allowed by --allow-loopback", "private": "; allowed by --allow-private"}


def address_refusal(ip: str, allow_loopback: bool = False, allow_private: bool = False) -> str | None:
    """None when connecting to `ip` is allowed, else a short reason why not."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return f"unparsable address {ip!r}"
    if addr.version == 6:
        if addr in _SITE_LOCAL:
            return None if allow_private else "private"
        addr = _embedded_ipv4(addr) or addr
    if addr.is_loopback:
        return None if allow_loopback else "loopback"
    if addr.is_link_local:
        return "link-local"  # never: 169.254.169.254 is the cloud metadata service
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_reserved:
        return "reserved"
    if addr.is_private or not addr.is_global:
        return None if allow_private else "private"
    return None


def backoff_seconds(url: str, attempt: int, base: float, cap: float) -> float:
    """base * 2**attempt * (0.5 + u), u in [0, 1) a hash of (url, attempt); at most cap."""
    h = hashlib.blake2b(f"{url}\x1f{attempt}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2**64
    return min(cap, base * (2**attempt) * (0.5 + u))


def _host_header(host: str, port: int, scheme: str) -> str:
    h = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return h if port == default else f"{h}:{port}"


def _ascii_host(host: str) -> str:
    try:
        host.encode("ascii")
        return host
    except UnicodeEncodeError:
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _Fail("bad_url", f"host not IDNA-encodable: {exc}") from exc


class Fetcher:
    """Fetches URLs under one DownloadConfig; thread-safe, meant to be shared by a task's threads."""

    def __init__(self, config: DownloadConfig, resolver: Callable[[str, int], list[str]] | None = None,
                 max_pools: int = 512):
        self.config = config
        self._resolve_fn = resolver or self._getaddrinfo
        self._dns: OrderedDict[tuple[str, int], list[str] | Exception] = OrderedDict()
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._host_sems: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._max_pools = max_pools
        self._watchdog = _Watchdog()
        self._ca_certs = None
        try:
            import certifi

            self._ca_certs = certifi.where()
        except ImportError:  # fall back to the system store
            pass

    # --- resolution and pools -------------------------------------------------------------

    @staticmethod
    def _getaddrinfo(host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
        v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
        return list(dict.fromkeys(v4 + v6))  # IPv4 first: IPv6 routes are often missing

    def resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        with self._lock:
            hit = self._dns.get(key)
        if hit is None:
            try:
                hit = self._resolve_fn(host, port)
                if not hit:
                    hit = _Fail("dns_error", f"no address for {host}")
            except (OSError, UnicodeError) as exc:
                hit = _Fail("dns_error", f"{host}: {exc}")
            with self._lock:
                self._dns[key] = hit
                if len(self._dns) > 4096:
                    self._dns.popitem(last=False)
        if isinstance(hit, Exception):
            raise hit
        return hit

    def _pool(self, scheme: str, ip: str, port: int, host: str):
        key = (scheme, ip, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            kw = dict(maxsize=self.config.per_host_concurrency, block=False, retries=False)
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    ip, port, server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED",
                    ca_certs=self._ca_certs, **kw,
                )
            else:
                pool = urllib3.HTTPConnectionPool(ip, port, **kw)
            pool.ConnectionCls = _WatchedHTTPSConnection if scheme == "https" else _WatchedHTTPConnection
            self._pools[key] = pool
            while len(self._pools) > self._max_pools:
                _, old = self._pools.popitem(last=False)
                old.close()
            return pool

    def _host_sem(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._host_sems.get(host)
            if sem is None:
                sem = self._host_sems[host] = threading.BoundedSemaphore(self.config.per_host_concurrency)
            return sem

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
        self._watchdog.stop()

    # --- one hop ---------------------------------------------------------------------------

    def _check_url(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, ascii host, port, request target) of a URL allowed by scheme; raises _Fail."""
        try:
            parts = urlsplit(url.strip())
            scheme = parts.scheme.lower()
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise _Fail("bad_url", str(exc)) from exc
        if scheme not in ("http", "https"):
            raise _Fail("bad_scheme", scheme or "(none)")
        if not host:
            raise _Fail("bad_url", "no host")
        host = _ascii_host(host.rstrip("."))
        port = port or (443 if scheme == "https" else 80)
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        return scheme, host, port, target

    def _checked_ip(self, host: str, port: int) -> str:
        addrs = self.resolve(host, port)
        for ip in addrs:  # every answer must be allowed: refuse a host that mixes in an internal one
            why = address_refusal(ip, self.config.allow_loopback, self.config.allow_private)
            if why is not None:
                raise _Fail("forbidden_address", f"{host} -> {ip} ({why}{_ALLOWED_BY.get(why, '')})")
        return addrs[0]

    def _hop(self, url: str, clock: list) -> tuple[int, bytes | None, str | None, float | None]:
        """One request: (status, body or None, Location, Retry-After). Raises _Fail.

        `clock[0]` is the attempt's deadline; time spent queueing for a host slot (the per-host
        cap) is added to it, so waiting behind other requests never counts as a timeout.
        """
        cfg = self.config
        scheme, host, port, target = self._check_url(url)
        ip = self._checked_ip(host, port)
        headers = {
            "Host": _host_header(host, port, scheme),
            "User-Agent": cfg.user_agent,
            "Accept": "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "identity",
        }
        sem = self._host_sem(host)
        queued = time.monotonic()
        with sem:
            clock[0] += time.monotonic() - queued
            deadline = clock[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Fail("timeout", "total deadline")
            timeout = urllib3.Timeout(connect=min(cfg.connect_timeout, remaining),
                                      read=min(cfg.read_timeout, remaining))
            pool = self._pool(scheme, ip, port, host)
            holder: list = [None]
            _tls.holder = holder
            token = self._watchdog.watch(deadline, holder)
            try:
                return self._request(pool, target, headers, timeout, deadline)
            except _Fail as f:
                if self._watchdog.unwatch(token):
                    raise _Fail("timeout", "total deadline (watchdog)") from f
                raise
            finally:
                self._watchdog.unwatch(token)
                _tls.holder = None

    def _request(self, pool, target: str, headers: dict, timeout, deadline: float):
        try:
            resp = pool.urlopen(
                "GET", target, headers=headers, redirect=False, retries=False, timeout=timeout,
                preload_content=False, assert_same_host=False, decode_content=True,
            )
        except NewConnectionError as exc:  # (a subclass of ConnectTimeoutError: test it first)
            reason = "timeout" if "timed out" in str(exc) else "connection_error"
            raise _Fail(reason, str(exc)[:200]) from exc
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError, socket.timeout) as exc:
            raise _Fail("timeout", str(exc)[:200]) from exc
        except SSLError as exc:
            raise _Fail("ssl_error", str(exc)[:200]) from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            raise _Fail("connection_error", str(exc)[:200]) from exc
        except (ValueError, UnicodeError) as exc:  # e.g. control characters in the target
            raise _Fail("bad_url", str(exc)[:200]) from exc
        try:
            return self._read(resp, deadline)
        finally:
            resp.release_conn()

    def _read(self, resp, deadline: float):
        cfg = self.config
        status = resp.status
        retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
        if status in REDIRECT_CODES or status not in (200, 203):
            _discard_body(resp)
            location = resp.headers.get("Location") if status in REDIRECT_CODES else None
            return status, None, location, retry_after
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if cfg.check_content_type and ctype.startswith(_NOT_IMAGE_TYPES):
            resp.close()
            raise _Fail("not_an_image", f"Content-Type {ctype[:60]}")
        declared, length = _body_lengths(resp.headers)
        if declared is not None and declared > cfg.max_bytes:
            resp.close()
            raise _Fail("too_large", f"Content-Length {declared}")
        chunks, size = [], 0
        try:
            while True:
                if time.monotonic() > deadline:
                    resp.close()
                    raise _Fail("timeout", "total deadline while reading")
                if length is not None:
                    # the length is known and within the cap: large blocking reads (each recv
                    # still under the read timeout, the watchdog still ends the attempt at the
                    # deadline) cost a fraction of the per-call overhead of recv-sized pieces
                    chunk = resp.read(min(_SIZED_CHUNK, length - size))
                else:
                    chunk = resp.read1(_CHUNK)  # what one recv gives: the deadline is checked between
                if not chunk:
                    break
                size += len(chunk)
                if size > cfg.max_bytes:
                    resp.close()
                    raise _Fail("too_large", f"body over {cfg.max_bytes} bytes")
                chunks.append(chunk)
                if size == length:
                    break
        except (ReadTimeoutError, TimeoutError, socket.timeout) as exc:
            resp.close()
            raise _Fail("timeout", str(exc)[:200]) from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            resp.close()
            raise _Fail("connection_error", str(exc)[:200]) from exc
        return status, b"".join(chunks), None, retry_after

    # --- one attempt (with redirects) and retries -------------------------------------------------

    def _attempt(self, url: str) -> FetchResult:
        clock = [time.monotonic() + self.config.total_timeout]
        seen = {url}
        current = url
        for _hop in range(self.config.max_redirects + 1):
            try:
                status, body, location, retry_after = self._hop(current, clock)
            except _Fail as f:
                return FetchResult(url, None, f.reason, f.status, current, detail=f.detail)
            if status in REDIRECT_CODES:
                if not location:
                    return FetchResult(url, None, "http_other", status, current, detail="redirect without Location")
                nxt = urljoin(current, location.strip())
                if nxt in seen:
                    return FetchResult(url, None, "redirect_loop", status, current, detail=nxt[:200])
                seen.add(nxt)
                current = nxt
                continue
            if body is not None:
                return FetchResult(url, body, None, status, current)
            return FetchResult(url, None, status_reason(status), status, current, retry_after=retry_after)
        return FetchResult(url, None, "too_many_redirects", None, current)

    def fetch(self, url: str) -> FetchResult:
        """Fetch with bounded retries of transient failures; never raises on a bad URL or server."""
        cfg = self.config
        attempt = 0
        while True:
            res = self._attempt(url)
            if res.ok or res.reason not in TRANSIENT_REASONS or attempt >= cfg.retries:
                return FetchResult(res.url, res.body, res.reason, res.status, res.final_url, attempt + 1, res.detail)
            wait = backoff_seconds(url, attempt, cfg.backoff_base, cfg.backoff_max)
            if res.retry_after is not None:
                wait = min(cfg.backoff_max, max(wait, res.retry_after))
            time.sleep(wait)
            attempt += 1


def _body_lengths(headers) -> tuple[int | None, int | None]:
    """(declared Content-Length, the same when the body arrives as declared, i.e. without transfer
    or content coding); None where absent, unparsable or not applicable."""
    try:
        declared = int(headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None, None
    if declared < 0:
        return None, None
    coded = ("chunked" in (headers.get("Transfer-Encoding") or "").lower()
             or (headers.get("Content-Encoding") or "identity").strip().lower() != "identity")
    return declared, None if coded else declared


def _discard_body(resp) -> None:
    """Keep the connection when the unwanted body is small, else close it (never read much)."""
    try:
        small = int(resp.headers.get("Content-Length", "-1")) in range(0, 64 * 1024)
    except ValueError:
        small = False
    if small:
        try:
            resp.drain_conn()
            return
        except Exception:  # noqa: BLE001
            pass
    resp.close()


def status_reason(status: int) -> str:
    if status in (403, 404, 410, 429):
        return f"http_{status}"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "http_other"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore, the backoff applies


def _interleave_hosts(items: list[tuple[object, str]]) -> list[tuple[object, str]]:
    """Round-robin over hosts (stable), so threads do not queue on one host's semaphore."""
    by_host: OrderedDict[str, list] = OrderedDict()
    for item in items:
        try:
            host = urlsplit(item[1]).hostname or ""
        except ValueError:
            host = ""
        by_host.setdefault(host, []).append(item)
    queues = list(by_host.values())
    out, i = [], 0
    while queues:
        nxt = []
        for q in queues:
            if i < len(q):
                out.append(q[i])
                nxt.append(q)
        queues, i = nxt, i + 1
    return out


def fetch_many(
    fetcher: Fetcher,
    items: Iterable[tuple[object, str]],
    process: Callable[[bytes], tuple[object, str | None]] | None = None,
    threads: int | None = None,
    process_concurrency: int | None = None,
) -> Iterator[tuple[object, FetchResult, object, str | None]]:
    """Fetch (key, url) items concurrently; yields (key, result, processed, reason) as they finish.

    `process(body) -> (value, reason)` runs in the fetching thread (e.g. decode + resize, whose
    libraries release the GIL), so CPU work overlaps network waits. At most
    `process_concurrency` bodies are processed at once (None: no limit): fetches stay
    `threads`-wide while decoding, whose memory grows with every image in flight, matches the
    cores. `reason` is the fetch failure reason, else the process failure reason, else None. An
    exception in `process` is counted as `process_error`, never raised.
    """
    gate = threading.BoundedSemaphore(process_concurrency) if process_concurrency else contextlib.nullcontext()

    def work(key, url):
        try:
            res = fetcher.fetch(url)
        except Exception as exc:  # noqa: BLE001 - a bug or an odd library error: count it, go on
            res = FetchResult(url, None, "fetch_error", detail=f"{type(exc).__name__}: {exc}"[:200])
        if not res.ok:
            return key, res, None, res.reason
        if process is None:
            return key, res, res.body, None
        try:
            with gate:
                value, reason = process(res.body)
        except Exception:  # noqa: BLE001 - one bad image must not end the task
            return key, res, None, "process_error"
        return key, res, value, reason

    ordered = _interleave_hosts(list(items))
    n_threads = max(1, min(threads or fetcher.config.threads, len(ordered) or 1))
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="fetch") as pool:
        # no list of the futures is kept here: as_completed lets go of each one it yields, so a
        # result (and its body) is freed once the caller is done with it, not at the end of the
        # shard (which held every body of the shard in memory at once)
        for fut in as_completed([pool.submit(work, key, url) for key, url in ordered]):
            yield fut.result()
            del fut
