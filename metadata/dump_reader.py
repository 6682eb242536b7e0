"""Streamed reader of MediaWiki XML dumps (pages-articles): title and wikitext of each article.

Why not a real XML parser: a dump is one huge document, and expat stops at the first bad
byte, so one invalid UTF-8 sequence or a cut-off last page would lose everything after it.
Dumps have a fixed, machine-written layout (`<page>` ... `</page>` blocks), so the reader
splits the byte stream into pages and parses each page on its own: a bad page is counted and
skipped, the rest of the dump is still read. Memory is bounded by the largest page.

Input: plain XML or bz2 (also multistream) / xz / gzip, chosen by magic bytes, not by name;
UTF-8 (optionally with BOM) or UTF-16 with a BOM. Only main-namespace (ns 0) pages that are
not redirects are yielded.

Every page ends up in exactly one counter of `stats` (a Counter): `articles` (yielded),
`skipped_namespace`, `skipped_redirect`, `skipped_empty`, `invalid_utf8`, `page_too_large`,
`truncated_page` (the dump ends inside a page), plus per-input `corrupt_input` (a broken
compressed stream or trailing garbage: what was read before it is kept), `truncated_input`
(a compressed stream cut short), `empty_input`, `not_mediawiki_xml`.
`pages` counts all pages seen and `input_bytes` the decompressed bytes read.
"""

from __future__ import annotations

import bz2
import codecs
import io
import lzma
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK = 1 << 20
MAX_PAGE_BYTES = 16 << 20

_MAGIC = (
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
)

_PAGE_OPEN = b"<page>"
_PAGE_CLOSE = b"</page>"
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)
_NS_RE = re.compile(r"<ns>\s*(-?\d+)\s*</ns>")
_ID_RE = re.compile(r"<id>\s*(\d+)\s*</id>")
_NAMESPACE_RE = re.compile(rb'<namespace key="(-?\d+)"[^>]*?(?:/>|>([^<]*)</namespace>)')
_DBNAME_RE = re.compile(rb"<dbname>([^<]*)</dbname>")
_XMLLANG_RE = re.compile(rb'<mediawiki[^>]*\sxml:lang="([^"]+)"')
_NUMREF_RE = re.compile(r"&#(x[0-9a-fA-F]+|\d+);")
_REDIRECT_TEXT_RE = re.compile(r"#\s*redirect\b", re.I)


@dataclass
class DumpInfo:
    """What the `<siteinfo>` header says: used for link namespaces and the language."""

    dbname: str = ""
    lang: str = ""
    namespaces: dict[int, str] = field(default_factory=dict)

    def namespace_names(self) -> frozenset[str]:
        return frozenset(n for k, n in self.namespaces.items() if k != 0 and n)


@dataclass
class Page:
    title: str
    text: str
    page_id: int = 0


ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


def detect_compression(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "plain"


def _new_decompressor(kind: str):
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    return zlib.decompressobj(wbits=31)  # gzip member


def _decompressed_chunks(raw, kind: str, max_out: int = 4 * CHUNK) -> Iterator[bytes]:
    """Decompress all concatenated streams (bz2 multistream, gzip members, xz streams).

    Unlike the stdlib file objects, trailing bytes that are not a valid stream raise instead of
    being ignored, and a stream cut short raises EOFError: the caller counts both. Output is
    produced in bounded pieces, so a decompression bomb costs time, not memory.
    """
    d = _new_decompressor(kind)
    started = False
    pending = b""
    while True:
        if not pending:
            pending = raw.read(CHUNK)
            if not pending:
                if started:
                    raise EOFError(f"{kind} stream ends before its end-of-stream marker")
                return
        if not started and not pending.strip(b"\x00"):
            pending = b""  # zero padding after the last stream
            continue
        started = True
        if kind == "gzip":
            out = d.decompress(pending, max_out)
            pending = d.unconsumed_tail
            if out:
                yield out
        else:
            out = d.decompress(pending, max_out)
            pending = b""
            if out:
                yield out
            while not d.eof and not d.needs_input:
                out = d.decompress(b"", max_out)
                if out:
                    yield out
        if d.eof:
            pending = d.unused_data + pending
            d = _new_decompressor(kind)
            started = False


class _ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_decompressed(raw) -> io.BufferedIOBase:
    """A decompressing binary reader over `raw`, chosen by the stream's magic bytes."""
    if not hasattr(raw, "peek"):
        src = raw
        raw = io.BufferedReader(src) if isinstance(src, io.RawIOBase) else io.BufferedReader(
            _ChunkReader(iter(lambda: src.read(CHUNK), b"")))
    head = raw.peek(8)[:8]
    kind = detect_compression(head)
    if kind == "plain":
        return raw
    return io.BufferedReader(_ChunkReader(_decompressed_chunks(raw, kind)), buffer_size=CHUNK)


def _utf8_chunks(stream: io.BufferedIOBase, stats: Counter) -> Iterator[bytes]:
    """Decompressed chunks as UTF-8 bytes (UTF-16 dumps are transcoded on the fly)."""
    first = stream.read1(CHUNK)
    if not first:
        return
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
        chunk = first
        while chunk:
            stats["input_bytes"] += len(chunk)
            text = decoder.decode(chunk)
            if "\ufffd" in text:
                stats["invalid_utf16_chars"] += text.count("\ufffd")
            yield text.encode("utf-8", errors="surrogatepass")
            chunk = stream.read1(CHUNK)
        yield decoder.decode(b"", final=True).encode("utf-8")
        return
    if first.startswith(codecs.BOM_UTF8):
        first = first[3:]
    stats["input_bytes"] += len(first)
    yield first
    while True:
        chunk = stream.read1(CHUNK)
        if not chunk:
            return
        stats["input_bytes"] += len(chunk)
        yield chunk


def _parse_siteinfo(header: bytes, info: DumpInfo) -> None:
    m = _DBNAME_RE.search(header)
    if m:
        info.dbname = m.group(1).decode("utf-8", "replace").strip()
    m = _XMLLANG_RE.search(header)
    if m:
        info.lang = m.group(1).decode("utf-8", "replace").strip()
    for key, name in _NAMESPACE_RE.findall(header):
        info.namespaces[int(key)] = xml_unescape((name or b"").decode("utf-8", "replace")).strip()


def xml_unescape(s: str) -> str:
    """Undo XML escaping (the five named entities and numeric references)."""
    if "&" not in s:
        return s
    if "&#" in s:
        s = _NUMREF_RE.sub(_numref, s)
    return s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


def _numref(m: re.Match) -> str:
    v = m.group(1)
    try:
        cp = int(v[1:], 16) if v[0] in "xX" else int(v)
        # keep &amp; escaping intact: a numeric ref to '&' would otherwise be unescaped twice
        return "&amp;" if cp == 0x26 else chr(cp)
    except (ValueError, OverflowError):
        return m.group(0)


def parse_page(raw: bytes, stats: Counter, namespace_names: frozenset[str] = frozenset()) -> Page | None:
    """One `<page>` block -> Page for a main-namespace article, or None (counted)."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        stats["invalid_utf8"] += 1
        return None
    m = _TITLE_RE.search(s)
    title = xml_unescape(m.group(1)).strip() if m else ""
    m = _NS_RE.search(s)
    if m:
        ns = int(m.group(1))
    else:  # very old dumps have no <ns>: infer it from the title prefix
        prefix = title.split(":", 1)[0] if ":" in title else ""
        ns = 1 if prefix and prefix in namespace_names else 0
    if ns != 0:
        stats["skipped_namespace"] += 1
        return None
    rev = s.find("<revision")
    if "<redirect" in (s[:rev] if rev >= 0 else s):
        stats["skipped_redirect"] += 1
        return None
    start = s.rfind("<text")
    text = ""
    if start >= 0:
        gt = s.find(">", start)
        if gt > 0 and s[gt - 1] != "/":
            end = s.find("</text>", gt)
            text = xml_unescape(s[gt + 1 : end if end >= 0 else len(s)])
    if not title or not text.strip():
        stats["skipped_empty"] += 1
        return None
    if _REDIRECT_TEXT_RE.match(text.lstrip()):
        stats["skipped_redirect"] += 1
        return None
    page_id = 0
    m = _ID_RE.search(s)
    if m:
        page_id = int(m.group(1))
    stats["articles"] += 1
    return Page(title=title, text=text, page_id=page_id)


def open_input(path: str | os.PathLike):
    """A binary reader of a local path or an s3:// URI (through curation.storage)."""
    path = os.fspath(path)
    if path.startswith("s3://"):
        from curation.storage import open_read

        return open_read(path)
    return open(path, "rb")


def iter_pages(
    source: str | os.PathLike | io.BufferedIOBase,
    stats: Counter | None = None,
    info: DumpInfo | None = None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> Iterator[Page]:
    """Yield the articles of one dump, streaming; never raises on bad input (see module doc)."""
    stats = stats if stats is not None else Counter()
    info = info if info is not None else DumpInfo()
    close = None
    if isinstance(source, (str, os.PathLike)):
        close = raw = open_input(source)
    else:
        raw = source
    try:
        yield from _iter_pages_stream(raw, stats, info, max_page_bytes)
    finally:
        if close is not None:
            close.close()


def _iter_pages_stream(raw, stats: Counter, info: DumpInfo, max_page_bytes: int) -> Iterator[Page]:
    stats["inputs"] += 1
    buf = bytearray()
    seen_header = False
    skipping = False  # inside an over-long page: drop bytes until its </page>
    namespace_names: frozenset[str] = frozenset()
    got_any = False
    try:
        stream = open_decompressed(raw)
        for chunk in _utf8_chunks(stream, stats):
            got_any = True
            buf += chunk
            if not seen_header:
                p = buf.find(_PAGE_OPEN)
                if p < 0 and len(buf) < (8 << 20):
                    continue
                header = bytes(buf[: p if p >= 0 else len(buf)])
                if b"<mediawiki" not in header and b"<siteinfo" not in header and p < 0:
                    stats["not_mediawiki_xml"] += 1
                    return
                _parse_siteinfo(header, info)
                namespace_names = info.namespace_names()
                seen_header = True
                del buf[: p if p >= 0 else len(buf)]
            pos = 0
            while True:
                if skipping:
                    e = buf.find(_PAGE_CLOSE, pos)
                    if e < 0:
                        pos = max(pos, len(buf) - len(_PAGE_CLOSE))
                        break
                    pos = e + len(_PAGE_CLOSE)
                    skipping = False
                    continue
                s = buf.find(_PAGE_OPEN, pos)
                if s < 0:
                    pos = max(pos, len(buf) - len(_PAGE_OPEN))
                    break
                e = buf.find(_PAGE_CLOSE, s)
                if e < 0:
                    pos = s
                    if len(buf) - s > max_page_bytes:
                        stats["pages"] += 1
                        stats["page_too_large"] += 1
                        skipping = True
                        pos = len(buf)
                    break
                stats["pages"] += 1
                e += len(_PAGE_CLOSE)
                if e - s > max_page_bytes:
                    stats["page_too_large"] += 1
                else:
                    page = parse_page(bytes(buf[s:e]), stats, namespace_names)
                    if page is not None:
                        yield page
                pos = e
            del buf[:pos]
    except EOFError:  # compressed stream cut short: keep what was read, count it
        stats["truncated_input"] += 1
        return
    except ERRORS as exc:  # corrupt compressed stream: keep what was read, count it
        stats["corrupt_input"] += 1
        stats[f"corrupt_input:{type(exc).__name__}"] += 1
        return
    if not got_any:
        stats["empty_input"] += 1
        return
    if not seen_header and buf:
        if b"<mediawiki" not in buf:
            stats["not_mediawiki_xml"] += 1
            return
        _parse_siteinfo(bytes(buf), info)
    if not skipping and buf.find(_PAGE_OPEN) >= 0:
        stats["pages"] += 1
        stats["truncated_page"] += 1


def dump_language(path: str | os.PathLike) -> str:
    """Wikipedia code from a dump file name: 'jawiki-…' -> 'ja', 'zh_yuewiki-…' -> 'zh-yue'."""
    name = os.path.basename(os.fspath(path))
    m = re.match(r"([a-z][a-z0-9_\-]*?)wiki(?:[-_.]|$)", name)
    if not m:
        raise ValueError(f"{name}: cannot tell the Wikipedia language from the file name (want '<code>wiki-…')")
    return m.group(1).replace("_", "-")
