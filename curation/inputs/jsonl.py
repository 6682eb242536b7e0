"""JSONL url/text tables (optionally gzip), read line by line as a stream.

One line is one record; a line that is not UTF-8, not JSON, or not an object with both columns
is that record's reject (`invalid_utf8`, `malformed_json`, `missing_keys`) and the next line is
read, so one bad line never costs the file. Nor does a line above MAX_ROW_BYTES (read past in
pieces, never held: `record_too_large`) or a damaged gzip member (skipped, one `corrupt_gzip`).
Blank lines are no records. The stream is never held whole, so an s3:// object is read as it
arrives.
"""

from __future__ import annotations

import json
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


def _line_events(line: bytes, url_col: str, text_col: str) -> Iterator[Event]:
    try:
        doc = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        yield "record", None
        yield "reject", ("invalid_utf8", excerpt(line))
        return
    except (ValueError, RecursionError):
        yield "record", None
        yield "reject", ("malformed_json", excerpt(line))
        return
    if not isinstance(doc, dict) or url_col not in doc or text_col not in doc:
        yield "record", None
        yield "reject", ("missing_keys", excerpt(line))
        return
    yield from row_events(doc[url_col], doc[text_col])


def _stream_events(stream, url_col: str, text_col: str) -> Iterator[Event]:
    lines = CappedLines(stream, base.MAX_ROW_BYTES)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except StreamDamage as e:  # a damaged gzip member or an over-long line: one record
            yield "record", None
            yield "reject", stream_reject(e)
            continue
        if line.strip():
            yield from _line_events(line, url_col, text_col)


class JsonlReader(TableReader):
    name = "jsonl"
    extensions = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
    kinds = ("jsonl", "gzip jsonl")

    def columns(self, raw, head: bytes, whole: bool) -> list[str] | None:
        """The keys of the first line that is a JSON object (rows of a table share them)."""
        for line in head.splitlines():
            try:
                doc = json.loads(line)
            except (ValueError, RecursionError):
                continue  # blank, bad, or cut by the end of `head`
            if isinstance(doc, dict):
                return list(doc)
        return None

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        with open_binary(source) as stream:
            yield from until_stream_error(_stream_events(stream, url_col, text_col))
