#!/usr/bin/env python
"""The download job: curated/ (or matched/) URLs in, Parquet image shards out (DESIGN section 6).

    python jobs/download.py --input out/curated --output out/images
    python jobs/download.py --input out/matched --output out/images-all --retry-failed
    spark-submit jobs/download.py --input s3a://bucket/run/curated --output s3://bucket/run/images

One Spark task per pending shard (curation.download_shards.run_shard: a thread pool of
curation.fetch, decode/resize by curation.images, the shard's files written atomically). A
rerun skips shards whose stats exist; --retry-failed re-fetches the failed URLs of finished
shards and merges the new images in. After all shards, a pass over the (uuid, sha256) columns
drops exact duplicate images across the whole run, keeping the smallest uuid; it is idempotent,
so a crash inside it is repaired by the next run. The output layout is described in
curation/download_shards.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from curation import config_cli, layout, runs, storage  # noqa: E402
from curation.download_config import DownloadConfig  # noqa: E402
from curation.download_shards import (  # noqa: E402
    DUPLICATES,
    FAILED_DIR,
    MANIFEST,
    STATS_DIR,
    completed_shards,
    dedup_pass,
    failed_uri,
    load_or_make_plan,
    read_table,
    row_to_record,
    run_shard,
    shard_of,
    stats_uri,
)
from curation.runs import read_json, write_json  # noqa: E402
from jobs.common import build_spark, user_error  # noqa: E402

# the sources whose change changes the images written (the manifest's code_version hashes them)
CODE_FILES = ("curation/fetch.py", "curation/images.py", "curation/download_config.py",
              "curation/download_shards.py", "jobs/download.py")


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


def check_output(out: str, input_uri: str) -> None:
    """OutputRefused unless `out` is new, empty or a download output to resume (curation.layout)."""
    layout.check_output(out, layout.ImagesOutput.LAYOUT, [input_uri])


def run(spark, input_uri: str, out: str, config: DownloadConfig, kind: str = "auto", retry_failed: bool = False,
        retry_reasons: frozenset | None = None, progress: bool = True, log=print) -> dict:
    """Run (or resume) the download of `input_uri` into `out`; returns the run report."""
    check_output(out, input_uri)
    with runs.output_lock(out, "download"):
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
        "resizers": sorted({s["resizer"] for s in stats if s.get("resizer")}),
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
        "code_version": runs.code_version(CODE_FILES),
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="curated/ or matched/ Parquet directory (what Spark can read)")
    p.add_argument("--output", required=True, help="images directory (local path or s3://bucket/prefix)")
    p.add_argument("--input-kind", choices=("auto", "curated", "matched"), default="auto")
    p.add_argument("--retry-failed", action="store_true", help="re-fetch the failed URLs of finished shards")
    p.add_argument("--retry-reasons", help="comma-separated failure reasons to retry (default: all)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", help="Spark master (default local[*] unless spark-submit sets one)")
    p.add_argument("--no-progress", action="store_true")
    # --config FILE, --set KEY=VALUE and one flag per DownloadConfig field (--threads, --per-host, ...)
    config_cli.add_config_arguments(p, DownloadConfig, section="download")
    return p


def config_from_args(args: argparse.Namespace) -> DownloadConfig:
    """Defaults, then --config, then --set, then the named flags; ValueError on a bad value."""
    return config_cli.config_from_args(DownloadConfig, args, section="download")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError, TypeError) as e:
        parser.error(str(e))
    reasons = frozenset(r.strip() for r in args.retry_reasons.split(",")) if args.retry_reasons else None
    try:
        check_output(args.output, args.input)
    except (ValueError, OSError) as e:
        return user_error("download", e)
    spark = build_spark("worldclip-download", args.master)
    try:
        report = run(spark, args.input, args.output, cfg, kind=args.input_kind, retry_failed=args.retry_failed,
                     retry_reasons=reasons, progress=not args.no_progress)
    finally:
        spark.stop()
    print_summary(report)
    print(json.dumps(report, sort_keys=True))
    if args.report:
        runs.write_json(args.report, report)
    return 0


if __name__ == "__main__":
    from jobs import download  # task bodies pickle by reference to this module, not to __main__

    sys.exit(download.main())
