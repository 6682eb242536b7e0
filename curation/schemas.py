"""Parquet schemas of the data contracts (DESIGN section 6), declared once and reused everywhere."""

from __future__ import annotations

import pyarrow as pa

ENTRY_IDS = pa.list_(pa.int32())

MATCHED_TEXT = pa.struct(
    [
        ("text", pa.string()),
        ("source", pa.string()),  # where the text came from: alt, title, data-image-title, table column
        ("page_url", pa.string()),
        ("lid", pa.string()),  # raw LID label, e.g. "zh" or "zh-yue"
        ("lid_prob", pa.float32()),
        ("lang", pa.string()),  # metadata language
        ("entry_ids", ENTRY_IDS),
    ]
)

MATCHED = pa.schema([("uuid", pa.string()), ("url", pa.string()), ("texts", pa.list_(MATCHED_TEXT))])

COUNTS = pa.schema([("lang", pa.string()), ("entry_id", pa.int32()), ("count", pa.int64())])

CURATED = pa.schema(
    [
        ("uuid", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("entry_ids", ENTRY_IDS),
    ]
)

REJECTS = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("source", pa.string()),  # input file or table the record came from
        ("detail", pa.string()),  # a short, truncated excerpt for debugging
    ]
)

IMAGES = pa.schema(
    [
        ("uuid", pa.string()),
        ("url", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_size", pa.int64()),
        ("sha256", pa.string()),
        ("texts", pa.list_(MATCHED_TEXT)),
    ]
)

METADATA_ENTRIES = pa.schema([("entry_id", pa.int32()), ("entry", pa.string()), ("source", pa.string())])

# Raw (url, text) pairs before LID and matching: the common form of WAT links and table inputs.
RAW_PAIRS = pa.schema(
    [
        ("url", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("page_url", pa.string()),
    ]
)
