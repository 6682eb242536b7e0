"""Input reading of the curate job: one registry of formats, one way in for every input file.

Annotator (curation.annotate) consumes either events or PairChunks (curation.inputs.base) and
never asks where they came from. A format is a Reader (its `name`, file-name `extensions`,
`events`, and for column-wise formats `pair_chunks`) in its own module, registered in READERS
below; the format names of the config, auto-detection by extension (`input_format`) and the
dispatch (`iter_input_events`, `run_input`) are all derived from READERS. Adding a format is
one module and one line here. s3:// inputs are opened through curation.storage in
`iter_input_events` only, so a reader sees a local path or a binary file object, never a URI.

Names that end in no registered extension are read as WAT: Common Crawl's listings name their
WATs *.warc.wat.gz, but object stores and @list files may not. Because no reader fails on bad
content, a wrong format or column name would curate nothing without an error; `check_input`
(curation.inputs.check) looks at an input's first bytes and footer before a run starts instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from curation.inputs import csv, jsonl, parquet, wat
from curation.inputs.base import (
    LINK_REJECT_REASONS,
    PAIR_COLUMNS,
    RECORD_REJECT_REASONS,
    SKIP_REASONS,
    TABLE_BATCH_ROWS,
    TEXT_REJECT_REASONS,
    Event,
    EventCounter,
    PairChunk,
    Reader,
    excerpt,
)
from curation.inputs.check import check_input
from curation.inputs.parquet import table_pair_chunks
from curation.inputs.table import TABLE_CONSTANTS
from curation.inputs.wat import iter_warc_records, iter_wat_events, wat_payload_events

READERS: dict[str, Reader] = {
    r.name: r for r in (
        wat.WatReader(),
        parquet.ParquetReader(),
        jsonl.JsonlReader(),
        csv.CsvReader(),
    )
}
DEFAULT_FORMAT = "wat"
FORMATS = tuple(READERS)
# every file-name ending, longest first so ".jsonl.gz" is tried before any ".gz"
_EXTENSIONS = sorted(((ext, r.name) for r in READERS.values() for ext in r.extensions), key=lambda e: -len(e[0]))
assert len({ext for ext, _ in _EXTENSIONS}) == len(_EXTENSIONS), "an extension is registered twice"
# the files that decide what an input yields (part of jobs.curate.CODE_FILES)
CODE_FILES = tuple(sorted({
    f"curation/inputs/{os.path.basename(sys.modules[name].__file__)}"
    for name in (__name__, "curation.inputs.base", "curation.inputs.table", *(type(r).__module__ for r in READERS.values()))
}))

__all__ = [
    "CODE_FILES", "DEFAULT_FORMAT", "FORMATS", "LINK_REJECT_REASONS", "PAIR_COLUMNS", "READERS",
    "RECORD_REJECT_REASONS", "SKIP_REASONS", "TABLE_CONSTANTS", "TEXT_REJECT_REASONS", "Event",
    "EventCounter", "PairChunk", "Reader", "check_input", "excerpt", "format_of_name", "input_format",
    "iter_input_events",
    "iter_table_events", "iter_warc_records", "iter_wat_events", "run_input", "table_pair_chunks",
    "wat_payload_events",
]


def reader(fmt: str) -> Reader:
    """The registered reader of a format name; ValueError naming the known ones."""
    try:
        return READERS[fmt]
    except KeyError:
        raise ValueError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}") from None


def format_of_name(path: object) -> str | None:
    """The format whose extension the name ends with, or None (file objects have no name)."""
    name = os.fspath(path).lower() if isinstance(path, (str, os.PathLike)) else ""
    return next((fmt for ext, fmt in _EXTENSIONS if name.endswith(ext)), None)


def input_format(path: str, fmt: str = "auto") -> str:
    """The format of an input: `fmt` from the config, or for "auto" the file name's (WAT if none)."""
    if fmt != "auto":
        return reader(fmt).name
    return format_of_name(path) or DEFAULT_FORMAT


def iter_input_events(path: str, fmt: str, url_col: str = "URL", text_col: str = "TEXT") -> Iterator[Event]:
    """Events of one input (curation.inputs.base protocol); s3:// inputs are streamed through curation.storage."""
    from curation import storage

    r = reader(fmt)
    if storage.is_s3(path):
        with storage.open_read(path) as f:
            yield from r.events(f, url_col, text_col)
    else:
        yield from r.events(path, url_col, text_col)


def run_input(stage, path: str, fmt: str, url_col: str, text_col: str):
    """Annotator over one input: column chunks where the reader has them (local files), else events."""
    from curation import storage

    r = reader(fmt)
    if r.columnar and not storage.is_s3(path):
        return stage.run_columns(r.pair_chunks(path, url_col, text_col))
    return stage.run(iter_input_events(path, fmt, url_col, text_col))


def iter_table_events(source, url_col: str = "URL", text_col: str = "TEXT", fmt: str | None = None,
                      batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
    """Events of a url/text table (one row = one record), its format from `fmt` or its name.

    Unlike `input_format`, a name of no table format is an error, not a WAT.
    """
    tables = [name for name, r in READERS.items() if r.table]
    kind = fmt or format_of_name(source)
    if kind not in tables:
        raise ValueError(f"{source}: not a table format ({fmt or 'from the name'}); pass fmt= one of {', '.join(tables)}")
    yield from READERS[kind].events(source, url_col, text_col, batch_size)
