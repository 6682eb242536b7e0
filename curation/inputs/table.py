"""url/text tables (LAION style): what one row means, whatever file format holds the rows.

A table row is one record and at most one pair: its URL is judged first (normalize_url), then
its text (clean_alt_text), and the first failure rejects the row. Parquet, JSONL and CSV differ
only in how rows are found and what makes a row unreadable, so the row itself is decided here
once: per row for the event path (`row_events`), per Arrow column for the column path
(`string_pair_chunk`), where canonical URLs and clean texts are recognised in C and only the
other rows take `table_row`. Both give the same records, pairs and rejects.

What makes a row unreadable before it is judged is decided here too, for both paths: a string
value that is not UTF-8 (Arrow does not check what a Parquet file holds, and decoding it would
raise) rejects its row as `invalid_utf8` (`utf8_rows`), and rows that could not be read at all
become PairChunks of rejects (`lost_chunks`).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import compress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.inputs.base import Event, PairChunk, Reader, excerpt, text_of
from curation.text import clean_alt_text
from curation.urls import image_uuid, normalize_url

# the pair columns a table does not have: the same value for every row
TABLE_CONSTANTS = {"source": "table", "page_url": ""}


class TableReader(Reader):
    """A reader of url/text rows (the columns url_col / text_col)."""

    table = True


def table_row(url: object, text: object) -> tuple[str, str, None] | tuple[None, None, tuple[str, str]]:
    """A table row's (normalised URL, clean text, None), or (None, None, (reason, detail)) when it
    is rejected: the URL is judged first, then the text."""
    norm, reason = normalize_url(url)
    if norm is None:
        return None, None, (reason, excerpt(url))
    clean, reason = clean_alt_text(text_of(text))
    if clean is None:
        return None, None, (reason, excerpt(text))
    return norm, clean, None


def row_events(url: object, text: object) -> Iterator[Event]:
    """The events of one table row: a record, then its pair or its reject."""
    yield "record", None
    norm, clean, reject = table_row(url, text)
    if reject is not None:
        yield "reject", reject
        return
    yield "pair", {"url": norm, "uuid": image_uuid(norm), "text": clean, **TABLE_CONSTANTS}


def lost_chunks(reject: tuple[str, str], records: int, chunk_rows: int) -> Iterator[PairChunk]:
    """PairChunks of `records` rows that could not be read, each rejected with `reject`."""
    for start in range(0, records, chunk_rows):
        n = min(chunk_rows, records - start)
        yield PairChunk({"url": pa.array([], pa.string()), "text": pa.array([], pa.string())}, [],
                        dict(TABLE_CONSTANTS), [reject] * n, n)


def _is_utf8(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_rows(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[tuple[str, str] | None] | None]:
    """The batch without its rows that hold a string value that is not UTF-8, and per row of the
    batch None (kept) or its `invalid_utf8` reject; (batch, None) when every row is UTF-8 (one
    validation pass in C per string column)."""
    bad: list[bytes | None] | None = None
    for column in batch.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()).to_pylist()
        bad = bad or [None] * len(raw)
        for i, value in enumerate(raw):
            if bad[i] is None and not _is_utf8(value):
                bad[i] = value
    if bad is None:
        return batch, None
    keep = pa.array([value is None for value in bad])
    return batch.filter(keep), [None if value is None else ("invalid_utf8", excerpt(value)) for value in bad]


def pair_chunk(batch: pa.RecordBatch) -> PairChunk:
    """The PairChunk of a (url, text) batch: column-wise for string columns, else row by row; rows
    that are not UTF-8 are rejected first (utf8_rows)."""
    records = batch.num_rows
    batch, bad = utf8_rows(batch)
    if all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in batch.columns):
        chunk = string_pair_chunk(batch.column(0), batch.column(1), records)
    else:
        chunk = row_pair_chunk(batch)
        chunk.records = records
    if bad is not None:
        chunk.rejects[:0] = [reject for reject in bad if reject is not None]
    return chunk


def string_pair_chunk(urls: pa.Array, texts: pa.Array, records: int) -> PairChunk:
    """Canonical URLs and clean texts recognised per column in C; only the other rows take
    table_row (which returns canonical URLs and clean texts unchanged)."""
    from curation.text import already_clean_mask
    from curation.urls import canonical_flags

    urls, texts = urls.cast(pa.string()), texts.cast(pa.string())
    text_list = texts.to_pylist()
    slow = np.flatnonzero(~(canonical_flags(urls) & already_clean_mask(texts, text_list)))
    rejects: list[tuple[str, str]] = []
    if slow.size:
        keep = np.ones(len(text_list), dtype=bool)
        url_fix = np.zeros(len(text_list), dtype=bool)
        text_fix = np.zeros(len(text_list), dtype=bool)
        new_urls, new_texts = [], []
        slow_urls = urls.take(pa.array(slow, pa.int64())).to_pylist()
        for i, url in zip(slow.tolist(), slow_urls, strict=True):
            norm, clean, reject = table_row(url, text_list[i])
            if reject is not None:
                rejects.append(reject)
                keep[i] = False
                continue
            if norm != url:
                url_fix[i] = True
                new_urls.append(norm)
            if clean != text_list[i]:
                text_fix[i] = True
                new_texts.append(clean)
                text_list[i] = clean
        if new_urls:
            urls = pc.replace_with_mask(urls, pa.array(url_fix), pa.array(new_urls, pa.string()))
        if new_texts:
            texts = pc.replace_with_mask(texts, pa.array(text_fix), pa.array(new_texts, pa.string()))
        if not keep.all():
            mask = pa.array(keep)
            urls, texts = urls.filter(mask), texts.filter(mask)
            text_list = list(compress(text_list, keep.tolist()))
    return PairChunk({"url": urls, "text": texts}, text_list, dict(TABLE_CONSTANTS), rejects, records)


def row_pair_chunk(batch: pa.RecordBatch) -> PairChunk:
    """The per-row path, for tables whose columns are not strings (binary text, numbers...)."""
    urls, texts, rejects = [], [], []
    for url, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
        norm, clean, reject = table_row(url, text)
        if reject is not None:
            rejects.append(reject)
            continue
        urls.append(norm)
        texts.append(clean)
    return PairChunk({"url": pa.array(urls, pa.string()), "text": pa.array(texts, pa.string())}, texts,
                     dict(TABLE_CONSTANTS), rejects, batch.num_rows)
