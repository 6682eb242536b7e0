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

Bad content never raises: a truncated or corrupt gzip stops the file, what was read is yielded,
then the cut record counts as one record with reject `truncated_gzip` / `corrupt_gzip`. I/O
errors of the underlying storage are not bad input and propagate (the task is retried) so that
no data is silently lost; neither is a configuration error (a table without its columns).
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
    "corrupt_gzip",  # gzip data that does not decompress
    "truncated_record",  # stream ends before Content-Length bytes of a record were read
    "record_too_large",  # Content-Length above MAX_RECORD_BYTES: skipped without holding it in memory
    "bad_warc_header",  # no WARC/x version line, unparsable header, missing/invalid Content-Length
    "invalid_utf8",  # JSON payload (or a JSONL line, a CSV row) is not valid UTF-8
    "malformed_json",
    "missing_keys",  # JSON without the envelope structure (or a table row without its columns)
    "corrupt_table",  # a Parquet or CSV file that cannot be read further
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
    `table` readers take their pairs from the columns named url_col / text_col.
    """

    name: str = ""
    extensions: tuple[str, ...] = ()
    table: bool = False
    columnar: bool = False

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        raise NotImplementedError

    def pair_chunks(self, path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
        raise NotImplementedError(f"{self.name} inputs have no column path")


# --------------------------------------------------------------------------- byte streams

# what a damaged gzip raises while it is read: bad input, turned into one record reject
STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def stream_reject(error: BaseException) -> tuple[str, str]:
    """The record reject of one of STREAM_ERRORS."""
    return ("truncated_gzip" if isinstance(error, EOFError) else "corrupt_gzip"), excerpt(str(error))


def until_stream_error(events: Iterator[Event]) -> Iterator[Event]:
    """`events`, ended by one rejected record when the stream under them is a damaged gzip."""
    try:
        yield from events
    except STREAM_ERRORS as e:
        yield "record", None
        yield "reject", stream_reject(e)


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


@contextlib.contextmanager
def open_binary(fileobj_or_path) -> Iterator[BinaryIO]:
    """The decompressed bytes of a local path or a binary file object; gzip is detected by its
    magic bytes. A path is closed on exit, a file object is left to its owner."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        raw = open(fileobj_or_path, "rb")  # noqa: SIM115 - closed below
        opened = True
    else:
        raw = fileobj_or_path
        opened = False
    try:
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(_RawAdapter(raw))
        yield gzip.GzipFile(fileobj=buffered, mode="rb") if buffered.peek(2)[:2] == b"\x1f\x8b" else buffered
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
