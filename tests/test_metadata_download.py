"""Download command against a real HTTP server on loopback: resume after a cut connection, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metadata.download import (
    Downloader,
    Item,
    RefusedAddress,
    check_host,
    dump_items,
    pageview_items,
    parse_sums,
)
from metadata.samples import SamplePage, compress, dump_xml


class _Server:
    """Serves `files` (path -> bytes) with Range support; `cut[path] = n` sends only n body bytes
    of the next full response and drops the connection (once); `no_range` paths ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.no_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and self.path not in outer.no_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                n = outer.cut.pop(self.path, None)
                if n is not None:
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with _Server() as s:
        yield s


def _dump_bytes() -> bytes:
    pages = [SamplePage(f"Page {i}", " ".join(str((i * 31 + j * 17) % 997) for j in range(400))) for i in range(300)]
    return compress(dump_xml(pages), "bz2")


def _publish_dump(server: _Server, date: str = "20240601", sha1: str | None = None) -> tuple[Item, bytes]:
    data = _dump_bytes()
    name = f"enwiki-{date}-pages-articles.xml.bz2"
    server.files[f"/enwiki/{date}/{name}"] = data
    digest = sha1 or hashlib.sha1(data).hexdigest()
    server.files[f"/enwiki/{date}/enwiki-{date}-sha1sums.txt"] = (
        f"{'0' * 40}  enwiki-{date}-pages-meta-history.xml.bz2\n{digest}  {name}\n").encode()
    (item,) = dump_items(["en"], date, server.url)
    return item, data


def test_resume_after_cut_connection(server, tmp_path):
    item, data = _publish_dump(server)
    server.cut[item.url.replace(server.url, "")] = len(data) // 3
    dl = Downloader(str(tmp_path), allow_private=True, backoff=0.0)
    res = dl.fetch(item)
    assert res.status == "downloaded", res
    assert res.attempts == 2 and res.resumed_from > 0  # the second request resumed, not restarted
    ranges = [r for p, r in server.requests if p.endswith(".bz2")]
    assert ranges[0] is None and ranges[1] == f"bytes={res.resumed_from}-"
    assert (tmp_path / item.dest).read_bytes() == data
    assert res.digest == f"sha1:{hashlib.sha1(data).hexdigest()}"
    assert not (tmp_path / (item.dest + ".part")).exists()
    # a rerun skips the verified file without transferring it again
    n = len(server.requests)
    assert dl.fetch(item).status == "already_complete"
    assert [p for p, _ in server.requests[n:] if p.endswith(".bz2")] == []


def test_resume_of_a_part_left_by_an_earlier_run(server, tmp_path):
    item, data = _publish_dump(server)
    part = tmp_path / (item.dest + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    res = Downloader(str(tmp_path), allow_private=True, backoff=0.0).fetch(item)
    assert res.status == "downloaded" and res.resumed_from == 1000
    assert (tmp_path / item.dest).read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    item, data = _publish_dump(server)
    path = item.url.replace(server.url, "")
    server.no_range.add(path)
    part = tmp_path / (item.dest + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from elsewhere")
    res = Downloader(str(tmp_path), allow_private=True, backoff=0.0).fetch(item)
    assert res.status == "downloaded" and res.resumed_from == 0
    assert (tmp_path / item.dest).read_bytes() == data


def test_checksum_mismatch_fails_and_leaves_no_file(server, tmp_path):
    item, _ = _publish_dump(server, sha1="f" * 40)
    res = Downloader(str(tmp_path), allow_private=True, backoff=0.0).fetch(item)
    assert res.status == "failed" and "mismatch" in res.error
    assert not (tmp_path / item.dest).exists() and not (tmp_path / (item.dest + ".part")).exists()
    assert sum(1 for p, _ in server.requests if p.endswith(".bz2")) == 2  # refetched once, then gave up


def test_corrupted_transfer_is_caught_by_md5(server, tmp_path):
    (item,) = pageview_items(["2024-06-01T13"], server.url)
    data = b"en Main_Page 10 0\n" * 1000
    path = item.url.replace(server.url, "")
    server.files[path] = data
    server.files["/other/pageviews/2024/2024-06/md5sums.txt"] = (
        f"{hashlib.md5(data).hexdigest()}  pageviews-20240601-130000.gz\n").encode()
    dl = Downloader(str(tmp_path), allow_private=True, backoff=0.0)
    dest = tmp_path / item.dest
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"corrupted earlier download")  # a final name with wrong content is refetched
    res = dl.fetch(item)
    assert res.status == "downloaded" and dest.read_bytes() == data and "refetching" in res.events[0]


def test_missing_file_and_private_address_refusal(server, tmp_path):
    res = Downloader(str(tmp_path), allow_private=True, backoff=0.0, retries=2).fetch(
        Item(f"{server.url}/nope.bz2", "x/nope.bz2"))
    assert res.status == "failed" and res.attempts == 1 and "404" in res.error  # permanent: not retried
    with pytest.raises(RefusedAddress):
        check_host(server.url + "/x")  # loopback without allow_private
    with pytest.raises(RefusedAddress):
        check_host("file:///etc/passwd")
    res = Downloader(str(tmp_path), backoff=0.0).fetch(Item(f"{server.url}/a", "a"))
    assert res.status == "failed" and "non-public" in res.error
    assert "/a" not in [p for p, _ in server.requests]  # refused before any request


def test_parse_sums_and_urls():
    assert parse_sums("abc123  dir/file.gz\nnot a line\n") == {"file.gz": "abc123"}
    (item,) = dump_items(["zh-yue"], "20240601")
    assert item.url == ("https://dumps.wikimedia.org/zh_yuewiki/20240601/zh_yuewiki-20240601-pages-articles.xml.bz2")
    assert item.sums_url.endswith("zh_yuewiki-20240601-sha1sums.txt")


def test_download_command_end_to_end(server, tmp_path):
    item, data = _publish_dump(server)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
    import download_sources

    out = tmp_path / "src"
    rc = download_sources.main(["--out", str(out), "--wikis", "en", "--date", "20240601",
                                "--base-url", server.url, "--allow-private", "--timeout", "10"])
    assert rc == 0
    report = json.loads((out / "_DOWNLOAD_REPORT.json").read_text())
    assert report["by_status"] == {"downloaded": 1}
    assert (out / item.dest).read_bytes() == data
    assert os.path.getsize(out / item.dest) == report["bytes"]
