"""Preflight of one curate input: does it hold what its format's reader reads, with the columns
the config names?

The readers never fail on bad content, so a wrong format or wrong column names do not fail them
either: a CSV read as a WAT is one `bad_warc_header` record, a JSONL file whose rows lack the
configured columns is one `missing_keys` per row, and the run ends with nothing curated and exit
status 0. `check_input` catches these before Spark starts, from what an input starts with
(HEAD_BYTES, decompressed when it is gzip) and, for Parquet, its footer, read through
curation.storage so that an s3:// input costs two ranged GETs and never a whole download. Its
ValueError is one line that names what it found: the kind of content (by magic bytes and a look
at the first line) or the columns there are.

It judges the kind of content and the columns, not the content: a damaged gzip member (even the
first, where a format reads gzip), an unreadable footer or a bad row further in are the readers'
to count, and an empty file passes (it has no records). Which kinds a format reads and where
its columns are named is each Reader's (`kinds`, `columns`), so a new format brings its own.
"""

from __future__ import annotations

import zlib

from curation.inputs.base import GZIP_MAGIC, excerpt, is_gzip_start

# what is read of an input's start (and at most what is decompressed of it)
HEAD_BYTES = 1 << 16
# column names listed in an error, at most
_MAX_NAMES = 20

KIND_NAMES = {
    "empty": "nothing (an empty file)",
    "warc": "WARC records (a WAT, WARC or WET)",
    "parquet": "a Parquet file",
    "jsonl": "JSON lines",
    "json": "a JSON document, not one object per line",
    "markup": "XML or HTML",
    "text": "CSV or other text",
    "binary": "binary data",
    "zstd": "zstd-compressed data",
    "bzip2": "bzip2-compressed data",
    "xz": "xz-compressed data",
    "zip": "a zip archive",
    "gzip damaged": "gzip data that does not decompress at its start",
}
_MAGIC_KINDS = (
    (b"PAR1", "parquet"),
    (b"WARC/", "warc"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
)


def describe(kind: str) -> str:
    """A kind of sniff() in words."""
    if kind.startswith("gzip ") and kind != "gzip damaged":
        return f"gzip-compressed {KIND_NAMES[kind[5:]]}"
    return KIND_NAMES[kind]


def _gunzip_head(data: bytes) -> tuple[bytes, bool] | None:
    """The first decompressed bytes (at most HEAD_BYTES) of a gzip start, and whether that is all
    of it; None when it does not decompress."""
    out = b""
    while data and len(out) < HEAD_BYTES:
        d = zlib.decompressobj(31)
        try:
            out += d.decompress(data, HEAD_BYTES - len(out))
        except zlib.error:
            return (out, False) if out else None
        if not d.eof:
            return out, False
        data = d.unused_data
        if data and not data.startswith(GZIP_MAGIC):
            break  # trailing bytes that are no member: the reader's to count
    return out, not data


def sniff(head: bytes) -> str:
    """The kind of content (a key of KIND_NAMES, "gzip <kind>" for gzip) that starts with `head`."""
    if is_gzip_start(head):  # as the readers decide it (curation.inputs.base.open_binary)
        inner = _gunzip_head(head)
        return "gzip damaged" if inner is None else f"gzip {sniff_plain(inner[0])}"
    return sniff_plain(head)


def sniff_plain(head: bytes) -> str:
    """The kind of uncompressed content that starts with `head`."""
    if not head:
        return "empty"
    for magic, kind in _MAGIC_KINDS:
        if head.startswith(magic):
            return kind
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if b"\0" in text[:4096]:
        return "binary"
    first = text[:1]
    if first == b"{":
        return "jsonl"
    if first == b"[":
        return "json"
    if first == b"<":
        return "markup"
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(text) - 3 and sum(b < 9 or 13 < b < 32 for b in text[:4096]) > 8:
            return "binary"  # not UTF-8 text and full of control bytes (text in another encoding passes)
    return "text"


def _read_at(raw, offset: int, n: int) -> bytes:
    """n bytes (fewer at the end) at offset of an unbuffered file: exactly one ranged GET on S3."""
    raw.seek(offset)
    parts, left = [], n
    while left > 0:
        part = raw.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def check_input(path: str, fmt: str = "auto", url_col: str = "URL", text_col: str = "TEXT") -> str:
    """The input's format (`fmt`, or for "auto" the one its name says) once its content is of a
    kind that format reads and, for a table, names both columns. ValueError (one line) otherwise;
    I/O errors of the storage (FileNotFoundError naming the input) propagate."""
    from curation import storage
    from curation.inputs import READERS, input_format

    name = input_format(path, fmt)
    reader = READERS[name]
    how = f"as {name} " + ("by its name" if fmt == "auto" else f"(--input-format {name})")
    with storage.open_read(path) as f:
        raw = getattr(f, "raw", f)  # unbuffered, so that S3 is asked for exactly these bytes
        start = _read_at(raw, 0, HEAD_BYTES)
        whole = len(start) < HEAD_BYTES
        kind = sniff(start)
        if kind in ("empty", "gzip empty"):
            return name  # no records: nothing to contradict
        if kind == "gzip damaged" and any(k.startswith("gzip ") for k in reader.kinds):
            return name  # bad content, not a wrong format: the reader skips and counts it
        if reader.kinds and kind not in reader.kinds:
            readers = [r.name for r in READERS.values() if kind in r.kinds]
            hint = f"set --input-format {readers[0]}" if readers else "no input format reads it"
            raise ValueError(f"input {path} is read {how} but holds {describe(kind)}; {hint}")
        if not reader.table:
            return name
        head = start
        if kind.startswith("gzip "):
            head, all_of_it = _gunzip_head(start)
            whole = whole and all_of_it
        columns = reader.columns(raw, head, whole)
    missing = [c for c in (url_col, text_col) if columns is not None and c not in columns]
    if missing:
        shown = ", ".join(excerpt(c, 60) for c in columns[:_MAX_NAMES]) + (", …" if len(columns) > _MAX_NAMES else "")
        missing = list(dict.fromkeys(missing))
        which = f"column {missing[0]!r}" if len(missing) == 1 else f"columns {missing[0]!r} and {missing[1]!r}"
        raise ValueError(f"input {path} has no {which} (columns: {shown or 'none'}); set --url-col/--text-col")
    return name
