"""Common Crawl WAT (and url/text table) input: image links with their alt-texts, as events.

WAT files are gzip streams of many members, each holding one WARC record. Every record of a
crawl's WAT is a `metadata` record whose JSON payload describes one record of the original WARC
(`Envelope.WARC-Header-Metadata.WARC-Type` says which: request, response, metadata). Only
HTML responses carry links, at
`Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata.Links`, each a dict like
`{"path": "IMG@/src", "url": "/img/a.jpg", "alt": "...", "title": "..."}`.

Event protocol (`iter_wat_events`, `iter_table_events`), what the curate job counts:

    ('record', None)            once per input record, before that record's other events
    ('skip', reason)            the record holds nothing to extract (SKIP_REASONS)
    ('reject', (reason, detail)) reason in RECORD_REJECT_REASONS: the whole record is rejected;
                                in LINK_REJECT_REASONS: one image link; in TEXT_REJECT_REASONS:
                                one text of a link. detail is a short excerpt (<= 200 chars).
    ('pair', {...})             one usable text of an image link

Each record gets exactly one of: one `skip`, one record-level `reject`, or neither, which
means it had image links (each link then yields pairs and/or link/text rejects). So

    records in = records with image links + skips (by reason) + record rejects (by reason)
    image links = links with a pair or text reject + link rejects (by reason)
    texts       = pairs + text rejects (by reason)

`EventCounter` does this bookkeeping and checks the first identity. A truncated or corrupt gzip
stops the file: what was read is yielded, then the cut record counts as one record with reject
`truncated_gzip` / `corrupt_gzip`. I/O errors of the underlying storage are not bad input and
propagate (the task is retried) so that no data is silently lost.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import io
import json
import os
import re
import uuid as uuidlib
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from typing import BinaryIO

from curation.text import clean_alt_text
from curation.urls import URL_REJECT_REASONS, image_uuid, normalize_url

RECORD_REJECT_REASONS = (
    "truncated_gzip",  # gzip stream ends inside a member
    "corrupt_gzip",  # gzip data that does not decompress
    "truncated_record",  # stream ends before Content-Length bytes of a record were read
    "record_too_large",  # Content-Length above MAX_RECORD_BYTES: skipped without holding it in memory
    "bad_warc_header",  # no WARC/x version line, unparsable header, missing/invalid Content-Length
    "invalid_utf8",  # JSON payload (or a JSONL line) is not valid UTF-8
    "malformed_json",
    "missing_keys",  # JSON without the envelope structure (or a table row without its columns)
    "corrupt_table",  # a Parquet file that cannot be read further
)
SKIP_REASONS = (
    "not_metadata",  # warcinfo and other non-metadata WARC records
    "not_response",  # WAT entry of a request or metadata record of the crawl
    "not_html",  # response that is not an HTML page (no HTML-Metadata)
    "no_image_links",  # HTML page without IMG links
)
LINK_REJECT_REASONS = (*URL_REJECT_REASONS, "no_text")
TEXT_REJECT_REASONS = ("empty_text", "text_too_long", "not_text")

IMAGE_LINK_PATHS = ("IMG@/src", "IMG@/data-src")
TEXT_FIELDS = ("alt", "title", "data-image-title")
MAX_DETAIL_CHARS = 200
_MAX_HEADER_LINE = 1 << 16
# WAT records are kilobytes (a few MB at worst); a larger Content-Length is skipped in chunks
MAX_RECORD_BYTES = 64 << 20
_MAX_HEADER_LINES = 256
_SURROGATES = re.compile("[\ud800-\udfff]")


def excerpt(value: object, limit: int = MAX_DETAIL_CHARS) -> str:
    """A short printable excerpt of a bad value for reject details."""
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", errors="backslashreplace")
    elif not isinstance(value, str):
        value = repr(value)
    value = _SURROGATES.sub("\ufffd", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


# --------------------------------------------------------------------------- WARC reading


class _WarcStream:
    """Reads WARC records from a (decompressed) binary stream, resyncing after a bad header."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.pushback: bytes | None = None

    def readline(self) -> bytes:
        if self.pushback is not None:
            line, self.pushback = self.pushback, None
            return line
        return self.stream.readline(_MAX_HEADER_LINE)

    def resync(self) -> None:
        """Skip to the next line that starts a WARC record."""
        while True:
            line = self.stream.readline(_MAX_HEADER_LINE)
            if not line:
                return
            if line.startswith(b"WARC/"):
                self.pushback = line
                return

    def records(self) -> Iterator[tuple[dict[str, str] | None, bytes | None, tuple[str, str] | None]]:
        """Yields (headers with lower-case names, payload, None) or (None, None, (reason, detail))."""
        try:
            while True:
                line = self.readline()
                while line in (b"\r\n", b"\n"):
                    line = self.readline()
                if not line:
                    return
                if not line.startswith(b"WARC/"):
                    yield None, None, ("bad_warc_header", excerpt(line))
                    self.resync()
                    continue
                headers: dict[str, str] = {}
                bad = None
                for _ in range(_MAX_HEADER_LINES):
                    line = self.readline()
                    if line in (b"\r\n", b"\n"):
                        break
                    if not line:
                        bad = ("truncated_record", "stream ends inside a WARC header")
                        break
                    name, sep, value = line.partition(b":")
                    if not sep or not line.endswith(b"\n"):
                        bad = ("bad_warc_header", excerpt(line))
                        break
                    headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
                else:
                    bad = ("bad_warc_header", "too many header lines")
                if bad is None:
                    length = headers.get("content-length", "")
                    if not length.isdigit():
                        bad = ("bad_warc_header", f"Content-Length: {excerpt(length, 50)!r}")
                if bad is not None:
                    yield None, None, bad
                    if bad[0] == "truncated_record":
                        return
                    self.resync()
                    continue
                length = int(headers["content-length"])
                if length > MAX_RECORD_BYTES:
                    left = length
                    while left > 0:
                        chunk = self.stream.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                    if left > 0:
                        yield None, None, ("truncated_record", f"{length - left} of {length} bytes")
                        return
                    yield None, None, ("record_too_large", f"Content-Length {length}")
                    continue
                payload = self.stream.read(length)
                if len(payload) < length:
                    yield None, None, ("truncated_record", f"{len(payload)} of {length} bytes")
                    return
                yield headers, payload, None
        except EOFError as e:
            yield None, None, ("truncated_gzip", excerpt(str(e)))
        except (zlib.error, gzip.BadGzipFile) as e:
            yield None, None, ("corrupt_gzip", excerpt(str(e)))


class _RawAdapter(io.RawIOBase):
    """Any object with read(n) (a socket body, an S3 StreamingBody) as a raw stream, so it can be buffered."""

    def __init__(self, fileobj):
        self.fileobj = fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.fileobj.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _open_binary(fileobj_or_path) -> tuple[BinaryIO, bool]:
    """(decompressed stream, whether we opened it); gzip is detected by its magic bytes."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        raw = open(fileobj_or_path, "rb")  # noqa: SIM115 - closed by the caller
        opened = True
    else:
        raw = fileobj_or_path
        opened = False
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(_RawAdapter(raw))
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb"), opened
    return buffered, opened


def iter_warc_records(fileobj_or_path) -> Iterator[tuple[dict[str, str] | None, bytes | None, tuple[str, str] | None]]:
    """Records of a WARC/WAT file (gzip or plain): (headers, payload, None) or (None, None, error)."""
    stream, opened = _open_binary(fileobj_or_path)
    try:
        yield from _WarcStream(stream).records()
    finally:
        if opened:
            stream.close()


# --------------------------------------------------------------------------- WAT events


def _text_of(value: object) -> object:
    if isinstance(value, str) and _SURROGATES.search(value):
        return _SURROGATES.sub("\ufffd", value)  # lone surrogates from JSON \u escapes
    return value


def _link_events(link: dict, base: str | None, page_url: str) -> Iterator[tuple[str, object]]:
    url, reason = normalize_url(link.get("url"), base)
    if url is None:
        yield "reject", (reason, excerpt(link.get("url")))
        return
    uuid = None
    seen_any = False
    for field in TEXT_FIELDS:
        if field not in link or link[field] is None:
            continue
        seen_any = True
        text, reason = clean_alt_text(_text_of(link[field]))
        if text is None:
            yield "reject", (reason, excerpt(link[field]))
            continue
        if uuid is None:
            uuid = image_uuid(url)
        yield "pair", {"url": url, "uuid": uuid, "text": text, "source": field, "page_url": page_url}
    if not seen_any:
        yield "reject", ("no_text", excerpt(url))


def wat_payload_events(payload: bytes, record_uri: str | None = None) -> Iterator[tuple[str, object]]:
    """Events of one WAT metadata record's JSON payload (without the leading 'record' event)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        yield "reject", ("invalid_utf8", excerpt(payload[max(0, e.start - 40): e.start + 40]))
        return
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        yield "reject", ("malformed_json", excerpt(f"{e}: {text[:120]}"))
        return
    envelope = doc.get("Envelope") if isinstance(doc, dict) else None
    payload_meta = envelope.get("Payload-Metadata") if isinstance(envelope, dict) else None
    if not isinstance(payload_meta, dict):
        yield "reject", ("missing_keys", "Envelope.Payload-Metadata")
        return
    response = payload_meta.get("HTTP-Response-Metadata")
    if response is None:
        yield "skip", "not_response"
        return
    if not isinstance(response, dict):
        yield "reject", ("missing_keys", "HTTP-Response-Metadata is not an object")
        return
    html = response.get("HTML-Metadata")
    if html is None:
        yield "skip", "not_html"
        return
    if not isinstance(html, dict):
        yield "reject", ("missing_keys", "HTML-Metadata is not an object")
        return
    links = html.get("Links")
    if links is None:
        yield "skip", "no_image_links"
        return
    if not isinstance(links, list):
        yield "reject", ("missing_keys", "HTML-Metadata.Links is not a list")
        return
    image_links = [ln for ln in links if isinstance(ln, dict) and ln.get("path") in IMAGE_LINK_PATHS]
    if not image_links:
        yield "skip", "no_image_links"
        return
    header = envelope.get("WARC-Header-Metadata")
    page_url = header.get("WARC-Target-URI") if isinstance(header, dict) else None
    if not isinstance(page_url, str) or not page_url.strip():
        page_url = record_uri
    if not isinstance(page_url, str) or not page_url.strip():
        yield "reject", ("missing_keys", "Envelope.WARC-Header-Metadata.WARC-Target-URI")
        return
    page_url = _text_of(page_url)
    normalized_page, _ = normalize_url(page_url)
    page = normalized_page or page_url.strip()
    base = normalized_page
    # <base href> changes what relative links resolve against
    head = html.get("Head")
    base_href = head.get("Base") if isinstance(head, dict) else None
    if not isinstance(base_href, str):
        base_href = next((ln.get("url") for ln in links if isinstance(ln, dict) and ln.get("path") == "__base__"), None)
    if isinstance(base_href, str) and base_href.strip():
        resolved, _ = normalize_url(_text_of(base_href), normalized_page)
        if resolved:
            base = resolved
    for link in image_links:
        yield from _link_events(link, base, page)


def iter_wat_events(fileobj_or_path, source: str = "") -> Iterator[tuple[str, object]]:
    """Events (see module doc) of one WAT file, local path or binary file object. Never raises
    on bad content. `source` names the input in nothing but the caller's bookkeeping."""
    for headers, payload, error in iter_warc_records(fileobj_or_path):
        yield "record", None
        if error is not None:
            yield "reject", error
            continue
        if headers.get("warc-type", "").lower() != "metadata":
            yield "skip", "not_metadata"
            continue
        yield from wat_payload_events(payload, headers.get("warc-target-uri"))


# --------------------------------------------------------------------------- table inputs


def _table_format(path: object, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("parquet", "jsonl"):
            raise ValueError(f"unknown table format {fmt!r}; use 'parquet' or 'jsonl'")
        return fmt
    name = os.fspath(path).lower() if isinstance(path, (str, os.PathLike)) else ""
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")):
        return "jsonl"
    raise ValueError(f"{path}: cannot tell the table format from the name; pass fmt='parquet' or 'jsonl'")


def table_row(url: object, text: object) -> tuple[str, str, None] | tuple[None, None, tuple[str, str]]:
    """A table row's (normalised URL, clean text, None), or (None, None, (reason, detail)) when it
    is rejected: the URL is judged first, then the text."""
    norm, reason = normalize_url(url)
    if norm is None:
        return None, None, (reason, excerpt(url))
    clean, reason = clean_alt_text(_text_of(text))
    if clean is None:
        return None, None, (reason, excerpt(text))
    return norm, clean, None


def _row_events(url: object, text: object) -> Iterator[tuple[str, object]]:
    yield "record", None
    norm, clean, reject = table_row(url, text)
    if reject is not None:
        yield "reject", reject
        return
    yield "pair", {"url": norm, "uuid": image_uuid(norm), "text": clean, "source": "table", "page_url": ""}


def iter_table_events(
    path, url_col: str = "URL", text_col: str = "TEXT", fmt: str | None = None, batch_size: int = 8192
) -> Iterator[tuple[str, object]]:
    """Events of a Parquet or JSONL (optionally gzip) table of (url, text) rows; one row = one record.

    A Parquet file that lacks the columns raises ValueError (a configuration error, not bad data);
    a JSONL line that is not a JSON object with both keys is rejected (`malformed_json`,
    `invalid_utf8`, `missing_keys`).
    """
    kind = _table_format(path, fmt)
    if kind == "parquet":
        yield from _parquet_events(path, url_col, text_col, batch_size)
    else:
        yield from _jsonl_events(path, url_col, text_col)


def parquet_url_text_batches(path, url_col: str, text_col: str, batch_size: int):
    """(url, text) record batches of a Parquet table, then at most one ('corrupt_table', detail) string
    pair when the file or a page is unreadable (the rest of the file is then lost and counted once).

    Shared by the event path (_parquet_events) and the column path of curation.pipeline.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowInvalid as e:  # not a Parquet file, or a corrupt footer
        yield ("corrupt_table", excerpt(str(e)))
        return
    names = pf.schema_arrow.names
    missing = [c for c in (url_col, text_col) if c not in names]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {names}")
    batches = pf.iter_batches(batch_size=batch_size, columns=[url_col, text_col])
    done = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except pa.ArrowInvalid as e:  # a corrupt page: the rest of the file is unreadable
            yield ("corrupt_table", excerpt(f"after {done} rows: {e}"))
            return
        done += batch.num_rows
        yield batch


def _parquet_events(path, url_col: str, text_col: str, batch_size: int) -> Iterator[tuple[str, object]]:
    for batch in parquet_url_text_batches(path, url_col, text_col, batch_size):
        if isinstance(batch, tuple):
            yield "record", None
            yield "reject", batch
            return
        for url, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            yield from _row_events(url, text)


def _jsonl_events(path, url_col: str, text_col: str) -> Iterator[tuple[str, object]]:
    stream, opened = _open_binary(path)
    try:
        while True:
            try:
                line = stream.readline()
            except EOFError as e:
                yield "record", None
                yield "reject", ("truncated_gzip", excerpt(str(e)))
                return
            except (zlib.error, gzip.BadGzipFile) as e:
                yield "record", None
                yield "reject", ("corrupt_gzip", excerpt(str(e)))
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                doc = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield "record", None
                yield "reject", ("invalid_utf8", excerpt(line))
                continue
            except (ValueError, RecursionError):
                yield "record", None
                yield "reject", ("malformed_json", excerpt(line))
                continue
            if not isinstance(doc, dict) or url_col not in doc or text_col not in doc:
                yield "record", None
                yield "reject", ("missing_keys", excerpt(line))
                continue
            yield from _row_events(doc[url_col], doc[text_col])
    finally:
        if opened:
            stream.close()


# --------------------------------------------------------------------------- accounting


class EventCounter:
    """Counts events of one or more inputs and checks that every record is accounted for."""

    def __init__(self):
        self.records = 0
        self.pairs = 0
        self.skipped: Counter[str] = Counter()
        self.record_rejects: Counter[str] = Counter()
        self.link_rejects: Counter[str] = Counter()
        self.text_rejects: Counter[str] = Counter()

    def add(self, event: tuple[str, object]) -> None:
        kind, value = event
        if kind == "pair":
            self.pairs += 1
        elif kind == "record":
            self.records += 1
        elif kind == "skip":
            self.skipped[value] += 1
        elif kind == "reject":
            reason = value[0]
            if reason in RECORD_REJECT_REASONS:
                self.record_rejects[reason] += 1
            elif reason in TEXT_REJECT_REASONS:
                self.text_rejects[reason] += 1
            else:
                self.link_rejects[reason] += 1

    def update(self, events: Iterable[tuple[str, object]]) -> EventCounter:
        for event in events:
            self.add(event)
        return self

    def merge(self, other: EventCounter) -> EventCounter:
        self.records += other.records
        self.pairs += other.pairs
        for mine, theirs in (
            (self.skipped, other.skipped),
            (self.record_rejects, other.record_rejects),
            (self.link_rejects, other.link_rejects),
            (self.text_rejects, other.text_rejects),
        ):
            mine.update(theirs)
        return self

    @property
    def records_with_links(self) -> int:
        return self.records - sum(self.skipped.values()) - sum(self.record_rejects.values())

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "records_with_image_links": self.records_with_links,
            "skipped": dict(sorted(self.skipped.items())),
            "record_rejects": dict(sorted(self.record_rejects.items())),
            "link_rejects": dict(sorted(self.link_rejects.items())),
            "text_rejects": dict(sorted(self.text_rejects.items())),
            "pairs": self.pairs,
        }


# --------------------------------------------------------------------------- WAT writing


def encode_warc_record(warc_type: str, payload: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One uncompressed WARC/1.0 record (header block, payload, two CRLFs)."""
    lines = [b"WARC/1.0", f"WARC-Type: {warc_type}".encode()]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    lines.append(f"Content-Length: {len(payload)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload + b"\r\n\r\n"


def gzip_member(data: bytes) -> bytes:
    """One gzip member with mtime 0, so written files are byte-for-byte reproducible."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _record_id(*parts: str) -> str:
    return f"<urn:uuid:{uuidlib.UUID(hashlib.md5('|'.join(parts).encode()).hexdigest())}>"


def _wat_link(link: dict) -> dict:
    out = {"path": link.get("path", "IMG@/src"), "url": link.get("url")}
    for key in (*TEXT_FIELDS, "text", "target", "rel"):
        if link.get(key) is not None:
            out[key] = link[key]
    return out


def _wat_envelope(page: dict, filename: str, index: int) -> dict:
    kind = page.get("type", "response")
    page_url = page["page_url"]
    date = page.get("date", "2020-08-08T17:27:41Z")
    warc_type = kind if kind in ("request", "metadata") else "response"
    header = {
        "WARC-Type": warc_type,
        "WARC-Date": date,
        "WARC-Record-ID": _record_id(filename, str(index), page_url, kind),
        "WARC-Target-URI": page_url,
        "Content-Type": (
            "application/warc-fields" if warc_type == "metadata" else f"application/http; msgtype={warc_type}"
        ),
    }
    payload_meta: dict = {"Actual-Content-Type": header["Content-Type"]}
    if kind == "metadata":
        payload_meta["WARC-Metadata-Metadata"] = {"Metadata-Records": [{"Name": "fetchTimeMs", "Value": "118"}]}
    elif kind == "request":
        payload_meta["HTTP-Request-Metadata"] = {
            "Request-Message": {"Method": "GET", "Path": "/", "Version": "HTTP/1.1"},
            "Headers": {"User-Agent": "CCBot/2.0 (https://commoncrawl.org/faq/)"},
        }
    else:
        content_type = "image/jpeg" if kind == "non_html" else "text/html; charset=utf-8"
        response = {
            "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
            "Headers": {"Content-Type": content_type},
            "Entity-Metadata": {"Actual-Content-Type": content_type.split(";")[0]},
        }
        if kind != "non_html":
            head: dict = {"Title": page.get("title", "")}
            if page.get("base"):
                head["Base"] = page["base"]
            html: dict = {"Head": head}
            links = [_wat_link(ln) for ln in page.get("links", [])]
            if links or page.get("empty_links_list"):
                html["Links"] = links
            response["HTML-Metadata"] = html
        payload_meta["HTTP-Response-Metadata"] = response
    return {
        "Container": {"Filename": filename.replace(".wat.gz", ".warc.gz"), "Compressed": True, "Offset": str(index)},
        "Envelope": {"Format": "WARC", "WARC-Header-Metadata": header, "Payload-Metadata": payload_meta},
    }


def wat_record_bytes(page: dict, filename: str = "sample.warc.wat.gz", index: int = 0) -> bytes:
    """The uncompressed WAT metadata record describing one page (see `write_wat`)."""
    doc = _wat_envelope(page, filename, index)
    payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header = doc["Envelope"]["WARC-Header-Metadata"]
    return encode_warc_record(
        "metadata",
        payload,
        {
            "WARC-Target-URI": page["page_url"],
            "WARC-Date": header["WARC-Date"],
            "WARC-Record-ID": _record_id(filename, str(index), "wat"),
            "WARC-Refers-To": header["WARC-Record-ID"],
            "Content-Type": "application/json",
        },
    )


def warcinfo_record_bytes(filename: str) -> bytes:
    fields = (
        "Software-Info: worldclip curation.wat\r\n"
        "format: WARC File Format 1.0\r\n"
        "conformsTo: http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf\r\n"
    ).encode()
    return encode_warc_record(
        "warcinfo",
        fields,
        {"WARC-Filename": filename, "WARC-Record-ID": _record_id(filename, "warcinfo"), "Content-Type": "application/warc-fields"},
    )


def write_wat(path: str | os.PathLike, pages: Iterable[dict], warcinfo: bool = True) -> int:
    """Write a WAT file (gzip, one member per record, like Common Crawl's) and return its record count.

    Each page is {page_url, links: [{url, alt?, title?, data-image-title?, path? ('IMG@/src')}],
    title?, base? (<base href>), date?, type? ('response' | 'request' | 'metadata' | 'non_html')}. Keys whose
    value is None are left out of a link, so `alt=""` (an empty alt) and no alt differ. The file
    is written to a temporary name and renamed, and is byte-identical for identical pages.
    """
    path = os.fspath(path)
    filename = os.path.basename(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    with open(tmp, "wb") as f:
        if warcinfo:
            f.write(gzip_member(warcinfo_record_bytes(filename)))
            count += 1
        for index, page in enumerate(pages):
            f.write(gzip_member(wat_record_bytes(page, filename, index)))
            count += 1
    if os.path.isfile(path) and filecmp.cmp(tmp, path, shallow=False):
        os.unlink(tmp)  # unchanged: keep the old file (and its mtime) so incremental reruns reuse it
    else:
        os.replace(tmp, path)
    return count


# --------------------------------------------------------------------------- WARC -> WAT


class _ImageLinkParser(HTMLParser):
    """Collects <base href>, <title>, <img> (src, data-src, alt, title, data-image-title) and <a href>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.title_parts: list[str] = []
        self.in_title = False
        self.links: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = {}
        for name, value in attrs:
            a.setdefault(name.lower(), value if value is not None else "")
        if tag == "img":
            texts = {k: a[k] for k in TEXT_FIELDS if k in a}
            if a.get("src"):
                self.links.append({"path": "IMG@/src", "url": a["src"], **texts})
            if a.get("data-src"):
                self.links.append({"path": "IMG@/data-src", "url": a["data-src"], **texts})
        elif tag == "a" and a.get("href"):
            self.links.append({"path": "A@/href", "url": a["href"]})
        elif tag == "base" and a.get("href") and self.base is None:
            self.base = a["href"]
        elif tag == "title":
            self.in_title = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False

    def handle_data(self, data):
        if self.in_title:
            self.title_parts.append(data)


_CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)


def _decode_html(body: bytes, content_type: str) -> str:
    candidates = []
    m = _CHARSET_RE.search(content_type.encode("latin-1", "replace"))
    if m:
        candidates.append(m.group(1).decode("ascii"))
    m = _CHARSET_RE.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii"))
    for charset in [*candidates, "utf-8"]:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace")


def html_page(page_url: str, html: str) -> dict:
    """A `write_wat` page dict (links, title, base) extracted from an HTML document."""
    parser = _ImageLinkParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient; keep what was parsed on anything odd
        pass
    page = {"page_url": page_url, "title": " ".join("".join(parser.title_parts).split()), "links": parser.links}
    if parser.base:
        page["base"] = parser.base
    return page


def warc_pages(warc_path) -> list[dict]:
    """`write_wat` pages for the records of a real WARC: responses with their HTML links, requests."""
    pages = []
    for headers, payload, error in iter_warc_records(warc_path):
        if error is not None or headers is None:
            continue
        warc_type = headers.get("warc-type", "")
        uri = headers.get("warc-target-uri", "")
        date = headers.get("warc-date", "2020-08-08T17:27:41Z")
        if warc_type in ("request", "metadata"):
            pages.append({"page_url": uri, "type": warc_type, "date": date})
        elif warc_type == "response":
            head, _, body = payload.partition(b"\r\n\r\n")
            content_type = ""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-type":
                    content_type = value.strip().decode("latin-1")
            if "html" not in content_type.lower():
                pages.append({"page_url": uri, "type": "non_html", "date": date})
                continue
            page = html_page(uri, _decode_html(body, content_type))
            page["date"] = date
            pages.append(page)
    return pages


def warc_to_wat(warc_path, wat_path: str | os.PathLike) -> int:
    """Write the WAT of a WARC (request and response records; links as Common Crawl extracts them)."""
    return write_wat(wat_path, warc_pages(warc_path))
