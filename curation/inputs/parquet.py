"""Parquet url/text tables, the one input Annotator reads column-wise.

Parquet already holds the URLs and texts as Arrow columns, so a local file goes to
Annotator.run_columns as PairChunks (curation.inputs.table decides the rows per column, in C)
rather than as one event tuple per row; the event path remains for file objects (s3:// inputs,
read whole into memory because Parquet needs random access). A file or page that pyarrow cannot
read loses the rest of the file, counted as one `corrupt_table` record; a file without the
configured columns is a configuration error and raises.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from curation.inputs.base import TABLE_BATCH_ROWS, Event, PairChunk, excerpt
from curation.inputs.table import TableReader, pair_chunk, row_events, unreadable_chunk


def parquet_url_text_batches(path, url_col: str, text_col: str, batch_size: int):
    """(url, text) record batches of a Parquet table, then at most one ('corrupt_table', detail) string
    pair when the file or a page is unreadable (the rest of the file is then lost and counted once).

    Shared by the event path and the column path.
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


class ParquetReader(TableReader):
    name = "parquet"
    extensions = (".parquet", ".pq")
    columnar = True

    def events(self, source, url_col: str, text_col: str, batch_size: int = TABLE_BATCH_ROWS) -> Iterator[Event]:
        import pyarrow as pa

        if not isinstance(source, (str, os.PathLike, pa.NativeFile)):  # a Python stream: read it whole
            source = pa.BufferReader(source.read())
        for batch in parquet_url_text_batches(source, url_col, text_col, batch_size):
            if isinstance(batch, tuple):
                yield "record", None
                yield "reject", batch
                return
            for url, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                yield from row_events(url, text)

    def pair_chunks(self, path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
        """The same records, pairs and rejects as `events` (one row = one record; URL rejects, then
        text rejects), without one event tuple per row."""
        for batch in parquet_url_text_batches(path, url_col, text_col, chunk_rows):
            if isinstance(batch, tuple):  # ('corrupt_table', detail): one record lost, then the file ends
                yield unreadable_chunk(batch)
                return
            yield pair_chunk(batch)


def table_pair_chunks(path, url_col: str, text_col: str, chunk_rows: int = TABLE_BATCH_ROWS) -> Iterator[PairChunk]:
    """A local Parquet url/text table as PairChunks for Annotator.run_columns."""
    return ParquetReader().pair_chunks(path, url_col, text_col, chunk_rows)
