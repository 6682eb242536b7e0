"""The image shards of a download run: layout, one shard's download, the run-wide dedup pass.

Layout of an images directory (local path or s3://, everything through curation.storage, every
file written atomically):
    shard-XXXXX.parquet          schema curation.schemas.IMAGES, rows sorted by uuid
    _stats/shard-XXXXX.json      attempted, succeeded, failures by reason; written last = shard done
    _failed/shard-XXXXX.parquet  uuid, url, reason, detail of each failed URL (for --retry-failed)
    _dedup/duplicates.parquet    images dropped as exact duplicates (same sha256) of a smaller uuid
    _phash/shard-XXXXX.parquet   uuid, phash of every image of the shard, same rows and order (PHASHES)
    _dedup/near_duplicates.parquet  the images of every near-duplicate group of the run (NEAR_DUPS)
    _decontam/eval_images.parquet   the evaluation images checked against: name, phash (EVAL_IMAGES)
    _PLAN.json                   number of shards, fixed by the first run (resume keeps it)
    _MANIFEST.json, then _SUCCESS
Side files live in `_`-prefixed subdirectories, so pyarrow and Spark read the directory, and a
`<dir>/*.parquet` glob (training.data) lists, the image shards alone.

Every uuid goes to shard blake2b(uuid) % num_shards (num_shards = ceil(rows / shard_size) on the
first run), so the shards are a pure function of the input, whatever the Spark partitioning.
Nothing here imports Spark: jobs/download.py runs `input_summary`, `input_records` and
`run_shard` inside Spark tasks. The input is read here with pyarrow through curation.storage,
not by Spark SQL: an s3:// input then needs no Hadoop S3 connector on the cluster, and the rows
go straight to the (uuid, url, texts) records the shards are made of.

Perceptual hashes (config.phash) are computed from each image's resized pixels as it is
processed (curation.images) and kept beside the shard, not in it: the image shards keep the
IMAGES schema that training reads, and the whole run's hashes (8 bytes an image) are read
without touching an image byte. phash is int64 holding the 64 bits of the unsigned hash
(`.view(numpy.uint64)` turns it back; curation.image_hash.hamming takes either).

Near-duplicate groups: after the exact dedup pass, `phash_band_chunks` turns each shard's
hashes into pigeonhole band rows (curation.image_hash.band_rows, d + 1 per image) split into
buckets of band keys; `bucket_components` finds each bucket's close pairs (exact Hamming check)
and reduces them to (image, component root) edges; the components of all buckets' edges are the
groups (components of components are components, so the bucketing and the partitioning change
nothing). Images are keyed by (shard << 32 | row) while grouping; a group is named by its
smallest member uuid. Only images in a group of two or more are listed (an image absent from
NEAR_DUPS is its own group); nothing is dropped: curators decide (training can filter by group).

Decontamination (config.eval_images): the evaluation images are hashed once, through the same
process_image as the downloads (same resize, so the same hash for the same picture), and every
image of a shard is checked before the shard is written (EvalImages.matches: band-key lookup in
a curation.decontam.DecontamIndex, then the exact distance). A hit is not stored: it is a
failure with reason `eval_image` (curation.decontam's name for it) and the matched evaluation
image and distance as detail in _failed/, never retried (the bytes would match again).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import image_hash, near_dup, storage
from curation.decontam import DecontamIndex
from curation.download_config import DownloadConfig
from curation.fetch import Fetcher, fetch_many
from curation.images import process_image, resolve_resizer
from curation.layout import ImagesOutput
from curation.runs import read_json, write_json
from curation.schemas import IMAGES

# the names of the layout (curation.layout.ImagesOutput is their one home)
PLAN, MANIFEST, DUPLICATES = ImagesOutput.PLAN, ImagesOutput.MANIFEST, ImagesOutput.DUPLICATES
STATS_DIR, FAILED_DIR = ImagesOutput.STATS_DIR, ImagesOutput.FAILED_DIR
shard_name, shard_uri = ImagesOutput.shard_name, ImagesOutput.shard_uri
stats_uri, failed_uri = ImagesOutput.stats_uri, ImagesOutput.failed_uri
FAILED = pa.schema([("uuid", pa.string()), ("url", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
DUPS = pa.schema([("uuid", pa.string()), ("sha256", pa.string()), ("kept_uuid", pa.string()), ("shard", pa.int32())])
NOT_RETRIED = frozenset({"duplicate", "duplicate_uuid"})
# listed in _failed/ (with what they matched) but never fetched again by --retry-failed: the same
# bytes would be rejected again (naming a reason in --retry-reasons still retries it)
FINAL_REASONS = frozenset({"eval_image"})
EVAL_IMAGE = "eval_image"

# side tables of the perceptual hashes (see the module docstring); their names are
# curation.layout.ImagesOutput's, their schemas these
PHASH_DIR, NEAR_DUPLICATES, EVAL_IMAGES = ImagesOutput.PHASH_DIR, ImagesOutput.NEAR_DUPLICATES, ImagesOutput.EVAL_IMAGES
PHASHES = pa.schema([("uuid", pa.string()), ("phash", pa.int64())])
# one row per image of a near-duplicate group of 2+ images, sorted by group then uuid: `group` is
# the smallest member uuid, `distance` the member's Hamming distance to that image
NEAR_DUPS = pa.schema([("uuid", pa.string()), ("group", pa.string()), ("group_size", pa.int32()),
                       ("distance", pa.int32()), ("phash", pa.int64()), ("shard", pa.int32())])
# the evaluation images of a decontaminated run: path under the eval folder, pHash (null: unreadable,
# `reason` says why)
EVAL_IMAGES_SCHEMA = pa.schema([("name", pa.string()), ("phash", pa.int64()), ("reason", pa.string())])
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


phash_uri = ImagesOutput.phash_uri


class InjectedCrash(RuntimeError):
    """Raised by the `crash_after_shard` testing hook."""


# --- sharding and names ------------------------------------------------------------------------


def shard_of(uuid: str, num_shards: int) -> int:
    """Stable shard of a uuid: blake2b, independent of Spark partitioning and Python's hash seed."""
    h = hashlib.blake2b(uuid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") % num_shards


# --- Parquet I/O (through curation.storage, every file atomic) --------------------------------------


def write_table(uri: str, table: pa.Table, row_group_size: int = 1000) -> int:
    """A shard-side file as the layout writes them: small row groups, zstd (storage.write_table)."""
    return storage.write_table(table, uri, row_group_size=row_group_size,
                               compression="zstd" if table.num_rows else None)


def read_table(uri: str, columns=None) -> pa.Table:
    return storage.read_table(uri, columns=columns)


# --- records: one input row -> (uuid, url, texts) ---------------------------------------------------


def curated_texts(text, lang, entry_ids) -> list[dict]:
    """The one MATCHED_TEXT struct of a curated row (curated/ keeps only the sampled text)."""
    return [{"text": text, "source": None, "page_url": None, "lid": None, "lid_prob": None, "lang": lang,
             "entry_ids": list(entry_ids) if entry_ids is not None else []}]


INPUT_COLUMNS = {"curated": ("uuid", "url", "text", "lang", "entry_ids"), "matched": ("uuid", "url", "texts")}
READ_BATCH_ROWS = 10_000


def input_kind(columns, requested: str = "auto") -> str:
    """`curated` or `matched`: what an input table with these columns is (or `requested`)."""
    if requested != "auto":
        return requested
    if "texts" in columns:
        return "matched"
    if {"text", "lang", "entry_ids"} <= set(columns):
        return "curated"
    raise ValueError(f"input is neither curated/ nor matched/: columns {list(columns)}")


def input_summary(uri: str) -> dict:
    """Columns, rows and rows without a uuid of one input Parquet file, from its footer when it can.

    Null counts come from the row groups' statistics (every writer we know records them), so an
    s3:// input is summarised with a few range reads; a row group without them is read.
    """
    with storage.open_read(uri) as f:
        pf = pq.ParquetFile(f)
        columns = pf.schema_arrow.names
        rows = pf.metadata.num_rows
        if "uuid" not in columns:
            return {"uri": uri, "columns": columns, "rows": rows, "no_uuid": rows}
        col = pf.schema_arrow.get_field_index("uuid")
        no_uuid = 0
        for i in range(pf.num_row_groups):
            st = pf.metadata.row_group(i).column(col).statistics
            if st is not None and st.has_null_count:
                no_uuid += st.null_count
            else:
                no_uuid += pf.read_row_group(i, columns=["uuid"]).column(0).null_count
    return {"uri": uri, "columns": columns, "rows": rows, "no_uuid": no_uuid}


def input_records(uri: str, kind: str) -> Iterator[tuple[str, str, list[dict]]]:
    """The (uuid, url, texts) records of one input Parquet file, batch by batch; rows without a uuid are skipped
    (the job counts them as `missing_uuid` from `input_summary`)."""
    with storage.open_read(uri) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_BATCH_ROWS, columns=list(INPUT_COLUMNS[kind])):
            for row in batch.to_pylist():
                if row["uuid"] is not None:
                    yield row_to_record(row, kind)


def row_to_record(row, kind: str) -> tuple[str, str, list[dict]]:
    if kind == "curated":
        return row["uuid"], row["url"], curated_texts(row["text"], row["lang"], row["entry_ids"])
    texts = []
    for t in row["texts"] or []:
        d = t.asDict() if hasattr(t, "asDict") else dict(t)
        d["entry_ids"] = list(d.get("entry_ids") or [])
        texts.append(d)
    return row["uuid"], row["url"], texts


# --- one shard ------------------------------------------------------------------------------------


def download_records(records, config: DownloadConfig, fetcher: Fetcher | None = None,
                     on_image: Callable[[bool], None] | None = None, eval_images: EvalImages | None = None):
    """(image rows sorted by uuid, failures [(uuid, url, reason, detail)], info) for (uuid, url, texts) records.

    Every record ends as a row or a failure; a repeated uuid is fetched once (`duplicate_uuid`).
    `on_image(ok)` is called once per record as it ends (the job's per-image progress). With
    config.phash each row has a `phash` (unsigned int); `eval_images` rejects the rows that copy
    an evaluation image (`eval_image`, checked once for the whole batch).
    """
    on_image = on_image or (lambda _ok: None)
    own = fetcher is None
    fetcher = fetcher or Fetcher(config)
    resizer = resolve_resizer(config.resizer)
    process = functools.partial(process_image, image_size=config.image_size, jpeg_quality=config.jpeg_quality,
                                max_pixels=config.max_image_pixels, min_side=config.min_image_side,
                                resample=config.resample, resizer=resizer, phash=config.phash)
    by_uuid: dict[str, tuple[str, list]] = {}
    failures = []
    for uuid, url, texts in sorted(records, key=lambda r: (r[0], r[1] or "")):
        if uuid in by_uuid:
            failures.append((uuid, url, "duplicate_uuid", None))
            on_image(False)
        else:
            by_uuid[uuid] = (url, texts)
    rows = []
    info = Counter()
    info["resizer"] = resizer  # not a count: which library downscaled (recorded in the shard stats)
    try:
        items = [(u, url) for u, (url, _) in by_uuid.items() if url]
        for u, (url, _) in by_uuid.items():
            if not url:
                failures.append((u, url, "bad_url", "no url"))
                on_image(False)
        for uuid, res, img, reason in fetch_many(fetcher, items, process, threads=config.threads,
                                                     process_concurrency=config.decode_concurrency):
            info["fetch_attempts"] += res.attempts
            if res.body is not None:
                info["bytes_downloaded"] += len(res.body)
            url, texts = by_uuid[uuid]
            on_image(reason is None)
            if reason is not None:
                failures.append((uuid, url, reason, res.detail))
                continue
            rows.append({"uuid": uuid, "url": url, "image": img.data, "width": img.width, "height": img.height,
                         "original_size": img.original_size, "sha256": img.sha256, "texts": texts,
                         "phash": img.phash})
    finally:
        if own:
            fetcher.close()
    if eval_images is not None and rows:
        hits = eval_images.matches([r["phash"] for r in rows])
        for i, name, distance in hits:
            r = rows[i]
            failures.append((r["uuid"], r["url"], EVAL_IMAGE, f"eval image {name} at distance {distance}"))
        if hits:
            drop = {i for i, _n, _d in hits}
            rows = [r for i, r in enumerate(rows) if i not in drop]
    rows.sort(key=lambda r: r["uuid"])
    failures.sort(key=lambda f: (f[0], f[2]))
    return rows, failures, info


def _images_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=IMAGES)


def _phash_table(uuids: list[str], hashes: dict) -> pa.Table:
    """PHASHES rows for `uuids` (a shard's, in its order); a uuid without a hash gets null."""
    values = [hashes.get(u) for u in uuids]
    present = [v for v in values if v is not None]
    signed = iter(image_hash.as_int64(present).tolist()) if present else iter(())
    col = [next(signed) if v is not None else None for v in values]
    return pa.table([pa.array(uuids, pa.string()), pa.array(col, pa.int64())], schema=PHASHES)


def _read_phashes(out: str, shard: int) -> dict:
    """uuid -> phash (int64 bits) of a shard's side table; empty when it has none (phash off)."""
    uri = phash_uri(out, shard)
    if not storage.exists(uri):
        return {}
    t = read_table(uri)
    return {u: h for u, h in zip(t.column("uuid").to_pylist(), t.column("phash").to_pylist(), strict=True)
            if h is not None}


def _failed_table(failures) -> pa.Table:
    keep = [f for f in failures if f[2] not in NOT_RETRIED]
    cols = list(zip(*keep, strict=True)) if keep else [[], [], [], []]
    return pa.table([pa.array(c, pa.string()) for c in cols], schema=FAILED)


def refusal_kind(detail: str | None) -> str:
    """What a `forbidden_address` target was (loopback, private, link-local, ...), from the failure's
    detail `host -> ip (kind; ...)` written by curation.fetch."""
    if not detail or "(" not in detail:
        return "unknown"
    return detail.rsplit("(", 1)[1].split(")")[0].split(";")[0].strip() or "unknown"


def run_shard(out: str, shard: int, records, config: DownloadConfig, retry: bool = False,
              on_image: Callable[[bool], None] | None = None, eval_images: EvalImages | None = None) -> dict:
    """Download one shard and publish its files: Parquet, pHashes, failed list, then stats (= done).

    With `retry`, `records` are the shard's failed ones: new images are merged into the
    existing Parquet by uuid (idempotent if interrupted and rerun). `on_image` and
    `eval_images` as in download_records.
    """
    t0 = time.monotonic()
    rows, failures, info = download_records(records, config, on_image=on_image, eval_images=eval_images)
    hashes = {r["uuid"]: r["phash"] for r in rows if r.get("phash") is not None}
    table = _images_table(rows)
    counts = Counter(f[2] for f in failures)
    attempted = len(records)
    extra = {}
    if retry:
        old = read_table(shard_uri(out, shard))
        old_stats = read_json(stats_uri(out, shard))
        present = set(old.column("uuid").to_pylist())
        new = table.filter(pa.array([u not in present for u in table.column("uuid").to_pylist()], pa.bool_()))
        table = pa.concat_tables([old, new]).sort_by("uuid")
        now_ok = set(table.column("uuid").to_pylist())
        old_failed = read_table(failed_uri(out, shard)).to_pylist()
        retried = {r[0] for r in records}
        still = {f[0]: f for f in failures if f[2] not in NOT_RETRIED}
        merged = [tuple(r.values()) for r in old_failed if r["uuid"] not in retried and r["uuid"] not in now_ok]
        merged += [f for u, f in still.items() if u not in now_ok]
        failures = sorted(merged, key=lambda f: (f[0], f[2]))
        counts = Counter(f[2] for f in failures)
        for reason in NOT_RETRIED:
            if old_stats["failures"].get(reason):
                counts[reason] = old_stats["failures"][reason]
        attempted = old_stats["attempted"]
        hashes = {**_read_phashes(out, shard), **hashes}
        extra = {"retried": len(records), "recovered": len(new), "runs": old_stats.get("runs", 1) + 1}
    # the evaluation set every image of the shard was checked against (a retry checks only its own)
    checked = eval_images.fingerprint if eval_images is not None else None
    if retry and read_json(stats_uri(out, shard)).get("eval_images") != checked:
        checked = None
    bytes_written = write_table(shard_uri(out, shard), table, config.row_group_size)
    phashed = 0
    if config.phash:
        ptable = _phash_table(table.column("uuid").to_pylist(), hashes)
        phashed = ptable.num_rows - ptable.column("phash").null_count
        write_table(phash_uri(out, shard), ptable, row_group_size=100_000)
    if config.crash_after_shard == shard:
        raise InjectedCrash(f"crash_after_shard hook: shard {shard} written, its stats not")
    write_table(failed_uri(out, shard), _failed_table(failures))
    forbidden = Counter(refusal_kind(f[3]) for f in failures if f[2] == "forbidden_address")
    stats = {
        "shard": shard,
        "attempted": attempted,
        "succeeded": table.num_rows,
        "failures": dict(sorted(counts.items())),
        **({"forbidden_by": dict(sorted(forbidden.items()))} if forbidden else {}),
        "bytes_downloaded": info["bytes_downloaded"],
        "bytes_written": bytes_written,
        "fetch_attempts": info["fetch_attempts"],
        "resizer": info["resizer"],
        **({"phashed": phashed} if config.phash else {}),
        **({"eval_images": checked} if checked else {}),
        "seconds": round(time.monotonic() - t0, 3),
        **extra,
    }
    if stats["succeeded"] + sum(counts.values()) != attempted:
        raise AssertionError(f"shard {shard}: accounting broken: {stats}")
    write_json(stats_uri(out, shard), stats)  # last: its presence means the shard is complete
    return stats


# --- duplicates across the run -------------------------------------------------------------------


def dedup_pass(out: str, num_shards: int, config: DownloadConfig) -> dict:
    """Drop exact duplicate images (same sha256) across all shards, keeping the smallest uuid.

    Idempotent and crash-safe: the list of dropped images is published first, then every shard
    that still holds a dropped uuid is rewritten, then stats are corrected; a rerun redoes only
    what is missing. The smallest uuid of a hash group is never dropped, so later runs (e.g.
    --retry-failed bringing a smaller uuid) only ever add to the list.
    """
    parts = []
    for k in range(num_shards):
        t = read_table(shard_uri(out, k), columns=["uuid", "sha256"])
        parts.append(t.append_column("shard", pa.array([k] * t.num_rows, pa.int32())))
    current = pa.concat_tables(parts) if parts else pa.table({"uuid": [], "sha256": [], "shard": []})
    dups_uri = storage.join(out, DUPLICATES)
    prev = read_table(dups_uri).to_pylist() if storage.exists(dups_uri) else []
    uuids = current.column("uuid").to_pylist()
    shas = current.column("sha256").to_pylist()
    shards = current.column("shard").to_pylist()
    keep: dict[str, str] = {}
    for u, s in zip(uuids, shas, strict=True):
        if s not in keep or u < keep[s]:
            keep[s] = u
    dropped = {d["uuid"]: d for d in prev}
    for u, s, k in zip(uuids, shas, shards, strict=True):
        if keep[s] != u:
            dropped[u] = {"uuid": u, "sha256": s, "kept_uuid": keep[s], "shard": k}
    for d in dropped.values():
        d["kept_uuid"] = keep.get(d["sha256"], d["kept_uuid"])
    doc = sorted(dropped.values(), key=lambda d: d["uuid"])
    if doc != prev:
        write_table(dups_uri, pa.Table.from_pylist(doc, schema=DUPS))
    per_shard = Counter(d["shard"] for d in doc)
    to_drop: dict[int, set] = {}
    for u, k in zip(uuids, shards, strict=True):
        if u in dropped:
            to_drop.setdefault(k, set()).add(u)
    for k, drop in sorted(to_drop.items()):
        # the pHash table first: a crash before the shard is rewritten leaves the shard holding a
        # dropped uuid, so the next run redoes both (filtering is idempotent)
        if storage.exists(phash_uri(out, k)):
            p = read_table(phash_uri(out, k))
            keep_p = pa.array([u not in drop for u in p.column("uuid").to_pylist()], pa.bool_())
            write_table(phash_uri(out, k), p.filter(keep_p), row_group_size=100_000)
        t = read_table(shard_uri(out, k))
        mask = pa.array([u not in drop for u in t.column("uuid").to_pylist()], pa.bool_())
        write_table(shard_uri(out, k), t.filter(mask), config.row_group_size)
    for k in range(num_shards):
        st = read_json(stats_uri(out, k))
        want = per_shard.get(k, 0)
        if st["failures"].get("duplicate", 0) != want or k in to_drop:
            with storage.open_read(shard_uri(out, k)) as f:
                rows = pq.read_metadata(f).num_rows
            st["failures"] = {r: c for r, c in st["failures"].items() if r != "duplicate"}
            if want:
                st["failures"]["duplicate"] = want
            st["failures"] = dict(sorted(st["failures"].items()))
            st["succeeded"] = rows
            if "phashed" in st and storage.exists(phash_uri(out, k)):
                p = read_table(phash_uri(out, k), columns=["phash"])
                st["phashed"] = p.num_rows - p.column("phash").null_count
            if rows + sum(st["failures"].values()) != st["attempted"]:
                raise AssertionError(f"shard {k}: accounting broken after dedup: {st}")
            write_json(stats_uri(out, k), st)
    return {"duplicates": len(doc), "shards_rewritten": len(to_drop)}


# --- near-duplicate images across the run -----------------------------------------------------------

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_ROW_BITS = 32  # an image's key while grouping: shard << 32 | its row in the shard


def _bucket_of(band: np.ndarray, num_buckets: int) -> np.ndarray:
    """The exchange bucket of band keys: Fibonacci-mixed (band index and bits spread evenly)."""
    return ((band.view(np.uint64) * _FIBONACCI) >> np.uint64(32)) % np.uint64(num_buckets)


def phash_band_chunks(shard: int, out: str, max_distance: int, num_buckets: int):
    """Spark task body (flatMap over shards): (bucket, (band_key, key, phash) int64 arrays) chunks of
    one shard's pHash table, one per bucket it reaches; nothing for a shard without a table."""
    uri = phash_uri(out, shard)
    if not storage.exists(uri):
        return []
    col = read_table(uri, columns=["phash"]).column("phash").combine_chunks()
    rows = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return []
    hashes = col.fill_null(0).to_numpy()[rows].astype(np.int64)
    keys = (np.int64(shard) << np.int64(_ROW_BITS)) | rows.astype(np.int64)
    band, member, ph = image_hash.band_rows(keys, hashes, max_distance)
    bucket = _bucket_of(band, num_buckets)
    out_chunks = []
    for b in np.unique(bucket).tolist():
        m = bucket == b
        out_chunks.append((int(b), (band[m], member[m], ph[m])))
    return out_chunks


def bucket_components(chunks, max_distance: int):
    """Spark task body (one bucket's chunks): its close pairs reduced to (node, component root)
    int64 edges: as many as the bucket's grouped images, however many pairs they form."""
    chunks = [c for _b, c in chunks]
    if not chunks:
        return []
    band, member, ph = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
    a, b = image_hash.close_pairs(band, member, ph, max_distance)
    if len(a) == 0:
        return []
    nodes, roots = near_dup.components(a, b)
    keep = nodes != roots
    return [(nodes[keep], roots[keep])]


def merge_components(edges) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots) of the run from every bucket's (node, root) edges."""
    edges = list(edges)
    if not edges:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return near_dup.components(np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges]))


def rows_by_shard(nodes: np.ndarray) -> dict[int, list[int]]:
    """{shard: sorted rows} of grouped images' keys."""
    shards, rows = (nodes >> np.int64(_ROW_BITS)).tolist(), (nodes & np.int64((1 << _ROW_BITS) - 1)).tolist()
    out: dict[int, list[int]] = {}
    for k, r in zip(shards, rows, strict=True):
        out.setdefault(k, []).append(r)
    return {k: sorted(v) for k, v in out.items()}


def shard_members(item, out: str):
    """Spark task body (shard, rows): (key, uuid, phash) of those rows of the shard's pHash table."""
    shard, rows = item
    t = read_table(phash_uri(out, shard)).take(pa.array(rows, pa.int64()))
    keys = [(shard << _ROW_BITS) | r for r in rows]
    return list(zip(keys, t.column("uuid").to_pylist(), t.column("phash").to_pylist(), strict=True))


def near_duplicate_table(nodes: np.ndarray, roots: np.ndarray, members) -> pa.Table:
    """NEAR_DUPS rows from the run's components and their members' (key, uuid, phash)."""
    info = {k: (u, h) for k, u, h in members}
    groups: dict[int, list[int]] = {}
    for n, r in zip(nodes.tolist(), roots.tolist(), strict=True):
        groups.setdefault(r, []).append(n)
    rows = []
    for keys in groups.values():
        uuids = sorted((info[k][0], info[k][1], k >> _ROW_BITS) for k in keys)
        head, head_hash = uuids[0][0], uuids[0][1]
        dist = image_hash.hamming(head_hash, [h for _u, h, _k in uuids]).tolist()
        rows += [{"uuid": u, "group": head, "group_size": len(uuids), "distance": d, "phash": h, "shard": k}
                 for (u, h, k), d in zip(uuids, dist, strict=True)]
    rows.sort(key=lambda r: (r["group"], r["uuid"]))
    return pa.Table.from_pylist(rows, schema=NEAR_DUPS)


def publish_near_duplicates(out: str, num_shards: int, table: pa.Table, max_distance: int,
                            examples: int = 10) -> dict:
    """Write NEAR_DUPLICATES, then each shard's stats `near_duplicates` (its images in a group of
    two or more; rewritten only where it changed); the summary for the manifest."""
    write_table(storage.join(out, NEAR_DUPLICATES), table, row_group_size=100_000)
    per_shard = Counter(table.column("shard").to_pylist())
    hashed = 0
    for k in range(num_shards):
        st = read_json(stats_uri(out, k))
        hashed += st.get("phashed", 0)
        want = per_shard.get(k, 0)
        if st.get("near_duplicates") != want:
            st["near_duplicates"] = want
            write_json(stats_uri(out, k), st)
    sizes = Counter()
    for g, n in zip(table.column("group").to_pylist(), table.column("group_size").to_pylist(), strict=True):
        sizes[g] = n
    largest = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:examples]
    return {"max_distance": max_distance, "images_hashed": hashed, "groups": len(sizes),
            "images_in_groups": table.num_rows,
            "images_beyond_first": table.num_rows - len(sizes),  # what keeping one per group would drop
            "largest_groups": [{"group": g, "size": n} for g, n in largest], "table": NEAR_DUPLICATES}


# --- evaluation images (decontamination) ----------------------------------------------------------


def eval_image_files(folder: str) -> list[str]:
    """The image files under an evaluation folder (recursive, local or s3://), sorted."""
    files = [f for f in storage.list_files(folder) if f.lower().endswith(IMAGE_SUFFIXES)
             and not os.path.basename(f).startswith(".")]
    if not files:
        raise ValueError(f"eval_images: no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files


def hash_eval_files(uris, folder: str, config: DownloadConfig):
    """(name under `folder`, phash int64 or None, reason or None) of evaluation image files, hashed
    exactly as downloads are (process_image with the run's size, filter and resizer)."""
    resizer = resolve_resizer(config.resizer)
    base = folder[len("file://"):] if folder.startswith("file://") else folder
    base = base.rstrip("/") + "/"
    out = []
    for uri in uris:
        name = uri[len(base):] if uri.startswith(base) else os.path.basename(uri)
        try:
            data = storage.read_bytes(uri)
        except OSError as exc:
            out.append((name, None, f"unreadable: {type(exc).__name__}"))
            continue
        img, reason = process_image(data, image_size=config.image_size, jpeg_quality=config.jpeg_quality,
                                    max_pixels=config.max_image_pixels, min_side=1, resample=config.resample,
                                    resizer=resizer, phash=True)
        h = int(image_hash.as_int64(img.phash)) if img is not None else None
        out.append((name, h, reason))
    return out


class EvalImages:
    """The evaluation images a download is checked against: names and pHashes, looked up by band
    keys (a curation.decontam.DecontamIndex of the hashes, rebuilt in each process, not shipped)."""

    def __init__(self, names, phashes, max_distance: int, folder: str = "", unreadable: int = 0):
        order = np.argsort(np.asarray(names, dtype=object), kind="stable") if len(names) else []
        self.names = [names[i] for i in order]
        self.hashes = image_hash.as_int64([phashes[i] for i in order]) if len(names) else np.zeros(0, np.int64)
        self.max_distance = int(max_distance)
        self.folder = folder
        self.unreadable = int(unreadable)
        self._index = None

    @classmethod
    def from_hashed(cls, hashed, max_distance: int, folder: str = "") -> EvalImages:
        """From hash_eval_files rows (unreadable files counted, not indexed)."""
        ok = [(n, h) for n, h, _r in hashed if h is not None]
        return cls([n for n, _h in ok], [h for _n, h in ok], max_distance, folder, len(hashed) - len(ok))

    def table(self, hashed) -> pa.Table:
        rows = sorted(({"name": n, "phash": h, "reason": r} for n, h, r in hashed), key=lambda r: r["name"])
        return pa.Table.from_pylist(rows, schema=EVAL_IMAGES_SCHEMA)

    def __getstate__(self):
        return {**self.__dict__, "_index": None}

    @property
    def fingerprint(self) -> str:
        """What the checks depend on (the distinct hashes and the distance), 16 hex digits: a
        shard's stats record it, so shards checked against another set (or none) can be told."""
        h = hashlib.sha256(np.unique(self.hashes).tobytes())
        h.update(str(self.max_distance).encode())
        return h.hexdigest()[:16]

    def stats(self) -> dict:
        return {"folder": self.folder, "fingerprint": self.fingerprint, "images": len(self.names),
                "unreadable": self.unreadable,
                "distinct_hashes": int(len(np.unique(self.hashes))), "max_distance": self.max_distance,
                "table": EVAL_IMAGES}

    def matches(self, phashes) -> list[tuple[int, str, int]]:
        """(position, nearest eval image, its distance) of each hash within max_distance of an
        evaluation image's (None entries: no hash, never a match)."""
        if len(self.names) == 0:
            return []
        if self._index is None:
            self._index = DecontamIndex(phashes=self.hashes.tolist(), max_distance=self.max_distance)
        hit = self._index.image_matches(list(phashes))
        out = []
        for i in np.flatnonzero(hit).tolist():
            d = image_hash.hamming(phashes[i], self.hashes)
            j = int(np.argmin(d))
            out.append((i, self.names[j], int(d[j])))
        return out


# --- resume state ----------------------------------------------------------------------------------


def completed_shards(out: str, num_shards: int) -> set[int]:
    """Shards whose stats file exists (one listing, not one request per shard)."""
    names = {os.path.basename(u) for u in storage.list_files(storage.join(out, STATS_DIR))}
    return {k for k in range(num_shards) if f"{shard_name(k)}.json" in names}


def load_or_make_plan(out: str, input_uri: str, n_rows: int, config: DownloadConfig) -> dict:
    """The run's plan (`_PLAN.json`): the shard count is fixed by the first run, so resumes agree."""
    uri = storage.join(out, PLAN)
    if storage.exists(uri):
        plan = read_json(uri)
        if plan["input_rows"] != n_rows:
            raise ValueError(
                f"{out} was started on an input of {plan['input_rows']} rows, the input now has {n_rows}: "
                "write to a new output directory (shards are fixed by the first run)")
        return plan
    plan = {"num_shards": max(1, math.ceil(n_rows / config.shard_size)), "input": input_uri, "input_rows": n_rows,
            "shard_size": config.shard_size, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(uri, plan)
    return plan
