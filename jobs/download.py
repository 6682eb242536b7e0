#!/usr/bin/env python
"""The download job: curated/ (or matched/) URLs in, Parquet image shards out (DESIGN section 6).

    python jobs/download.py --input out/curated --output out/images
    python jobs/download.py --input out/matched --output out/images-all --retry-failed
    spark-submit jobs/download.py --input s3a://bucket/run/curated --output s3://bucket/run/images

Layout of the output directory (local path or s3://, through curation.storage):
    shard-XXXXX.parquet          schema curation.schemas.IMAGES, rows sorted by uuid
    _stats/shard-XXXXX.json      attempted, succeeded, failures by reason; written last = shard done
    _failed/shard-XXXXX.parquet  uuid, url, reason, detail of each failed URL (for --retry-failed)
    _dedup/duplicates.parquet    images dropped as exact duplicates (same sha256) of a smaller uuid
    _PLAN.json                   number of shards, fixed by the first run (resume keeps it)
    _MANIFEST.json, then _SUCCESS
Side files live in `_`-prefixed subdirectories, so pyarrow and Spark read the directory, and a
`<dir>/*.parquet` glob (training.data) lists, the image shards alone.

How it runs: every uuid goes to shard blake2b(uuid) % num_shards (num_shards = ceil(rows /
shard_size) on the first run); one Spark task per pending shard fetches its URLs with a thread
pool (curation.fetch), decodes/resizes (curation.images) and writes the shard's files, each
atomically. A rerun skips shards whose stats exist; `--retry-failed` re-fetches the failed URLs
of finished shards and merges the new images in. After all shards, a pass over the (uuid,
sha256) columns drops exact duplicate images across the whole run, keeping the smallest uuid;
it is idempotent, so a crash inside it is repaired by the next run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from curation import storage  # noqa: E402
from curation.download_config import DownloadConfig  # noqa: E402
from curation.fetch import Fetcher, fetch_many  # noqa: E402
from curation.images import process_image  # noqa: E402
from curation.schemas import IMAGES  # noqa: E402

PLAN = "_PLAN.json"
MANIFEST = "_MANIFEST.json"
DUPLICATES = "_dedup/duplicates.parquet"
STATS_DIR = "_stats"
FAILED_DIR = "_failed"
FAILED = pa.schema([("uuid", pa.string()), ("url", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
DUPS = pa.schema([("uuid", pa.string()), ("sha256", pa.string()), ("kept_uuid", pa.string()), ("shard", pa.int32())])
NOT_RETRIED = frozenset({"duplicate", "duplicate_uuid"})
CODE_FILES = ("curation/fetch.py", "curation/images.py", "curation/download_config.py", "jobs/download.py")


class InjectedCrash(RuntimeError):
    """Raised by the `crash_after_shard` testing hook."""


# --- sharding and names ------------------------------------------------------------------------


def shard_of(uuid: str, num_shards: int) -> int:
    """Stable shard of a uuid: blake2b, independent of Spark partitioning and Python's hash seed."""
    h = hashlib.blake2b(uuid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") % num_shards


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def shard_uri(out: str, k: int) -> str:
    return storage.join(out, f"{shard_name(k)}.parquet")


def stats_uri(out: str, k: int) -> str:
    return storage.join(out, STATS_DIR, f"{shard_name(k)}.json")


def failed_uri(out: str, k: int) -> str:
    return storage.join(out, FAILED_DIR, f"{shard_name(k)}.parquet")


# --- small I/O helpers (everything through curation.storage, every file atomic) -----------------


def write_json(uri: str, doc: dict) -> None:
    storage.write_bytes(uri, (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri).decode("utf-8"))


def write_table(uri: str, table: pa.Table, row_group_size: int = 1000) -> int:
    with storage.open_write(uri) as f:
        pq.write_table(table, f, row_group_size=row_group_size, compression="zstd" if table.num_rows else None)
        return f.tell()


def read_table(uri: str, columns=None) -> pa.Table:
    with storage.open_read(uri) as f:
        return pq.read_table(f, columns=columns)


# --- records: one input row -> (uuid, url, texts) ---------------------------------------------------


def curated_texts(text, lang, entry_ids) -> list[dict]:
    """The one MATCHED_TEXT struct of a curated row (curated/ keeps only the sampled text)."""
    return [{"text": text, "source": None, "page_url": None, "lid": None, "lid_prob": None, "lang": lang,
             "entry_ids": list(entry_ids) if entry_ids is not None else []}]


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


def download_records(records, config: DownloadConfig, fetcher: Fetcher | None = None):
    """(image rows sorted by uuid, failures [(uuid, url, reason, detail)], info) for (uuid, url, texts) records.

    Every record ends as a row or a failure; a repeated uuid is fetched once (`duplicate_uuid`).
    """
    own = fetcher is None
    fetcher = fetcher or Fetcher(config)
    process = functools.partial(process_image, image_size=config.image_size, jpeg_quality=config.jpeg_quality,
                                max_pixels=config.max_image_pixels, min_side=config.min_image_side,
                                resample=config.resample)
    by_uuid: dict[str, tuple[str, list]] = {}
    failures = []
    for uuid, url, texts in sorted(records, key=lambda r: (r[0], r[1] or "")):
        if uuid in by_uuid:
            failures.append((uuid, url, "duplicate_uuid", None))
        else:
            by_uuid[uuid] = (url, texts)
    rows = []
    info = Counter()
    try:
        items = [(u, url) for u, (url, _) in by_uuid.items() if url]
        failures.extend((u, url, "bad_url", "no url") for u, (url, _) in by_uuid.items() if not url)
        for uuid, res, img, reason in fetch_many(fetcher, items, process, threads=config.threads):
            info["fetch_attempts"] += res.attempts
            if res.body is not None:
                info["bytes_downloaded"] += len(res.body)
            url, texts = by_uuid[uuid]
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


def run_shard(out: str, shard: int, records, config: DownloadConfig, retry: bool = False) -> dict:
    """Download one shard and publish its files: Parquet, failed list, then stats (= done).

    With `retry`, `records` are the shard's failed ones: new images are merged into the
    existing Parquet by uuid (idempotent if interrupted and rerun).
    """
    t0 = time.monotonic()
    rows, failures, info = download_records(records, config)
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
    stats = {
        "shard": shard,
        "attempted": attempted,
        "succeeded": table.num_rows,
        "failures": dict(sorted(counts.items())),
        "bytes_downloaded": info["bytes_downloaded"],
        "bytes_written": bytes_written,
        "fetch_attempts": info["fetch_attempts"],
        "seconds": round(time.monotonic() - t0, 3),
        **extra,
    }
    if stats["succeeded"] + sum(counts.values()) != attempted:
        raise AssertionError(f"shard {shard}: accounting broken: {stats}")
    write_json(stats_uri(out, shard), stats)  # last: its presence means the shard is complete
    return stats


S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
          "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def s3_env_for_tasks(out: str) -> dict:
    """The driver's AWS settings, forwarded to tasks when the output is on S3.

    Python workers keep the environment they were started with; forwarding makes a local[*]
    run (and tests, whose S3 server starts after Spark) behave like the driver. On a cluster
    without these variables on the driver, executors use their own credentials (roles).
    """
    if not storage.is_s3(out):
        return {}
    return {k: os.environ[k] for k in S3_ENV if os.environ.get(k)}


def run_partition(index, pairs, out: str, tasks: list, config: DownloadConfig, accumulators=None, env=None):
    """Spark task body: partition `index` is exactly task `tasks[index]` = (shard, retry)."""
    if env:
        os.environ.update(env)
    shard, retry = tasks[index]
    records = [rec for _k, rec in pairs]
    stats = run_shard(out, shard, records, config, retry=retry)
    if accumulators is not None:
        accumulators[0].add(1)
        accumulators[1].add(stats["succeeded"] if not retry else stats.get("recovered", 0))
        accumulators[2].add(len(records))
    yield json.dumps(stats)


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


# --- the run ----------------------------------------------------------------------------------------


def code_version() -> str:
    h = hashlib.sha256()
    for rel in CODE_FILES:
        p = os.path.join(ROOT, rel)
        if os.path.exists(p):
            with open(p, "rb") as f:
                h.update(rel.encode() + b"\0" + f.read())
    git = ""
    with contextlib.suppress(Exception):
        git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    return f"{git or 'nogit'}+src.{h.hexdigest()[:12]}"


def build_spark(master: str | None = None):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("worldclip-download")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit
    if not submitted:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.config("spark.ui.showConsoleProgress", "false")  # our tqdm bar instead
    if master:
        builder = builder.master(master)
    elif not submitted:
        builder = builder.master("local[*]")
    builder = builder.config("spark.python.worker.reuse", "true")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def input_kind(columns: list[str], requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if "texts" in columns:
        return "matched"
    if {"text", "lang", "entry_ids"} <= set(columns):
        return "curated"
    raise ValueError(f"input is neither curated/ nor matched/: columns {columns}")


def _input_metadata_version(input_uri: str):
    """The metadata version named by the curate run that wrote the input (its _MANIFEST.json), if any."""
    base = input_uri.rstrip("/")
    for uri in (storage.join(base, MANIFEST), storage.join(os.path.dirname(base), MANIFEST)):
        with contextlib.suppress(Exception):
            doc = read_json(uri)
            version = doc.get("metadata_version") or (doc.get("metadata") or {}).get("version")
            if version:
                return version
    return None


def completed_shards(out: str, num_shards: int) -> set[int]:
    """Shards whose stats file exists (one listing, not one request per shard)."""
    names = {os.path.basename(u) for u in storage.list_files(storage.join(out, STATS_DIR))}
    return {k for k in range(num_shards) if f"{shard_name(k)}.json" in names}


def load_or_make_plan(out: str, input_uri: str, n_rows: int, config: DownloadConfig) -> dict:
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


def _run_tasks(rdd, accs, n_tasks: int, progress: bool):
    """collect() in a thread while a tqdm bar follows accumulators (shards done, images ok)."""
    result, error = [], []

    def target():
        try:
            result.extend(rdd.collect())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    th = threading.Thread(target=target, name="download-collect", daemon=True)
    th.start()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_tasks, unit="shard", desc="download", dynamic_ncols=True)
    while th.is_alive():
        th.join(0.5)
        if bar is not None:
            bar.n = accs[0].value
            bar.set_postfix(images=accs[1].value, urls=accs[2].value, refresh=False)
            bar.refresh()
    if bar is not None:
        bar.n = accs[0].value
        bar.close()
    if error:
        raise error[0]
    return [json.loads(s) for s in result]


@contextlib.contextmanager
def output_lock(out: str):
    """One run per local output directory at a time (a cron rerun overlapping a slow run).

    S3 has no lock here: do not start two runs on one s3:// output.
    """
    if storage.is_s3(out):
        yield
        return
    import fcntl

    parent, name = os.path.split(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another download run holds the lock on {out}") from None
        yield


def run(spark, input_uri: str, out: str, config: DownloadConfig, kind: str = "auto", retry_failed: bool = False,
        retry_reasons: frozenset | None = None, progress: bool = True, log=print) -> dict:
    """Run (or resume) the download of `input_uri` into `out`; returns the run report."""
    with output_lock(out):
        return _run(spark, input_uri, out, config, kind, retry_failed, retry_reasons, progress, log)


def _run(spark, input_uri, out, config, kind, retry_failed, retry_reasons, progress, log) -> dict:
    t_start = time.time()
    df = spark.read.parquet(input_uri)
    kind = input_kind(df.columns, kind)
    cols = ["uuid", "url", "text", "lang", "entry_ids"] if kind == "curated" else ["uuid", "url", "texts"]
    df = df.select(*cols)
    from pyspark.sql import functions as F

    counts = df.agg(F.count(F.lit(1)).alias("rows"), F.count("uuid").alias("with_uuid")).first()
    n_rows, no_uuid = int(counts["rows"]), int(counts["rows"] - counts["with_uuid"])
    plan = load_or_make_plan(out, input_uri, n_rows, config)
    num_shards = plan["num_shards"]
    success = storage.join(out, storage.SUCCESS_MARKER)
    if storage.exists(success):  # this run may change the output: readers must not take it as final
        storage.delete_prefix(success)
    done = completed_shards(out, num_shards)
    tasks = [(k, False) for k in range(num_shards) if k not in done]
    failed_uuids: set[str] = set()
    if retry_failed:
        for k in sorted(done):
            t = read_table(failed_uri(out, k))
            reasons = t.column("reason").to_pylist()
            us = [u for u, r in zip(t.column("uuid").to_pylist(), reasons, strict=True)
                  if retry_reasons is None or r in retry_reasons]
            if us:
                failed_uuids.update(us)
                tasks.append((k, True))
    log(f"download: {n_rows:,} {kind} rows in {num_shards} shards; {len(done)} complete, "
        f"{sum(1 for _, r in tasks if not r)} to run" + (f", {len(failed_uuids):,} failed URLs to retry" if retry_failed else ""))
    t_fetch = time.time()
    task_stats = []
    if tasks:
        sc = spark.sparkContext
        index = {k: i for i, (k, _) in enumerate(tasks)}
        fresh = {k for k, r in tasks if not r}
        failed_b = sc.broadcast(failed_uuids) if failed_uuids else None
        accs = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
        n = num_shards

        def keyed(row):
            rec = row_to_record(row, kind)
            return shard_of(rec[0], n), rec

        def wanted(kv):
            k, rec = kv
            if k not in index:
                return False
            return k in fresh or (failed_b is not None and rec[0] in failed_b.value)

        rdd = (df.filter(df.uuid.isNotNull()).rdd.map(keyed).filter(wanted)
               .partitionBy(len(tasks), lambda k: index[k])
               .mapPartitionsWithIndex(functools.partial(run_partition, out=out, tasks=tasks, config=config,
                                                         accumulators=accs, env=s3_env_for_tasks(out))))
        task_stats = _run_tasks(rdd, accs, len(tasks), progress)
        if failed_b is not None:
            failed_b.unpersist()
    t_dedup = time.time()
    dedup = dedup_pass(out, num_shards, config) if config.dedup else {"duplicates": 0, "shards_rewritten": 0}
    stats = [read_json(stats_uri(out, k)) for k in range(num_shards)]
    failures = Counter()
    for s in stats:
        failures.update(s["failures"])
    if no_uuid:
        failures["missing_uuid"] += no_uuid
    attempted = sum(s["attempted"] for s in stats)
    succeeded = sum(s["succeeded"] for s in stats)
    t_end = time.time()
    report = {
        "job": "download",
        "input": input_uri,
        "input_kind": kind,
        "output": out,
        "input_rows": n_rows,
        "attempted": attempted,
        "succeeded": succeeded,
        "failed": sum(failures.values()),
        "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
        "accounting_ok": n_rows == succeeded + sum(failures.values()),
        "shards": num_shards,
        "shards_run": sum(1 for _, r in tasks if not r),
        "shards_retried": sum(1 for _, r in tasks if r),
        "retried_urls": len(failed_uuids),
        "duplicates": dedup["duplicates"],
        "bytes_downloaded_this_run": sum(s["bytes_downloaded"] for s in task_stats),
        "bytes_written": sum(s["bytes_written"] for s in stats),
        "images_per_s_this_run": round(sum(s["succeeded"] if not s.get("retried") else s.get("recovered", 0)
                                           for s in task_stats) / max(t_dedup - t_fetch, 1e-9), 2),
        "timings_s": {"plan": round(t_fetch - t_start, 2), "fetch": round(t_dedup - t_fetch, 2),
                      "dedup_and_report": round(t_end - t_dedup, 2), "total": round(t_end - t_start, 2)},
    }
    if not report["accounting_ok"]:
        raise AssertionError(f"download accounting broken: {n_rows} inputs != {succeeded} + failures {dict(failures)}")
    manifest = {
        **report,
        "config": config.to_dict(),
        "plan": plan,
        "metadata_version": _input_metadata_version(input_uri),
        "code_version": code_version(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "layout": {"images": "shard-XXXXX.parquet", "stats": f"{STATS_DIR}/shard-XXXXX.json",
                   "failed": f"{FAILED_DIR}/shard-XXXXX.parquet", "duplicates": DUPLICATES},
    }
    write_json(storage.join(out, MANIFEST), manifest)
    storage.write_bytes(success, b"")
    return report


def print_summary(report: dict, log=print) -> None:
    r = report
    log("")
    log(f"download done in {r['timings_s']['total']:.1f}s: {r['input_rows']:,} URLs -> {r['succeeded']:,} images, "
        f"{r['failed']:,} failed ({r['shards']} shards, {r['shards_run']} run now, {r['shards_retried']} retried; "
        f"{r['images_per_s_this_run']} images/s)")
    for reason, c in r["failures"].items():
        log(f"  {reason:<20} {c:>10,}")
    log(f"output: {r['output']}")


# --- CLI ---------------------------------------------------------------------------------------------


def _coerce(field: dataclasses.Field, value: str):
    t = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if t == "bool":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{field.name}: not a boolean: {value!r}")
    if t == "int":
        return int(value)
    if t == "float":
        return float(value)
    return value


def config_from_args(args) -> DownloadConfig:
    cfg = DownloadConfig.from_json(args.config) if args.config else DownloadConfig()
    fields = {f.name: f for f in dataclasses.fields(DownloadConfig)}
    changes = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"--set expects KEY=VALUE with KEY one of {sorted(fields)}; got {item!r}")
        changes[key] = _coerce(fields[key], value)
    named = {"shard_size": args.shard_size, "threads": args.threads, "per_host_concurrency": args.per_host,
             "image_size": args.image_size, "jpeg_quality": args.jpeg_quality, "max_bytes": args.max_bytes,
             "retries": args.retries, "user_agent": args.user_agent, "total_timeout": args.timeout}
    changes.update({k: v for k, v in named.items() if v is not None})
    if args.allow_loopback:
        changes["allow_loopback"] = True
    if args.allow_private:
        changes["allow_private"] = True
    return dataclasses.replace(cfg, **changes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="curated/ or matched/ Parquet directory (what Spark can read)")
    p.add_argument("--output", required=True, help="images directory (local path or s3://bucket/prefix)")
    p.add_argument("--input-kind", choices=("auto", "curated", "matched"), default="auto")
    p.add_argument("--config", help="JSON file with DownloadConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any DownloadConfig field")
    p.add_argument("--shard-size", type=int)
    p.add_argument("--threads", type=int, help="concurrent fetches per Spark task")
    p.add_argument("--per-host", type=int, help="simultaneous requests to one host per task")
    p.add_argument("--image-size", type=int, help="shorter side of stored images")
    p.add_argument("--jpeg-quality", type=int)
    p.add_argument("--max-bytes", type=int)
    p.add_argument("--retries", type=int)
    p.add_argument("--timeout", type=float, help="total seconds per attempt")
    p.add_argument("--user-agent")
    p.add_argument("--allow-loopback", action="store_true", help="allow 127.0.0.0/8 and ::1 (tests, local mirrors)")
    p.add_argument("--allow-private", action="store_true", help="allow RFC 1918 / unique-local addresses")
    p.add_argument("--retry-failed", action="store_true", help="re-fetch the failed URLs of finished shards")
    p.add_argument("--retry-reasons", help="comma-separated failure reasons to retry (default: all)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", help="Spark master (default local[*] unless spark-submit sets one)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError, TypeError) as e:
        parser.error(str(e))
    spark = build_spark(args.master)
    try:
        reasons = frozenset(r.strip() for r in args.retry_reasons.split(",")) if args.retry_reasons else None
        report = run(spark, args.input, args.output, cfg, kind=args.input_kind, retry_failed=args.retry_failed,
                     retry_reasons=reasons, progress=not args.no_progress)
    finally:
        spark.stop()
    print_summary(report)
    print(json.dumps(report, sort_keys=True))
    if args.report:
        write_json(args.report, report)
    return 0


if __name__ == "__main__":
    # Run from the importable module, so Spark pickles the task functions by reference, not by value.
    from jobs import download as _module

    sys.exit(_module.main())
