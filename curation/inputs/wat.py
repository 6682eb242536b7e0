"""Common Crawl WAT input: the image links of crawled HTML pages, with their alt-texts, as events.

WAT files are gzip streams of many members, each holding one WARC record. Every record of a
crawl's WAT is a `metadata` record whose JSON payload describes one record of the original WARC
(`Envelope.WARC-Header-Metadata.WARC-Type` says which: request, response, metadata). Only
HTML responses carry links, at
`Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata.Links`, each a dict like
`{"path": "IMG@/src", "url": "/img/a.jpg", "alt": "...", "title": "..."}`. One WARC record is
one record of the event protocol (curation.inputs.base); each text field of an image link
(TEXT_FIELDS) is one text, its URL resolved against the page (or its `<base href>`).

The WARC layer is read defensively because a crawl's files are large and sometimes cut or
damaged: a bad header resyncs at the next `WARC/` line, a record above MAX_RECORD_BYTES is skipped
in chunks without being held, and a stream that ends inside a record ends the file with that
record rejected. A damaged gzip member (curation.inputs.base.open_binary skips it and goes on at
the next member) costs the record being read, counted once as `corrupt_gzip`; reading resumes at
the next `WARC/` line, without counting the rest of a record the damage cut (it is that same
record). curation.samples writes WATs in this layout for tests and the built-in sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from curation.inputs.base import (
    STREAM_ERRORS,
    TABLE_BATCH_ROWS,
    Event,
    Reader,
    StreamDamage,
    excerpt,
    open_binary,
    stream_reject,
    text_of,
)
from curation.text import clean_alt_text
from curation.urls import image_uuid, normalize_url

IMAGE_LINK_PATHS = ("IMG@/src", "IMG@/data-src")
TEXT_FIELDS = ("alt", "title", "data-image-title")
_MAX_HEADER_LINE = 1 << 16
# WAT records are kilobytes (a few MB at worst); a larger Content-Length is skipped in chunks
MAX_RECORD_BYTES = 64 << 20
_MAX_HEADER_LINES = 256


# --------------------------------------------------------------------------- WARC reading


class _WarcStream:
    """Reads WARC records from a (decompressed) binary stream, resyncing after a bad header."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.pushback: bytes | None = None
        self.damaged = False  # a StreamDamage cut the last record: resync without counting its rest

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
        while True:
            try:
                yield from self._records()
                return
            except StreamDamage as e:  # the record being read is lost; the stream goes on after the damage
                yield None, None, stream_reject(e)
                self.pushback = None
                self.damaged = True

    def _records(self) -> Iterator[tuple[dict[str, str] | None, bytes | None, tuple[str, str] | None]]:
        if self.damaged:
            self.damaged = False
            self.resync()
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
        except StreamDamage:
            raise
        except STREAM_ERRORS as e:  # a decompressing stream handed in (not open_binary's) failed: it ends here
            yield None, None, stream_reject(e)


def iter_warc_records(fileobj_or_path) -> Iterator[tuple[dict[str, str] | None, bytes | None, tuple[str, str] | None]]:
    """Records of a WARC/WAT file (gzip or plain): (headers, payload, None) or (None, None, error)."""
    with open_binary(fileobj_or_path) as stream:
        yield from _WarcStream(stream).records()


# --------------------------------------------------------------------------- WAT events


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
        text, reason = clean_alt_text(text_of(link[field]))
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
    page_url = text_of(page_url)
    normalized_page, _ = normalize_url(page_url)
    page = normalized_page or page_url.strip()
    base = normalized_page
    # <base href> changes what relative links resolve against
    head = html.get("Head")
    base_href = head.get("Base") if isinstance(head, dict) else None
    if not isinstance(base_href, str):
        base_href = next((ln.get("url") for ln in links if isinstance(ln, dict) and ln.get("path") == "__base__"), None)
    if isinstance(base_href, str) and base_href.strip():
        resolved, _ = normalize_url(text_of(base_href), normalized_page)
        if resolved:
            base = resolved
    for link in image_links:
        yield from _link_events(link, base, page)


def iter_wat_events(fileobj_or_path, source: str = "") -> Iterator[tuple[str, object]]:
    """Events (curation.inputs.base) of one WAT file, local path or binary file object. Never raises
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


class WatReader(Reader):
    name = "wat"
    extensions = (".wat.gz", ".wat")
    kinds = ("warc", "gzip warc")

    def events(self, source, url_col: str = "", text_col: str = "", batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        """The WAT's events; a WAT has no columns, so url_col / text_col are not used."""
        return iter_wat_events(source)
