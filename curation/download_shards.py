"""The image shards of a download run: layout, one shard's download, the run-wide dedup pass.

Layout of an images directory (local path or s3://, everything through curation.storage, every
file written atomically):
    shard-XXXXX.parquet          schema curation.schemas.IMAGES, rows sorted by uuid
    _stats/shard-XXXXX.json      attempted, succeeded, failures by reason; written last = shard done
    _failed/shard-XXXXX.parquet  uuid, url, reason, detail of each failed URL (for --retry-failed)
    _dedup/duplicates.parquet    images dropped as exact duplicates (same sha256) of a smaller uuid
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
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curation import storage
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
                     on_image: Callable[[bool], None] | None = None):
    """(image rows sorted by uuid, failures [(uuid, url, reason, detail)], info) for (uuid, url, texts) records.

    Every record ends as a row or a failure; a repeated uuid is fetched once (`duplicate_uuid`).
    `on_image(ok)` is called once per record as it ends (the job's per-image progress).
    """
    on_image = on_image or (lambda _ok: None)
    own = fetcher is None
    fetcher = fetcher or Fetcher(config)
    resizer = resolve_resizer(config.resizer)
    process = functools.partial(process_image, image_size=config.image_size, jpeg_quality=config.jpeg_quality,
                                max_pixels=config.max_image_pixels, min_side=config.min_image_side,
                                resample=config.resample, resizer=resizer)
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
                         "original_size": img.original_size, "sha256": img.sha256, "texts": texts})
    finally:
        if own:
            fetcher.close()
    rows.sort(key=lambda r: r["uuid"])
    failures.sort(key=lambda f: (f[0], f[2]))
    return rows, failures, info


def _images_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=IMAGES)


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
              on_image: Callable[[bool], None] | None = None) -> dict:
    """Download one shard and publish its files: Parquet, failed list, then stats (= done).

    With `retry`, `records` are the shard's failed ones: new images are merged into the
    existing Parquet by uuid (idempotent if interrupted and rerun). `on_image` as in
    download_records.
    """
    t0 = time.monotonic()
    rows, failures, info = download_records(records, config, on_image=on_image)
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
        extra = {"retried": len(records), "recovered": len(new), "runs": old_stats.get("runs", 1) + 1}
    bytes_written = write_table(shard_uri(out, shard), table, config.row_group_size)
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
            if rows + sum(st["failures"].values()) != st["attempted"]:
                raise AssertionError(f"shard {k}: accounting broken after dedup: {st}")
            write_json(stats_uri(out, k), st)
    return {"duplicates": len(doc), "shards_rewritten": len(to_drop)}


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
