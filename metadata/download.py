"""Fetch metadata sources (Wikipedia dumps, pageviews, OMW) over HTTP: resumable and verified.

- Resumable: bytes go to `<dest>.part`; a retry (after a cut connection, a timeout, or in a
  later run) asks for the rest with `Range: bytes=<have>-`. A server that ignores Range (200)
  restarts the file; 416 means the part may already be whole and is verified as such.
- Verified: against the sha1/md5 sums files Wikimedia publishes next to the files
  (`<wiki>wiki-<date>-sha1sums.txt`, pageviews `md5sums.txt`) or an explicit digest. A part
  whose digest does not match is deleted and fetched once more from scratch; a second mismatch
  is an error. Only verified files are renamed to their final name, so a final name always
  holds a complete, checked file (and a rerun skips it).
- Safe: only http(s); hosts resolving to private/loopback/link-local addresses are refused
  unless `allow_private` (tests use loopback); size cap; socket timeout; bounded retries.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from curation.fetch import address_refusal

log = logging.getLogger(__name__)

CHUNK = 1 << 20
WIKIMEDIA = "https://dumps.wikimedia.org"
OMW_URL = "https://github.com/omwn/omw-data/releases/download/v1.4/omw-1.4.tar.xz"


class DownloadError(RuntimeError):
    pass


class ChecksumMismatch(DownloadError):
    pass


class RefusedAddress(DownloadError):
    pass


@dataclass
class Item:
    """One file to fetch: `dest` is relative to the download root; digest as 'sha1:<hex>' or 'md5:<hex>'."""

    url: str
    dest: str
    digest: str | None = None
    sums_url: str | None = None  # a sums file listing this file's name; used when digest is None


@dataclass
class Result:
    url: str
    dest: str
    status: str  # downloaded | already_complete | failed
    bytes: int = 0
    resumed_from: int = 0
    attempts: int = 0
    digest: str | None = None
    error: str | None = None
    events: list[str] = field(default_factory=list)


def check_host(url: str, allow_private: bool = False) -> None:
    """Refuse non-http(s) URLs and hosts that resolve to non-public addresses.

    The address policy is the download job's (curation.fetch.address_refusal): allow_private
    admits private and loopback addresses, link-local (cloud metadata) never.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedAddress(f"{url}: only http(s) URLs with a host are fetched")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise DownloadError(f"{url}: cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        why = address_refusal(info[4][0], allow_loopback=allow_private, allow_private=allow_private)
        if why:
            raise RefusedAddress(f"{url}: {parts.hostname} resolves to non-public {info[4][0]} ({why}); "
                                 "pass allow_private to fetch private or loopback hosts")


def parse_sums(text: str) -> dict[str, str]:
    """`<hex>  <name>` lines (md5sum/sha1sum output) -> {name: hex}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and all(c in "0123456789abcdefABCDEF" for c in parts[0]):
            out[os.path.basename(parts[-1].lstrip("*"))] = parts[0].lower()
    return out


def _algo_for(hexdigest: str) -> str:
    return {32: "md5", 40: "sha1", 64: "sha256"}.get(len(hexdigest), "sha1")


def file_digest(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Downloader:
    def __init__(self, root: str, allow_private: bool = False, timeout: float = 60.0, retries: int = 5,
                 max_bytes: int = 200 << 30, backoff: float = 1.0, user_agent: str = "worldclip-metadata/0.1"):
        self.root = root
        self.allow_private = allow_private
        self.timeout = timeout
        self.retries = retries
        self.max_bytes = max_bytes
        self.backoff = backoff
        self.user_agent = user_agent
        self._sums: dict[str, dict[str, str]] = {}

    def _open(self, url: str, start: int = 0):
        check_host(url, self.allow_private)
        req = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        if start:
            req.add_header("Range", f"bytes={start}-")
        return urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 - scheme checked above

    def sums(self, url: str) -> dict[str, str]:
        """The parsed sums file at `url` (fetched once per run)."""
        if url not in self._sums:
            with self._open(url) as resp:
                data = resp.read(16 << 20)
            self._sums[url] = parse_sums(data.decode("utf-8", "replace"))
        return self._sums[url]

    def expected_digest(self, item: Item) -> tuple[str, str] | None:
        if item.digest:
            algo, _, hexd = item.digest.partition(":")
            return (algo, hexd.lower()) if hexd else (_algo_for(algo), algo.lower())
        if item.sums_url:
            table = self.sums(item.sums_url)
            name = os.path.basename(urlsplit(item.url).path)
            if name not in table:
                raise DownloadError(f"{item.sums_url} lists no checksum for {name}")
            return _algo_for(table[name]), table[name]
        return None

    def fetch(self, item: Item) -> Result:
        """Fetch one item (never raises for network/checksum problems: see Result.status/error)."""
        dest = os.path.join(self.root, item.dest)
        res = Result(item.url, item.dest, "failed")
        try:
            expected = self.expected_digest(item)
        except (DownloadError, urllib.error.URLError, OSError) as exc:
            res.error = f"checksum list: {exc}"
            return res
        if os.path.exists(dest):
            if expected is None or file_digest(dest, expected[0]) == expected[1]:
                res.status, res.bytes = "already_complete", os.path.getsize(dest)
                res.digest = expected and f"{expected[0]}:{expected[1]}"
                return res
            res.events.append("existing file failed verification; refetching")
            os.remove(dest)
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        part = dest + ".part"
        mismatches = 0
        while res.attempts < self.retries:
            res.attempts += 1
            try:
                self._transfer(item.url, part, res)
            except RefusedAddress as exc:
                res.error = str(exc)
                return res
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (408, 429):  # permanent: do not retry
                    res.error = f"HTTP {exc.code} {exc.reason}"
                    return res
                res.events.append(f"attempt {res.attempts}: HTTP {exc.code}")
                time.sleep(self.backoff * res.attempts)
                continue
            except (urllib.error.URLError, OSError, DownloadError, http.client.HTTPException) as exc:
                res.events.append(f"attempt {res.attempts}: {type(exc).__name__}: {exc}")
                log.warning("download %s: attempt %d failed (%s); will resume", item.url, res.attempts, exc)
                time.sleep(self.backoff * res.attempts)
                continue
            if expected is not None:
                got = file_digest(part, expected[0])
                if got != expected[1]:
                    mismatches += 1
                    res.events.append(f"{expected[0]} mismatch: got {got}, want {expected[1]}")
                    os.remove(part)
                    if mismatches >= 2:
                        res.error = f"checksum mismatch ({expected[0]}) after refetching"
                        return res
                    continue
                res.digest = f"{expected[0]}:{expected[1]}"
            os.replace(part, dest)
            res.status, res.bytes = "downloaded", os.path.getsize(dest)
            return res
        res.error = res.error or f"gave up after {res.attempts} attempts"
        return res

    def _transfer(self, url: str, part: str, res: Result) -> None:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        try:
            resp = self._open(url, have)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the part is (probably) whole
                res.events.append("416: part already complete")
                return
            raise
        with resp:
            if have and resp.status == 206:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {have}-"):
                    raise DownloadError(f"unexpected Content-Range {crange!r} for a resume at {have}")
                res.resumed_from = have
                res.events.append(f"resumed at byte {have}")
                mode = "ab"
            else:
                if have:
                    res.events.append("server ignored Range; restarting")
                have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            expected_len = int(length) if length and length.isdigit() else None
            if expected_len is not None and have + expected_len > self.max_bytes:
                raise DownloadError(f"{url}: {have + expected_len} bytes exceeds the cap of {self.max_bytes}")
            got = 0
            with open(part, mode) as f:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    if have + got > self.max_bytes:
                        raise DownloadError(f"{url}: more than the cap of {self.max_bytes} bytes")
            if expected_len is not None and got < expected_len:
                raise ConnectionError(f"connection closed after {got} of {expected_len} bytes")


# --- what to fetch -------------------------------------------------------------------------------


def dump_items(wikis: list[str], date: str = "latest", base: str = WIKIMEDIA) -> list[Item]:
    """pages-articles dumps with their sha1sums files, e.g. enwiki/20240601/enwiki-20240601-…"""
    items = []
    for wiki in wikis:
        db = wiki.replace("-", "_") + "wiki"
        name = f"{db}-{date}-pages-articles.xml.bz2"
        items.append(Item(f"{base}/{db}/{date}/{name}", f"wikipedia/{name}",
                          sums_url=f"{base}/{db}/{date}/{db}-{date}-sha1sums.txt"))
    return items


def pageview_items(hours: list[str], base: str = WIKIMEDIA) -> list[Item]:
    """Hourly pageview files for hours like '2024-06-01T13', with the month's md5sums.txt."""
    items = []
    for h in hours:
        day, _, hour = h.partition("T")
        y, m, d = day.split("-")
        name = f"pageviews-{y}{m}{d}-{int(hour or 0):02d}0000.gz"
        month = f"{base}/other/pageviews/{y}/{y}-{m}"
        items.append(Item(f"{month}/{name}", f"pageviews/{name}", sums_url=f"{month}/md5sums.txt"))
    return items
