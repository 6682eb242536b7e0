"""CSV url/text tables with a header row (optionally gzip), read row by row as a stream.

The header names the columns (url_col / text_col, like Parquet's and JSONL's); a header without
them is a configuration error and raises. After it, one row is one record, judged like a JSONL
line: a row with bytes that are not UTF-8 is rejected as `invalid_utf8` and a row too short to
hold both columns as `missing_keys`, so one bad row never costs the file. Blank rows are no
records. A line above MAX_ROW_BYTES characters is read past in pieces, never held, and rejected
as `record_too_large` (inside a quoted multi-line field the rows after it may then misparse: a
quoted field that long is not a url/text table), a damaged gzip member as one `corrupt_gzip`; a
damaged or over-long header ends the file, since the rows after it cannot be read without it.
What the csv module cannot parse further loses the rest of the file, counted as one
`corrupt_table` record. A CSV cannot tell a null from an empty string: an empty field is an
empty text (`empty_text`) or URL (`invalid_url`).

Bytes are decoded with `surrogateescape`, so a row's invalid bytes show as lone surrogates and
cost that row only (valid UTF-8 never decodes to one); a UTF-8 byte-order mark is dropped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from curation.inputs import base
from curation.inputs.base import (
    TABLE_BATCH_ROWS,
    CappedLines,
    Event,
    StreamDamage,
    excerpt,
    open_binary,
    stream_reject,
    until_stream_error,
)
from curation.inputs.table import TableReader, row_events

# The csv module refuses fields over 128 KiB (the limit is process-wide); a longer alt-text must be
# rejected as text_too_long like in any other table, not end the file. Only ever raised here. No
# field is longer than its line (MAX_ROW_BYTES) but for a quoted one across lines, which this bounds.
MAX_FIELD_CHARS = base.MAX_ROW_BYTES
csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")


def _raw(row: list[str]) -> bytes:
    """A row's bytes again (as the file held them, up to quoting), for reject details."""
    return ",".join(row).encode("utf-8", "surrogateescape")


def _rows_events(rows: Iterator[list[str]], url_col: str, text_col: str, name: object) -> Iterator[Event]:
    header: list[str] | None = None
    done = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return  # an empty file has no header and no records
        except StreamDamage as e:  # a damaged gzip member or an over-long line: one record
            yield "record", None
            yield "reject", stream_reject(e)
            if header is None:
                return
            continue
        except csv.Error as e:
            yield "record", None
            yield "reject", ("corrupt_table", excerpt(f"after {done} rows: {e}"))
            return
        if header is None:
            header = row
            missing = [c for c in (url_col, text_col) if c not in header]
            if missing:
                raise ValueError(f"{name}: no column(s) {missing}; columns are {header}")
            url_at, text_at = header.index(url_col), header.index(text_col)
            continue
        done += 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if any(_ESCAPED_BYTES.search(field) for field in row):
            yield "record", None
            yield "reject", ("invalid_utf8", excerpt(_raw(row)))
        elif len(row) <= max(url_at, text_at):
            yield "record", None
            yield "reject", ("missing_keys", excerpt(_raw(row)))
        else:
            yield from row_events(row[url_at], row[text_at])


class CsvReader(TableReader):
    name = "csv"
    extensions = (".csv", ".csv.gz")
    kinds = ("text", "gzip text")

    def columns(self, raw, head: bytes, whole: bool) -> list[str] | None:
        """The header row's names (None when `head` cuts the header)."""
        text = head.decode("utf-8-sig", errors="surrogateescape")
        if not whole and not any(end in text for end in "\r\n"):
            return None
        return next(csv.reader(io.StringIO(text, newline="")), [])

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        with open_binary(source) as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
            try:
                lines = CappedLines(text, base.MAX_ROW_BYTES, text=True)
                yield from until_stream_error(_rows_events(csv.reader(lines), url_col, text_col, source))
            finally:
                text.detach()  # the stream belongs to open_binary (or to the caller)
