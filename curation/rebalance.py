"""Rebalancing over the images that were obtained (issue 14 item 6; jobs/rebalance.py runs it).

MetaCLIP's reference counts only the images it actually downloaded (its valid-uuid list). The
curate job counts every matched image of the crawl, because its counts exist before any
download. This module recomputes, from a finished curate output and a set of valid uuids, what
the curate job's phase 3 computes (entry counts -> t_en -> p -> t_lang -> entry probabilities ->
the offline sample), without rerunning LID or matching: matched/ already holds every image's
texts with their languages and entry ids.

  1. `plan_pieces`: the valid uuids' files -> pieces of bounded size: a download output's image
     shards (their `uuid` column only), Parquet files with a `uuid` column (by row groups), or
     text files with one uuid a line (by byte ranges cut at line starts).
  2. `exchange_uuids`: one task per run of consecutive pieces writes the pieces' uuids, sorted and
     unique, as one Arrow IPC file of exactly `buckets` record batches, batch k holding the uuids
     of matched/part-k's uuid range (grouping.bucket_offsets, the curate job's bucket rule). A
     bucket task then reads one batch of each run: opens = pieces + runs x buckets, and no task
     holds more than one run's pieces or one bucket's uuids.
  3. `rebalance_bucket`: matched/part-k filtered to the bucket's valid uuids -> entry counts (as
     grouping.group_bucket counts: an image's identical texts once, which is matched/'s texts),
     texts per language, the images kept and dropped per language, and each kept image's pick for
     the offline sample (grouping.picked_path, the file grouping.curate_part reads).
  4. The driver sums the results (grouping.merge_results) and applies grouping.balance_counts;
     grouping.curate_part draws curated/ from the picks with the source run's seed.

Every step is the curate job's own function on the same rows, so with every matched uuid valid
the counts/, thresholds.json, entry_probs/ and curated/ are byte-identical to the source run's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation import grouping, sampling, storage
from curation.layout import CurateOutput, ImagesOutput, RebalanceOutput
from curation.schemas import CURATED, MATCHED

UUIDS = pa.schema([("uuid", pa.string())])
UUID_RE = re.compile(r"^[0-9a-f]{24}$")  # curation.urls.image_uuid: 24 hex digits of sha224(URL)
TEXT_PIECE_BYTES = 16 << 20  # a text piece: ~650k uuids
PARQUET_PIECE_ROWS = 1 << 20  # a Parquet piece: row groups up to about this many rows
RUN_MAX_PIECES = 16  # an exchange task holds at most this many pieces' uuids (~10M uuids, ~0.5 GB)
HEAD_BYTES = 64 << 10  # what preflight reads of a text uuid list
KEPT, DROPPED = "kept_images.", "dropped_images."  # per-language totals of a bucket result
DROPPED_TEXTS = "dropped_texts."


class RebalanceError(ValueError):
    """A user error (one line): the source is not a rebalanceable curate output, the valid uuids
    are missing or empty, ..."""


# --- the source curate output --------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What rebalancing reads of a finished curate output."""

    uri: str  # as the user named it
    root: str  # where its files are (on S3: the run its manifest names)
    manifest: dict
    manifest_sha256: str
    matched_parts: tuple[str, ...]  # matched/part-k, k = 0..buckets-1
    num_entries: dict[str, int]  # per metadata language (thresholds.json)

    @property
    def buckets(self) -> int:
        return len(self.matched_parts)

    @property
    def config(self) -> dict:
        return self.manifest.get("config") or {}

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def t_en(self) -> int:
        return int(self.config["t_en"])

    @property
    def en_lang(self) -> str:
        return str(self.config.get("en_lang", "en"))

    @property
    def rows_per_file(self) -> int:
        return int(self.config.get("rows_per_file", 250_000))

    @property
    def count_identical_texts(self) -> str:
        return str(self.config.get("count_identical_texts", "once"))

    def identity(self) -> dict:
        """What the rebalanced output's manifest records of its source."""
        published = self.manifest.get(storage.PUBLISHED_KEY)
        return {"output": self.uri, "root": self.root, "matched": CurateOutput(self.root).matched,
                "run": (published or {}).get("run"), "manifest_sha256": self.manifest_sha256,
                "code_version": self.manifest.get("code_version"), "rows": self.manifest.get("rows"),
                "stage1_fingerprint": self.manifest.get("stage1_fingerprint")}


def read_source(uri: str) -> Source:
    """The curate output at `uri`, or a RebalanceError saying why it cannot be rebalanced."""
    if not storage.exists(uri):
        raise RebalanceError(f"--curated-output {uri} does not exist")
    root = CurateOutput.published(uri)
    try:
        data = storage.read_bytes(root.manifest)
    except FileNotFoundError:
        raise RebalanceError(f"--curated-output {uri} is not a curate output (no {CurateOutput.MANIFEST})") from None
    try:
        manifest = json.loads(data)
    except ValueError:
        raise RebalanceError(f"--curated-output {uri}: {CurateOutput.MANIFEST} is not JSON") from None
    job = manifest.get("job") if isinstance(manifest, dict) else None
    if job == RebalanceOutput.LAYOUT.job:
        src = (manifest.get("source") or {}).get("output", "its source")
        raise RebalanceError(f"--curated-output {uri} is itself a rebalanced output: rebalance the curate output "
                             f"it was made from ({src}) instead")
    if job != CurateOutput.LAYOUT.job:
        raise RebalanceError(f"--curated-output {uri} is not a curate output (its manifest says job={job!r})")
    if not storage.is_complete(uri):
        raise RebalanceError(f"--curated-output {uri} is not complete (no {storage.SUCCESS_MARKER}): "
                             "let its curate run finish first")
    how = (manifest.get("config") or {}).get("count_identical_texts", "once")
    if how != "once":
        # matched/ keeps an image's identical texts once: the record counts of "every" live only
        # in the source run's per-input state, which rebalancing does not read
        raise RebalanceError(f"--curated-output {uri} counted every text record (count_identical_texts={how!r}); "
                             "matched/ keeps an image's identical texts once, so those counts cannot be recomputed "
                             "from it: rebalance a run made with --count-identical-texts once")
    out = root
    try:
        thresholds = json.loads(storage.read_bytes(out.thresholds))
    except FileNotFoundError:
        raise RebalanceError(f"--curated-output {uri} has no {CurateOutput.THRESHOLDS}") from None
    num_entries = {lang: int(th["entries"]) for lang, th in sorted(thresholds["languages"].items())}
    parts = sorted(p for p in storage.list_files(out.matched) if p.endswith(".parquet")) \
        if storage.exists(out.matched) else []
    names = [p.rsplit("/", 1)[-1] for p in parts]
    if not parts or names != [grouping.part_name(k) for k in range(len(parts))]:
        raise RebalanceError(f"--curated-output {uri}: {out.matched} does not hold part-00000.parquet ... "
                             f"part-{len(parts) - 1:05d}.parquet (found {len(parts)} Parquet files)")
    buckets = (manifest.get("exchange") or {}).get("buckets")
    if buckets is not None and int(buckets) != len(parts):
        raise RebalanceError(f"--curated-output {uri}: its manifest names {buckets} uuid buckets, matched/ "
                             f"holds {len(parts)} parts")
    return Source(uri=uri, root=root.root, manifest=manifest, manifest_sha256=hashlib.sha256(data).hexdigest(),
                  matched_parts=tuple(parts), num_entries=num_entries)


# --- the valid uuids -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A bounded share of the valid uuids' files: Parquet row groups [start, stop) or text bytes [start, stop)."""

    uri: str
    kind: str  # "parquet" | "text"
    start: int
    stop: int


@dataclass
class ValidUuids:
    """Where the valid uuids come from, as the manifest records it, and their pieces."""

    kind: str  # "downloaded" | "uuids"
    spec: str
    files: list[str]
    pieces: list[Piece] = field(default_factory=list)
    download: dict | None = None  # a download output's record: source, curate_run, rows

    def describe(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "files": len(self.files), "pieces": len(self.pieces),
                "download": self.download}


def downloaded_uuids(directory: str) -> ValidUuids:
    """The image shards of a finished download output (their `uuid` column: the images obtained;
    failures, exact duplicates and evaluation copies are not in them)."""
    if not storage.exists(directory):
        raise RebalanceError(f"--downloaded {directory} does not exist")
    if not ImagesOutput.LAYOUT.owns(directory):
        raise RebalanceError(f"--downloaded {directory} is not a download output (no {ImagesOutput.MANIFEST} or "
                             f"{ImagesOutput.PLAN} of the download job); for a list of uuids use --uuids")
    manifest_uri = storage.join(directory, ImagesOutput.MANIFEST)
    if not storage.is_complete(directory) or not storage.exists(manifest_uri):
        raise RebalanceError(f"--downloaded {directory} is not complete (no {ImagesOutput.MANIFEST} and "
                             f"{storage.SUCCESS_MARKER}): finish or resume the download, or name the shards "
                             f"written so far with --uuids '{storage.join(directory, 'shard-*.parquet')}'")
    doc = json.loads(storage.read_bytes(manifest_uri))
    source = doc.get("source")
    if source == "curated":
        raise RebalanceError(f"--downloaded {directory} holds images of a curated/ sample, which the entry "
                             "probabilities have already thinned: rebalance over a download of matched/")
    files = [p for p in storage.expand(directory, suffix=".parquet")
             if p.rsplit("/", 1)[-1].startswith("shard-")]
    if not files:
        raise RebalanceError(f"--downloaded {directory} holds no image shards (shard-*.parquet)")
    record = {"source": source, "curate_run": doc.get("curate_run"), "rows": doc.get("rows")}
    return ValidUuids("downloaded", directory, files, [Piece(f, "parquet", 0, -1) for f in files], record)


def listed_uuids(spec: str) -> ValidUuids:
    """uuid files: a file, directory, glob or @FILE (storage.expand); `*.parquet` with a `uuid`
    column, anything else text with one uuid a line. Checks what a driver can check cheaply
    (columns, row counts, the head of the first text file)."""
    try:
        files = storage.expand(spec)
    except FileNotFoundError as e:
        raise RebalanceError(f"--uuids {spec}: {e}") from None
    pieces: list[Piece] = []
    rows = 0
    for f in files:
        if f.endswith(".parquet"):
            with storage.open_read(f) as fh:
                pf = pq.ParquetFile(fh)
                if "uuid" not in pf.schema_arrow.names:
                    raise RebalanceError(f"--uuids {f} has no `uuid` column (columns: "
                                         f"{', '.join(pf.schema_arrow.names[:6])})")
                rows += pf.metadata.num_rows
                pieces += parquet_pieces(f, [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
        else:
            with storage.open_read(f) as fh:
                size = fh.seek(0, 2)
                fh.seek(0)
                head = fh.read(min(size, HEAD_BYTES))
            if size == 0:
                continue
            check_text_head(f, head, complete=size <= HEAD_BYTES)
            rows += 1
            pieces += [Piece(f, "text", s, min(s + TEXT_PIECE_BYTES, size)) for s in range(0, size, TEXT_PIECE_BYTES)]
    if rows == 0:
        raise RebalanceError(f"--uuids {spec} lists no uuid (the files are empty)")
    return ValidUuids("uuids", spec, files, pieces)


def parquet_pieces(uri: str, row_group_rows: Sequence[int]) -> list[Piece]:
    """Consecutive row groups of a Parquet file, about PARQUET_PIECE_ROWS rows a piece."""
    pieces, start, rows = [], 0, 0
    for i, n in enumerate(row_group_rows):
        if rows and rows + n > PARQUET_PIECE_ROWS:
            pieces.append(Piece(uri, "parquet", start, i))
            start, rows = i, 0
        rows += n
    if rows or not pieces:
        pieces.append(Piece(uri, "parquet", start, len(row_group_rows)))
    return pieces


def check_text_head(uri: str, head: bytes, complete: bool) -> None:
    """RebalanceError unless the head of a text uuid list is uuid lines (a `uuid` header line and
    blank lines allowed); `complete`: the head is the whole file (else its last line may be cut)."""
    lines = head.split(b"\n")
    if not complete:
        lines = lines[:-1]
    found = 0
    for i, raw in enumerate(lines):
        line = raw.strip().decode("utf-8", "replace")
        if not line or (i == 0 and line == "uuid"):
            continue
        if not UUID_RE.match(line):
            raise RebalanceError(f"--uuids {uri} line {i + 1} is not an image uuid (24 hex digits, as in matched/): "
                                 f"{line[:40]!r}")
        found += 1
    if complete and not found:
        raise RebalanceError(f"--uuids {uri} lists no uuid")


def read_piece(piece: Piece) -> pa.Array:
    """The uuids of a piece (string array; text: stripped lines, blank and `uuid` header lines skipped)."""
    if piece.kind == "parquet":
        with storage.open_read(piece.uri) as fh:
            pf = pq.ParquetFile(fh)
            groups = list(range(pf.num_row_groups)) if piece.stop < 0 else list(range(piece.start, piece.stop))
            t = pf.read_row_groups(groups, columns=["uuid"]) if groups else UUIDS.empty_table()
        return t.column("uuid").combine_chunks().cast(pa.string()).drop_null()
    with storage.open_read(piece.uri) as fh:
        if piece.start > 0:
            fh.seek(piece.start - 1)
            fh.readline()  # the line that starts before the piece belongs to the one before
        pos = fh.tell()
        data = fh.read(max(0, piece.stop - pos)) if pos < piece.stop else b""
        if data and not data.endswith(b"\n"):
            data += fh.readline()  # the piece's last line, wherever it ends
    lines = pa.array(data.split(b"\n"), pa.binary()).cast(pa.string())
    lines = pc.utf8_trim_whitespace(lines)
    return lines.filter(pc.and_(pc.not_equal(lines, ""), pc.not_equal(lines, "uuid")))


def sorted_unique(uuids: pa.Array) -> pa.Array:
    if len(uuids) == 0:
        return pa.array([], pa.string())
    s = uuids.take(pa.array(grouping.uuid_order(uuids), pa.int64()))
    keep = np.concatenate([[True], ~grouping._adjacent_equal(s)])
    return s.filter(pa.array(keep)) if not keep.all() else s


def exchange_uuids(pieces: Sequence[Piece], buckets: int, path: str) -> dict:
    """One exchange task: the pieces' uuids, sorted and unique, as an Arrow IPC file of exactly
    `buckets` record batches (batch k: matched/part-k's uuid range); returns a result
    (grouping.new_result) with the uuids read."""
    cpu0 = time.process_time()
    arrays = [read_piece(p) for p in pieces]
    read = sum(len(a) for a in arrays)
    uuids = sorted_unique(pa.concat_arrays(arrays) if arrays else pa.array([], pa.string()))
    offsets = grouping.bucket_offsets(uuids, buckets)
    options = pa.ipc.IpcWriteOptions(use_threads=False)
    with grouping._ipc_sink(path) as sink, pa.ipc.new_file(sink, UUIDS, options=options) as writer:
        for k in range(buckets):
            lo, hi = int(offsets[k]), int(offsets[k + 1])
            writer.write_batch(pa.RecordBatch.from_arrays([uuids.slice(lo, hi - lo)], schema=UUIDS))
    return grouping.new_result(uuids_read=read, opens_uuids=len(pieces),
                               cpu_seconds_uuids=time.process_time() - cpu0)


def bucket_uuids(runs: Sequence[str], k: int) -> pa.Array:
    """The valid uuids of bucket k: batch k of every exchange run, sorted and unique."""
    t = grouping.read_run_batches(runs, k, UUIDS)
    chunks = t.column("uuid").chunks
    if not chunks:
        return pa.array([], pa.string())
    return chunks[0] if len(chunks) == 1 else sorted_unique(pa.concat_arrays(chunks))


def run_chunks(pieces: Sequence[Piece], runs: int) -> list[list[Piece]]:
    """`runs` contiguous chunks of the pieces (the exchange tasks' inputs)."""
    return [list(pieces[m * len(pieces) // runs:(m + 1) * len(pieces) // runs]) for m in range(runs)]


def exchange_run_count(pieces: int, default_parallelism: int) -> int:
    """Exchange tasks: twice the parallelism, enough that none holds over RUN_MAX_PIECES pieces,
    at most one per piece."""
    return max(1, min(pieces, max(2 * default_parallelism, math.ceil(pieces / RUN_MAX_PIECES))))


# --- per bucket: filter, count, pick ---------------------------------------------------------------


def filter_valid(matched: pa.Table, valid: pa.Array) -> tuple[pa.Table, np.ndarray]:
    """(the rows of matched/ whose uuid is valid, the keep mask)."""
    keep = pc.is_in(matched.column("uuid"), value_set=valid).to_numpy(zero_copy_only=False) \
        if matched.num_rows else np.zeros(0, dtype=bool)
    return (matched if keep.all() else matched.filter(pa.array(keep))), keep


def lang_image_totals(matched: pa.Table, keep: np.ndarray) -> dict[str, int]:
    """Per language: images (with a text in it) kept and dropped, and texts dropped, as
    `kept_images.<lang>`, `dropped_images.<lang>`, `dropped_texts.<lang>` totals."""
    out: dict[str, int] = {}
    if matched.num_rows == 0:
        return out
    texts = matched.column("texts").combine_chunks()
    lengths = np.diff(texts.offsets.to_numpy())
    enc = pc.dictionary_encode(texts.values.field("lang"))
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = enc.dictionary.to_pylist()
    rows = np.repeat(np.arange(matched.num_rows, dtype=np.int64), lengths)
    pairs = np.unique(rows * len(names) + codes)  # (image, language) once
    pair_rows, pair_langs = pairs // len(names), pairs % len(names)
    kept_pairs = keep[pair_rows]
    kept = np.bincount(pair_langs[kept_pairs], minlength=len(names))
    dropped = np.bincount(pair_langs[~kept_pairs], minlength=len(names))
    dropped_texts = np.bincount(codes[~keep[rows]], minlength=len(names))
    for i, lang in enumerate(names):
        out[KEPT + lang] = int(kept[i])
        out[DROPPED + lang] = int(dropped[i])
        out[DROPPED_TEXTS + lang] = int(dropped_texts[i])
    return out


def rebalance_bucket(k: int, matched_part: str, runs: Sequence[str], picked_dir: str, seed: int) -> dict:
    """matched/part-k over bucket k's valid uuids -> the picks of the kept images (picked_path,
    what grouping.curate_part samples) and a result with their entry counts and texts per
    language, the images kept/dropped per language and the valid uuids not in matched/."""
    cpu0 = time.process_time()
    valid = bucket_uuids(runs, k)
    matched = storage.read_table(matched_part, schema=MATCHED)
    kept, keep = filter_valid(matched, valid)
    picked = [sampling.pick_texts(b, seed, 0) for b in kept.combine_chunks().to_batches()]
    grouping.write_arrow(pa.Table.from_batches(picked, schema=CURATED), grouping.picked_path(picked_dir, k))
    flat = pc.list_flatten(kept.column("texts").combine_chunks()) if kept.num_rows else None
    result = grouping.entry_counts(flat.field("lang") if flat is not None else pa.array([], pa.string()),
                                   flat.field("entry_ids") if flat is not None else pa.array([], pa.list_(pa.int32())))
    result["totals"] = {"images_in": matched.num_rows, "images": kept.num_rows, "valid_uuids": len(valid),
                        "valid_not_matched": len(valid) - kept.num_rows, "opens_bucket": len(runs) + 1,
                        **lang_image_totals(matched, keep), "cpu_seconds_bucket": time.process_time() - cpu0}
    return result


def by_language(totals: dict) -> dict[str, dict[str, int]]:
    """{lang: {"images_kept", "images_dropped", "texts_dropped"}} from merged bucket totals."""
    out: dict[str, dict[str, int]] = {}
    for prefix, key in ((KEPT, "images_kept"), (DROPPED, "images_dropped"), (DROPPED_TEXTS, "texts_dropped")):
        for name, n in totals.items():
            if name.startswith(prefix):
                out.setdefault(name[len(prefix):], {"images_kept": 0, "images_dropped": 0, "texts_dropped": 0})[key] = int(n)
    return dict(sorted(out.items()))
