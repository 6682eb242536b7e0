"""What every input reader hands Annotator: the event protocol, PairChunks, and their bookkeeping.

Readers differ in how they find image links and texts (a WAT's HTML links, a table's url/text
columns); Annotator and the accounting must not care. So every reader speaks one protocol:

    ('record', None)            once per input record, before that record's other events
    ('skip', reason)            the record holds nothing to extract (SKIP_REASONS)
    ('reject', (reason, detail)) reason in RECORD_REJECT_REASONS: the whole record is rejected;
                                in LINK_REJECT_REASONS: one image link; in TEXT_REJECT_REASONS:
                                one text of a link. detail is a short excerpt (<= 200 chars).
    ('pair', {...})             one usable text of an image link (the PAIR_COLUMNS keys)

Each record gets exactly one of: one `skip`, one record-level `reject`, or neither, which
means it had image links (each link then yields pairs and/or link/text rejects). So

    records in = records with image links + skips (by reason) + record rejects (by reason)
    image links = links with a pair or text reject + link rejects (by reason)
    texts       = pairs + text rejects (by reason)

`EventCounter` does this bookkeeping and checks the first identity. A reader that can do better
than one tuple per row (Parquet: whole Arrow columns, URLs and texts checked in C) yields
`PairChunk`s instead, which carry the same records, pairs and rejects in bulk.

Bad content never raises, and one bad stretch costs only itself. A gzip input is read member by
member (`open_binary`): a member that does not decompress or fails its CRC is skipped and the
reader resumes at the next gzip header, so the records after it are still read; what was skipped
counts as one record with reject `corrupt_gzip` (however many records it held), a stream that
ends inside a member as one `truncated_gzip`. A member's output is held until its CRC is checked
(up to MAX_HELD_BYTES), so a damaged member yields nothing: no record is both read and rejected.
A table row longer than MAX_ROW_BYTES is read past in pieces, never held, and rejected as
`record_too_large`. I/O errors of the underlying storage are not bad input and propagate (the
task is retried) so that no data is silently lost; neither is a configuration error (a table
without its columns).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from curation.urls import URL_REJECT_REASONS

if TYPE_CHECKING:
    import pyarrow as pa

Event = tuple[str, object]

RECORD_REJECT_REASONS = (
    "truncated_gzip",  # gzip stream ends inside a member
    "corrupt_gzip",  # gzip data that does not decompress or fails its CRC: one per skipped stretch
    "truncated_record",  # stream ends before Content-Length bytes of a record were read
    "record_too_large",  # Content-Length above MAX_RECORD_BYTES, a table row above MAX_ROW_BYTES: skipped unheld
    "bad_warc_header",  # no WARC/x version line, unparsable header, missing/invalid Content-Length
    "invalid_utf8",  # JSON payload (or a JSONL line, a CSV row, a Parquet string) is not valid UTF-8
    "malformed_json",
    "missing_keys",  # JSON without the envelope structure (or a table row without its columns)
    "corrupt_table",  # Parquet: one per row of an unreadable row group (one for an unreadable footer);
    # CSV: what the csv module cannot parse further (the rest of the file, once)
)
SKIP_REASONS = (
    "not_metadata",  # warcinfo and other non-metadata WARC records
    "not_response",  # WAT entry of a request or metadata record of the crawl
    "not_html",  # response that is not an HTML page (no HTML-Metadata)
    "no_image_links",  # HTML page without IMG links
)
LINK_REJECT_REASONS = (*URL_REJECT_REASONS, "no_text")
TEXT_REJECT_REASONS = ("empty_text", "text_too_long", "not_text")

# the keys of a 'pair' event, and the columns a PairChunk may carry
PAIR_COLUMNS = ("uuid", "url", "text", "source", "page_url")
MAX_DETAIL_CHARS = 200
# rows per Arrow batch of a table reader (events) and per PairChunk
TABLE_BATCH_ROWS = 8192
# a JSONL line or CSV line longer than this (bytes; characters for CSV) is rejected, never held:
# table rows are one URL and one text, far below it
MAX_ROW_BYTES = 8 << 20
_SURROGATES = re.compile("[\ud800-\udfff]")


def excerpt(value: object, limit: int = MAX_DETAIL_CHARS) -> str:
    """A short printable excerpt of a bad value for reject details."""
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", errors="backslashreplace")
    elif not isinstance(value, str):
        value = repr(value)
    value = _SURROGATES.sub("\ufffd", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def text_of(value: object) -> object:
    """A str with lone surrogates (from JSON \\u escapes) replaced by U+FFFD; anything else as is."""
    if isinstance(value, str) and _SURROGATES.search(value):
        return _SURROGATES.sub("\ufffd", value)
    return value


# --------------------------------------------------------------------------- readers


@dataclass
class PairChunk:
    """Pairs of a column input: Arrow columns (a subset of PAIR_COLUMNS with "url" and "text";
    a missing "uuid" is hashed after matching), the texts again as str (for LID and matching),
    the values of the constant columns, the rejects as (reason, detail) and the records read."""

    columns: dict[str, pa.Array]
    texts: list[str]
    constants: dict[str, str]
    rejects: list[tuple[str, str]]
    records: int

    def rows(self) -> list[dict[str, str]]:
        """The pairs as PAIR_COLUMNS dicts, as the event path yields them (uuid computed if absent)."""
        from curation.urls import image_uuids

        cols = {name: col.to_pylist() for name, col in self.columns.items()}
        if "uuid" not in cols:
            cols["uuid"] = image_uuids(cols["url"])
        n = len(self.texts)
        cols.update({name: [value] * n for name, value in self.constants.items() if name not in cols})
        return [dict(zip(PAIR_COLUMNS, row, strict=True)) for row in zip(*(cols[c] for c in PAIR_COLUMNS), strict=True)]


class Reader:
    """One input format, as registered in curation.inputs.READERS.

    `name` is the format's config value, `extensions` the lower-case file-name endings that
    select it when the format is "auto". `events` must accept a local path and a binary file
    object (s3:// inputs arrive opened, see curation.inputs.iter_input_events). A `columnar`
    reader also has `pair_chunks` (local paths only), which Annotator.run_columns consumes.
    `table` readers take their pairs from the columns named url_col / text_col. `kinds` are the
    kinds of content (curation.inputs.check.sniff) it reads, and `columns` says from an input's
    first bytes or footer which columns a table has; both serve check_input only.
    """

    name: str = ""
    extensions: tuple[str, ...] = ()
    table: bool = False
    columnar: bool = False
    kinds: tuple[str, ...] = ()

    def columns(self, raw: BinaryIO, head: bytes, whole: bool) -> list[str] | None:
        """The column names of a table input, from `head` (its first bytes, decompressed; `whole`
        when that is all of it) or the seekable unbuffered file `raw`; None where it cannot tell."""
        return None

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        raise NotImplementedError

    def pair_chunks(self, path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
        raise NotImplementedError(f"{self.name} inputs have no column path")


# --------------------------------------------------------------------------- byte streams


class StreamDamage(Exception):
    """A stretch of an input that a read went past, raised by the read that reaches it: what came
    before it has been read, the read that raised loses what it had gathered, and the next read
    goes on after the stretch. A damaged gzip member (`reason` corrupt_gzip, truncated_gzip), or
    an over-long line (RowTooLarge). A reader counts it as one record with reject `reason`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RowTooLarge(StreamDamage):
    """A line above its cap was read past (see CappedLines); the next line follows."""

    def __init__(self, detail: str):
        super().__init__("record_too_large", detail)


# what a damaged input raises while it is read: bad input, turned into a record reject. The
# stdlib's errors come only from a decompressing stream a caller hands in; open_binary's own gzip
# reader raises StreamDamage and goes on after it.
STREAM_ERRORS = (StreamDamage, EOFError, zlib.error, gzip.BadGzipFile)


def stream_reject(error: BaseException) -> tuple[str, str]:
    """The record reject of one of STREAM_ERRORS."""
    if isinstance(error, StreamDamage):
        return error.reason, excerpt(error.detail)
    return ("truncated_gzip" if isinstance(error, EOFError) else "corrupt_gzip"), excerpt(str(error))


def until_stream_error(events: Iterator[Event]) -> Iterator[Event]:
    """`events`, ended by one rejected record when the stream under them is a damaged gzip."""
    try:
        yield from events
    except STREAM_ERRORS as e:
        yield "record", None
        yield "reject", stream_reject(e)


class CappedLines:
    """The lines of a binary or text stream, each at most `cap` long (with its line end). A longer
    line is read to its end in pieces, never held, and raises RowTooLarge in its place; iteration
    goes on after it, and after a StreamDamage of the stream under it, so a reader counts either as
    one record and reads on. (A generator could not: it ends when it raises.)"""

    def __init__(self, stream, cap: int, text: bool = False):
        self.readline = stream.readline
        self.cap = cap
        self.ends = ("\n", "\r") if text else (b"\n",)  # text streams are opened with newline=""
        self.unit = "characters" if text else "bytes"

    def __iter__(self) -> CappedLines:
        return self

    def __next__(self):
        line = self.readline(self.cap + 1)
        if not line:
            raise StopIteration
        if len(line) > self.cap:
            head, n = line[:MAX_DETAIL_CHARS], len(line)
            while line and not line.endswith(self.ends):
                line = self.readline(1 << 20)
                n += len(line)
            raise RowTooLarge(f"a line of {n} {self.unit} (limit {self.cap}): {excerpt(head, 100)}")
        return line


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


GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1 ID2 CM=deflate: where a gzip member starts
# compressed bytes read at once, and fed to zlib at once (a small feed keeps unused_data copies small)
_READ_BYTES = 1 << 17
_FEED_BYTES = 1 << 14
# a member's output is held until its CRC is checked; a larger member (one member for many
# records, not Common Crawl's one per record) streams on unchecked past this
MAX_HELD_BYTES = 16 << 20


class _Compressed:
    """The compressed bytes of a gzip input: a window over read(n), with a mark that keeps the bytes
    from a member's start, so that after damage the search for the next member starts right after
    that start (a corrupt member can make zlib read on past its true end before it fails)."""

    def __init__(self, read):
        self.read = read
        self.buf = b""
        self.pos = 0
        self.base = 0  # offset of buf[0] in the input
        self.mark: int | None = None
        self.kept: list[bytes] = []  # bytes from the mark that left the window

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _refill(self, keep: bytes = b"") -> bool:
        """Replace the consumed window by `keep` and the next bytes; False at the end of the input."""
        if self.mark is not None:
            self.kept.append(self.buf[max(0, self.mark - self.base): len(self.buf) - len(keep)])
        more = self.read(_READ_BYTES)
        self.base += len(self.buf) - len(keep)
        self.buf, self.pos = keep + more, 0
        return bool(more)

    def view(self) -> memoryview:
        """The next compressed bytes (at most _FEED_BYTES; empty at the end of the input)."""
        if self.pos >= len(self.buf):
            self._refill()
        return memoryview(self.buf)[self.pos: self.pos + _FEED_BYTES]

    def advance(self, n: int) -> None:
        self.pos += n

    def set_mark(self) -> None:
        self.mark, self.kept = self.offset, []

    def rewind_past_mark(self) -> None:
        """Go back to one byte after the mark (and drop it)."""
        if self.mark >= self.base:
            self.pos = self.mark - self.base + 1
        else:
            self.buf, self.pos, self.base = b"".join(self.kept) + self.buf, 1, self.mark
        self.mark, self.kept = None, []

    def find_member(self) -> tuple[bool, bool]:
        """Move to the next GZIP_MAGIC (or the end): (found, whether the bytes passed were not all zero)."""
        nonzero = False
        while True:
            at = self.buf.find(GZIP_MAGIC, self.pos)
            if at >= 0:
                nonzero = nonzero or bool(self.buf[self.pos: at].strip(b"\0"))
                self.pos = at
                return True, nonzero
            keep = self.buf[max(self.pos, len(self.buf) - len(GZIP_MAGIC) + 1):]  # a magic cut by the window
            nonzero = nonzero or bool(self.buf[self.pos: len(self.buf) - len(keep)].strip(b"\0"))
            if not self._refill(keep):
                nonzero = nonzero or bool(self.buf.strip(b"\0"))
                self.pos = len(self.buf)
                return False, nonzero


def _gzip_pieces(read) -> Iterator[bytes | StreamDamage]:
    """The decompressed members of a gzip input, and a StreamDamage in place of each stretch that
    was skipped: from a member that fails (bad data, bad CRC or length) to the next member that
    decompresses whole, or from bytes that are no gzip member (zero padding excepted) to the next
    one. After a failure the search goes on from one byte after the failed member's start, so an
    intact member right behind it is found even where zlib read on into it before failing.

    A member that the end of the input cuts is searched past the same way: only when no gzip
    header follows its start was it truly cut, and then what it decompressed is yielded before
    its `truncated_gzip` (unchecked: there is no CRC to check); else it was damaged and ran on.
    """
    src = _Compressed(read)
    damaged: tuple[int, str] | None = None  # (start, first error) of the stretch being skipped
    cut: list[bytes] | None = None  # output of the member that opened the stretch by running to the end

    def stretch(end: int) -> StreamDamage:
        return StreamDamage("corrupt_gzip", f"bytes {damaged[0]}-{end} skipped: {damaged[1]}")

    while True:
        if not src.buf.startswith(GZIP_MAGIC, src.pos):
            start = src.offset
            found, nonzero = src.find_member()
            passed = src.offset - start
            if not found and damaged is None and 0 < passed < len(GZIP_MAGIC) and src.buf.endswith(GZIP_MAGIC[:passed]):
                yield StreamDamage("truncated_gzip", f"the input ends inside the gzip header at byte {start}")
                return
            if nonzero and damaged is None:
                damaged = (start, "not a gzip member")
            if not found:
                if cut is not None:
                    yield from cut
                    yield StreamDamage("truncated_gzip", f"the input ends inside the gzip member at byte {damaged[0]}")
                elif damaged is not None:
                    yield stretch(src.offset)
                return
        start = src.offset
        src.set_mark()
        cut = None  # a member starts inside the one that ran to the end: that one was damaged, not cut
        d = zlib.decompressobj(31)  # one gzip member: header, deflate data, CRC32 and length checked
        held: list[bytes] = []
        held_bytes = 0
        streaming = False
        try:
            while not d.eof:
                data = src.view()
                if not data:
                    break
                if streaming:
                    src.set_mark()
                out = d.decompress(data)
                src.advance(len(data) - len(d.unused_data))
                if out:
                    held.append(out)
                    held_bytes += len(out)
                    if held_bytes > MAX_HELD_BYTES and not d.eof:
                        if damaged is not None:
                            yield stretch(start)
                            damaged = cut = None
                        yield from held
                        held, held_bytes, streaming = [], 0, True
        except zlib.error as e:
            if damaged is None:
                damaged = (start, f"gzip member at byte {start}: {e}")
            src.rewind_past_mark()
            continue
        if not d.eof and streaming:  # cut by the end of the input after its output streamed on
            yield from held
            yield StreamDamage("truncated_gzip", f"the input ends inside the gzip member at byte {start}")
            return
        if not d.eof:  # cut by the end of the input, or damaged and run on to it: search past its start
            if damaged is None:
                damaged, cut = (start, f"gzip member at byte {start} runs to the end of the input"), held
            src.rewind_past_mark()
            continue
        src.mark, src.kept = None, []
        if damaged is not None:
            yield stretch(start)
            damaged = cut = None
        yield from held


class _GzipMembers(io.RawIOBase):
    """The decompressed bytes of a gzip input as a raw stream that resyncs after damage: a read
    that reaches a skipped stretch raises its StreamDamage (once), the next read goes on after it."""

    def __init__(self, raw):
        self.pieces = _gzip_pieces(raw.read)
        self.rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.rest:
            piece = next(self.pieces, None)
            if piece is None:
                return 0
            if isinstance(piece, StreamDamage):
                raise piece
            self.rest = memoryview(piece)
        n = min(len(buffer), len(self.rest))
        buffer[:n] = self.rest[:n]
        self.rest = self.rest[n:]
        return n


def is_gzip_start(head: bytes) -> bool:
    """Whether an input that starts with `head` is gzip: by its magic bytes, or, where the first
    member's are damaged, by binary bytes first (a gzip header holds NULs; no text input, a WARC
    included, starts with control bytes) and a gzip header soon after."""
    if head.startswith(GZIP_MAGIC[:2]):
        return True
    text = head.startswith(b"WARC/") or not any(b < 9 or 13 < b < 32 for b in head[:16])
    return not text and GZIP_MAGIC in head


@contextlib.contextmanager
def open_binary(fileobj_or_path) -> Iterator[BinaryIO]:
    """The decompressed bytes of a local path or a binary file object; gzip is detected by its
    first bytes (is_gzip_start) and read by _GzipMembers (reads raise StreamDamage at a damaged
    stretch and go on after it). A path is closed on exit, a file object is left to its owner."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        raw = open(fileobj_or_path, "rb")  # noqa: SIM115 - closed below
        opened = True
    else:
        raw = fileobj_or_path
        opened = False
    try:
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(_RawAdapter(raw))
        if is_gzip_start(buffered.peek(1 << 13)):
            yield io.BufferedReader(_GzipMembers(buffered), buffer_size=1 << 16)
        else:
            yield buffered
    finally:
        if opened:
            raw.close()


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

    def add(self, event: Event) -> None:
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

    def update(self, events: Iterable[Event]) -> EventCounter:
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
