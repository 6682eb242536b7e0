"""Parquet url/text tables, the one input Annotator reads column-wise.

Parquet already holds the URLs and texts as Arrow columns, so a local file goes to
Annotator.run_columns as PairChunks (curation.inputs.table decides the rows per column, in C)
rather than as one event tuple per row; the event path remains for file objects (s3:// inputs,
read whole into memory because Parquet needs random access).

A bad page or compressed block (pyarrow: `Couldn't deserialize thrift`, `Corrupt snappy
compressed data`) is local to its row group: the rows of that row group not yet read are
rejected as `corrupt_table`, one per row (the footer says how many), and reading restarts at the
next row group. One reader spans all row groups (as fast as before for files of many small
ones); after a failure the row group it was in is read again alone, since a batch that spans a
row-group boundary fails for damage in the next one. A file whose footer cannot be read loses
all of it, counted as one `corrupt_table` record (its row count is in that footer). A string
value that is not UTF-8 (Parquet writers do not check) costs its row only (`invalid_utf8`,
decided in curation.inputs.table). pyarrow raises OSError for bad content as well as for a
failing disk; one with an errno is the storage's and propagates. A file without the configured
columns is a configuration error and raises.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from curation.inputs.base import TABLE_BATCH_ROWS, Event, PairChunk, excerpt
from curation.inputs.table import TableReader, lost_chunks, pair_chunk, row_events, utf8_rows

# a row group that claims more rows than this is not believed: its loss counts as one record
MAX_BELIEVED_ROWS = 1 << 27


def _content_error(error: Exception) -> bool:
    """Whether a pyarrow error is bad content (a storage error carries an errno and propagates)."""
    import pyarrow as pa

    if isinstance(error, OSError):
        return error.errno is None
    return isinstance(error, pa.ArrowException)


def parquet_url_text_batches(path, url_col: str, text_col: str, batch_size: int):
    """(url, text) record batches of a Parquet table, and for what cannot be read a
    ((`corrupt_table`, detail), rows lost) pair in its place. Shared by the event path and the column path."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # not a Parquet file, or a corrupt footer
        if not _content_error(e):
            raise
        yield ("corrupt_table", excerpt(str(e))), 1
        return
    names = pf.schema_arrow.names
    missing = [c for c in (url_col, text_col) if c not in names]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {names}")
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    columns = [url_col, text_col]
    first = 0  # one reader over the row groups from `first` on
    while first < len(sizes):
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=range(first, len(sizes)), columns=columns):
                done += batch.num_rows
                yield batch
            return
        except Exception as e:  # a corrupt page somewhere ahead
            if not _content_error(e):
                raise
        # the first row group not wholly yielded, read alone (the failing batch may have run on
        # into a later row group that holds the damage): its rows up to the damage, then the rest lost
        group, skip = first, done
        while group < len(sizes) and skip >= sizes[group]:
            skip -= sizes[group]
            group += 1
        if group == len(sizes):
            return  # every row was read
        read = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns):
                if read + batch.num_rows > skip:
                    yield batch.slice(max(0, skip - read))
                read += batch.num_rows
        except Exception as e:
            if not _content_error(e):
                raise
            lost = sizes[group] - max(read, skip)
            if lost > 0:
                detail = excerpt(f"row group {group}, {lost} of its {sizes[group]} rows: {e}")
                yield ("corrupt_table", detail), (lost if lost <= MAX_BELIEVED_ROWS else 1)
        first = group + 1


class ParquetReader(TableReader):
    name = "parquet"
    extensions = (".parquet", ".pq")
    columnar = True
    kinds = ("parquet",)

    def columns(self, raw, head: bytes, whole: bool) -> list[str] | None:
        """The schema's names, from the footer (read through `raw`: on S3 one ranged GET of its end)."""
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(raw).schema_arrow.names
        except Exception as e:  # an unreadable footer: the reader counts it
            if not _content_error(e):
                raise
            return None

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        import pyarrow as pa

        if not isinstance(source, (str, os.PathLike, pa.NativeFile)):  # a Python stream: read it whole
            source = pa.BufferReader(source.read())
        for batch in parquet_url_text_batches(source, url_col, text_col, batch_size):
            if isinstance(batch, tuple):
                reject, lost = batch
                for _ in range(lost):
                    yield "record", None
                    yield "reject", reject
                continue
            batch, bad = utf8_rows(batch)
            rows = zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)
            for reject in bad or ():  # in row order: a row's reject, or None for the next readable row
                if reject is None:
                    yield from row_events(*next(rows))
                else:
                    yield "record", None
                    yield "reject", reject
            if bad is None:
                for url, text in rows:
                    yield from row_events(url, text)

    def pair_chunks(self, path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
        """The same records, pairs and rejects as `events` (one row = one record; URL rejects, then
        text rejects), without one event tuple per row."""
        for batch in parquet_url_text_batches(path, url_col, text_col, chunk_rows):
            if isinstance(batch, tuple):  # (('corrupt_table', detail), rows lost)
                yield from lost_chunks(*batch, chunk_rows)
            else:
                yield pair_chunk(batch)


def table_pair_chunks(path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
    """A local Parquet url/text table as PairChunks for Annotator.run_columns."""
    return ParquetReader().pair_chunks(path, url_col, text_col, chunk_rows)
