#!/usr/bin/env python
"""The download job: curated/ (or matched/) URLs in, Parquet image shards out (README.md, "What it does" step 3).

    python jobs/download.py --input out/curated --output out/images
    python jobs/download.py --input out/matched --output out/images-all --retry-failed
    spark-submit jobs/download.py --input s3://bucket/run/curated --output s3://bucket/run/images
    infra/submit.sh download --input s3://bucket/run/curated --output s3://bucket/run/images

Spark runs library functions of curation.download_shards as task bodies: a summary of every
input file (rows, rows without a uuid: the plan and the accounting; in the driver for a few
files), a read of each input file keyed by shard (shard_of(uuid), so the shards are a pure
function of the input), and one task per pending shard (run_shard: a thread pool of
curation.fetch, decode/resize by curation.images, the shard's files written atomically). The
input is read with pyarrow through curation.storage, not spark.read: a local path and s3:// are
read alike, without the Hadoop S3 connector a cluster may lack (`No FileSystem for scheme
"s3"`), and no row passes through the driver.

A rerun skips shards whose stats exist; --retry-failed re-fetches the failed URLs of finished
shards and merges the new images in. After all shards, a pass over the (uuid, sha256) columns
drops exact duplicate images across the whole run, keeping the smallest uuid; it is idempotent,
so a crash inside it is repaired by the next run. Then the near-duplicate pass (config
near_duplicates): every shard's pHashes become pigeonhole band rows, exchanged by bucket of band
key (partitionBy), checked exactly and reduced to components per bucket, merged on the driver
(only grouped images reach it), and written as _dedup/near_duplicates.parquet; it recomputes from
the _phash/ tables every run, so it too is repaired by a rerun. With config eval_images, the
evaluation images are hashed first (on the driver for a few, in Spark tasks beyond), broadcast,
and every task rejects its images that copy one (`eval_image`). The output layout is described in
curation/download_shards.py.

Progress advances per image. A Spark accumulator reaches the driver only when its task ends,
once per shard of thousands of images, so running tasks also send their counts to the driver
in UDP datagrams (LiveReporter -> LiveCounts; best effort: where executors cannot reach the
driver the display falls back to the accumulators, and the report never uses them). On a
terminal a tqdm bar counts images; otherwise a line every PROGRESS_LOG_EVERY_S seconds gives
shards done/total, images ok/failed, images/s and the ETA.
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
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from curation import config_cli, layout, runs, storage  # noqa: E402
from curation.download_config import DownloadConfig  # noqa: E402
from curation.download_shards import (  # noqa: E402
    DUPLICATES,
    EVAL_IMAGE,
    EVAL_IMAGES,
    FAILED_DIR,
    FINAL_REASONS,
    INPUT_COLUMNS,
    MANIFEST,
    NEAR_DUPLICATES,
    NOT_RETRIED,
    PHASH_DIR,
    STATS_DIR,
    EvalImages,
    bucket_components,
    completed_shards,
    dedup_pass,
    eval_image_files,
    failed_uri,
    hash_eval_files,
    input_kind,
    input_records,
    input_summary,
    load_or_make_plan,
    merge_components,
    near_duplicate_table,
    phash_band_chunks,
    publish_near_duplicates,
    read_table,
    rows_by_shard,
    run_shard,
    shard_members,
    shard_of,
    stats_uri,
    write_table,
)
from curation.runs import read_json, write_json  # noqa: E402
from jobs.common import PROGRESS_LOG_EVERY_S, build_spark, progress_mode, task_env, user_error  # noqa: E402

# the sources whose change changes the images written (the manifest's code_version hashes them)
CODE_FILES = ("curation/fetch.py", "curation/images.py", "curation/image_hash.py", "curation/download_config.py",
              "curation/download_shards.py", "jobs/download.py")


LIVE_SEND_EVERY_S = 0.25  # a running task sends its counts to the driver at most this often
DRIVER_SUMMARY_MAX_FILES = 16  # inputs of up to this many files are summarised without a Spark job
DRIVER_NEAR_DUP_MAX_SHARDS = 16  # runs of up to this many shards group near-duplicates without a Spark job
DRIVER_EVAL_MAX_FILES = 64  # evaluation folders of up to this many images are hashed without a Spark job
REPORT_EXAMPLES = 20  # eval_image rejects listed in the report (all of them are in _failed/)


def input_files(input_uri: str) -> list[str]:
    """The input's Parquet files: a directory (side files skipped), a glob or @FILE, local or s3://
    (a curate output on S3, `s3://b/out/curated`, is read in the run its manifest names)."""
    return storage.expand(layout.CurateOutput.resolve(input_uri), suffix=".parquet")


# --- task bodies ---------------------------------------------------------------------------------


def summarize_partition(uris, env=None):
    """Spark task body: input_summary of each of its input files."""
    if env:
        os.environ.update(env)
    for uri in uris:
        yield input_summary(uri)


def read_partition(uris, kind: str, num_shards: int, index: dict, fresh: set, failed_b=None, queued=None, env=None):
    """Spark task body: (shard, record) for the rows of its input files this run downloads: every
    row of a shard to run, the failed uuids (`failed_b`, a broadcast set) of a shard to retry."""
    if env:
        os.environ.update(env)
    failed = failed_b.value if failed_b is not None else frozenset()
    n = 0
    for uri in uris:
        for rec in input_records(uri, kind):
            k = shard_of(rec[0], num_shards)
            if k in index and (k in fresh or rec[0] in failed):
                n += 1
                yield k, rec
    if queued is not None:
        queued.add(n)


def run_partition(index, pairs, out: str, tasks: list, config: DownloadConfig, accumulators=None, env=None,
                  live=None, eval_b=None):
    """Spark task body: partition `index` is exactly task `tasks[index]` = (shard, retry)."""
    if env:
        os.environ.update(env)
    shard, retry = tasks[index]
    records = [rec for _k, rec in pairs]
    eval_images = eval_b.value if eval_b is not None else None
    with LiveReporter(live, index) as on_image:
        stats = run_shard(out, shard, records, config, retry=retry, on_image=on_image, eval_images=eval_images)
    if accumulators is not None:
        accumulators[0].add(1)
        accumulators[1].add(stats["succeeded"] if not retry else stats.get("recovered", 0))
        accumulators[2].add(len(records))
    yield json.dumps(stats)


def hash_eval_partition(uris, folder: str, config: DownloadConfig, env=None):
    """Spark task body: hash_eval_files of its evaluation image files."""
    if env:
        os.environ.update(env)
    yield from hash_eval_files(list(uris), folder, config)


def band_chunks_partition(shards, out: str, max_distance: int, num_buckets: int, env=None):
    """Spark task body: phash_band_chunks of its shards."""
    if env:
        os.environ.update(env)
    for k in shards:
        yield from phash_band_chunks(k, out, max_distance, num_buckets)


def bucket_partition(chunks, max_distance: int, env=None):
    """Spark task body: bucket_components of the one bucket of band keys in this partition."""
    yield from bucket_components(chunks, max_distance)


def members_partition(items, out: str, env=None):
    """Spark task body: shard_members of its (shard, rows) items."""
    if env:
        os.environ.update(env)
    for item in items:
        yield from shard_members(item, out)


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


def _curate_run(input_uri: str) -> dict | None:
    """The identity of the curate (or rebalance) run whose curated/ or matched/ the input is (its
    _MANIFEST.json beside or above it), recorded so that training knows what the shards hold; None
    when the input is not a curate run's output (or its manifest cannot be read)."""
    base = input_uri.rstrip("/")
    for root in (base, os.path.dirname(base)):
        with contextlib.suppress(Exception):
            data = storage.read_bytes(storage.join(root, MANIFEST))
            doc = json.loads(data)
            if doc.get("job") not in ("curate", "rebalance"):  # a rebalanced output has curate's layout
                continue
            config = doc.get("config") or {}
            return {"output": root, "job": doc["job"], "manifest_sha256": hashlib.sha256(data).hexdigest(),
                    "metadata_version": (doc.get("metadata") or {}).get("version"),
                    "seed": config.get("seed"), "t_en": config.get("t_en"), "code_version": doc.get("code_version")}
    return None


# --- progress ------------------------------------------------------------------------------------


class LiveReporter:
    """A running task's end of the per-image progress: the cumulative (ok, failed) counts of this
    task attempt, sent to LiveCounts' address at most every LIVE_SEND_EVERY_S and once at the end.

    Cumulative counts make a lost or reordered datagram harmless; a send that fails is dropped
    (progress must never fail a shard). With `live` None it only counts.
    """

    def __init__(self, live, partition: int):
        self.ok = self.failed = 0
        self._sent = 0.0
        self._sock = self._target = None
        if live is None:
            return
        host, port, token = live
        attempt = 0
        with contextlib.suppress(Exception):
            from pyspark import TaskContext

            ctx = TaskContext.get()
            attempt = ctx.attemptNumber() if ctx is not None else 0
        self._head = f"{token} {partition} {attempt}"
        with contextlib.suppress(OSError):
            family, _type, _proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._sock, self._target = socket.socket(family, socket.SOCK_DGRAM), addr

    def __call__(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if self._sock is not None and time.monotonic() - self._sent >= LIVE_SEND_EVERY_S:
            self._send()

    def _send(self) -> None:
        self._sent = time.monotonic()
        with contextlib.suppress(OSError):
            self._sock.sendto(f"{self._head} {self.ok} {self.failed}".encode("ascii"), self._target)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._sock is not None:
            self._send()
            self._sock.close()


class LiveCounts:
    """The driver's end of the per-image progress: a UDP socket collecting LiveReporter datagrams.

    Keeps the latest counts of each partition's latest attempt (a retried task starts again
    from zero instead of adding to its failed attempt); datagrams without this run's random
    token are ignored.
    """

    def __init__(self, bind_host: str, host: str):
        family, _type, _proto, _name, addr = socket.getaddrinfo(bind_host, 0, type=socket.SOCK_DGRAM)[0]
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind(addr)
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(0.2)
        self.token = secrets.token_hex(8)
        self.address = (host, self._sock.getsockname()[1], self.token)
        self._parts: dict[int, tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="download-progress", daemon=True)
        self._thread.start()

    @classmethod
    def for_spark(cls, sc) -> LiveCounts | None:
        """On the driver's address as Spark names it (spark.driver.host, bound at spark.driver.bindAddress),
        or None where no socket can be opened there (the display then follows the accumulators)."""
        conf = sc.getConf()
        host = conf.get("spark.driver.host", None) or socket.gethostname()
        try:
            return cls(conf.get("spark.driver.bindAddress", None) or host, host)
        except OSError:
            return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, _addr = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.take(data)

    def take(self, data: bytes) -> None:
        """Record one datagram `token partition attempt ok failed`."""
        try:
            token, part, attempt, ok, failed = data.decode("ascii").split()
            part, attempt, ok, failed = int(part), int(attempt), int(ok), int(failed)
        except (UnicodeDecodeError, ValueError):
            return
        if token != self.token:
            return
        with self._lock:
            old = self._parts.get(part)
            if old is None or attempt > old[0] or (attempt == old[0] and ok + failed >= old[1] + old[2]):
                self._parts[part] = (attempt, ok, failed)

    def totals(self) -> tuple[int, int]:
        """(images ok, images failed) of all partitions so far."""
        with self._lock:
            return sum(p[1] for p in self._parts.values()), sum(p[2] for p in self._parts.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(shards_done: int, done: int, queued: int, ok: int, failed: int, *, shards: int,
                  elapsed: float) -> str:
    """One progress line: shards done/total, images done/queued (ok, failed), images/s, ETA."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = _duration((queued - done) / rate) if rate > 0 and queued >= done else "?"
    return (f"download: {shards_done}/{shards} shards, {done:,}/{queued:,} images ({ok:,} ok, {failed:,} failed), "
            f"{rate:.1f} images/s, ETA {eta}")


def _run_tasks(rdd, accs, n_tasks: int, mode: str | None, live: LiveCounts | None = None, log=print):
    """collect() in a thread while the progress (`mode` "bar", "log" or None) follows the counts.

    accs: shards done, images ok and URLs done (exact, as tasks end), URLs queued (as the input
    reads end, before any download starts); `live` adds the images of running tasks.
    """
    result, error = [], []

    def target():
        try:
            result.extend(rdd.collect())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    def counts():
        live_ok, live_failed = live.totals() if live is not None else (0, 0)
        done = max(accs[2].value, live_ok + live_failed)
        ok = min(max(accs[1].value, live_ok), done)
        return accs[0].value, done, accs[3].value, ok, done - ok

    def show(bar, shards_done, done, queued, ok, failed):
        if queued != bar.total:
            bar.total = queued
        bar.set_postfix({"shards": f"{shards_done}/{n_tasks}", "ok": ok, "failed": failed}, refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        else:
            bar.refresh()

    th = threading.Thread(target=target, name="download-collect", daemon=True)
    t0 = time.monotonic()
    th.start()
    bar = None
    if mode == "bar":
        from tqdm import tqdm

        bar = tqdm(total=0, unit="img", desc="download", dynamic_ncols=True)
    next_log = t0 + PROGRESS_LOG_EVERY_S
    while th.is_alive():
        th.join(min(0.5, PROGRESS_LOG_EVERY_S))
        if bar is not None:
            show(bar, *counts())
        elif mode == "log" and time.monotonic() >= next_log and th.is_alive():
            log(progress_line(*counts(), shards=n_tasks, elapsed=time.monotonic() - t0))
            next_log = time.monotonic() + PROGRESS_LOG_EVERY_S
    if bar is not None:
        show(bar, *counts())
        bar.close()
    elif mode == "log" and not error:
        log(progress_line(*counts(), shards=n_tasks, elapsed=time.monotonic() - t0))
    if error:
        raise error[0]
    return [json.loads(s) for s in result]


def check_output(out: str, input_uri: str) -> None:
    """OutputRefused unless `out` is new, empty or a download output to resume (curation.layout)."""
    layout.check_output(out, layout.ImagesOutput.LAYOUT, [input_uri])


def run(spark, input_uri: str, out: str, config: DownloadConfig, kind: str = "auto", retry_failed: bool = False,
        retry_reasons: frozenset | None = None, progress: bool = True, log=print) -> dict:
    """Run (or resume) the download of `input_uri` into `out`; returns the run report.

    `progress`: a tqdm bar of images when stderr is a terminal, else a `log` line every
    PROGRESS_LOG_EVERY_S seconds.
    """
    check_output(out, input_uri)
    with runs.output_lock(out, "download"):
        return _run(spark, input_uri, out, config, kind, retry_failed, retry_reasons, progress, log)


def _summarize(sc, files: list[str], kind: str, env: dict) -> tuple[str, int, int]:
    """(input kind, rows, rows without a uuid) from every input file's footer: in the driver for
    a few files (a Spark job costs more than their footers), in Spark tasks beyond."""
    if len(files) <= DRIVER_SUMMARY_MAX_FILES:
        summaries = [input_summary(f) for f in files]
    else:
        slices = min(len(files), max(1, sc.defaultParallelism) * 4)
        summaries = sc.parallelize(files, slices).mapPartitions(
            functools.partial(summarize_partition, env=env)).collect()
    kind = input_kind(summaries[0]["columns"], kind)
    for s in summaries:
        missing = [c for c in INPUT_COLUMNS[kind] if c not in s["columns"]]
        if missing:
            raise ValueError(f"{s['uri']}: a {kind} input lacks columns {missing} (it has {s['columns']})")
    return kind, sum(s["rows"] for s in summaries), sum(s["no_uuid"] for s in summaries)


def _run(spark, input_uri, out, config, kind, retry_failed, retry_reasons, progress, log) -> dict:
    t_start = time.time()
    sc = spark.sparkContext
    files = input_files(input_uri)
    env = task_env(out, input_uri, *files)
    kind, n_rows, no_uuid = _summarize(sc, files, kind, env)
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
                  if ((r not in FINAL_REASONS) if retry_reasons is None else (r in retry_reasons))]
            if us:
                failed_uuids.update(us)
                tasks.append((k, True))
    log(f"download: {n_rows:,} {kind} rows in {len(files)} files, {num_shards} shards; {len(done)} complete, "
        f"{sum(1 for _, r in tasks if not r)} to run" + (f", {len(failed_uuids):,} failed URLs to retry" if retry_failed else ""))
    eval_images = _eval_images(sc, out, config, env, log) if config.eval_images else None
    t_fetch = time.time()
    task_stats = []
    if tasks:
        index = {k: i for i, (k, _) in enumerate(tasks)}
        fresh = {k for k, r in tasks if not r}
        failed_b = sc.broadcast(failed_uuids) if failed_uuids else None
        eval_b = sc.broadcast(eval_images) if eval_images is not None else None
        # shards done, images ok, URLs done, URLs queued
        accs = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
        mode = progress_mode(progress)
        live = LiveCounts.for_spark(sc) if mode else None
        read = functools.partial(read_partition, kind=kind, num_shards=num_shards, index=index, fresh=fresh,
                                 failed_b=failed_b, queued=accs[3], env=env)
        rdd = (sc.parallelize(files, len(files)).mapPartitions(read)
               .partitionBy(len(tasks), lambda k: index[k])
               .mapPartitionsWithIndex(functools.partial(run_partition, out=out, tasks=tasks, config=config,
                                                         accumulators=accs, env=env,
                                                         live=live.address if live else None, eval_b=eval_b)))
        try:
            task_stats = _run_tasks(rdd, accs, len(tasks), mode, live, log)
        finally:
            if live is not None:
                live.close()
        for b in (failed_b, eval_b):
            if b is not None:
                b.unpersist()
    t_dedup = time.time()
    dedup = dedup_pass(out, num_shards, config) if config.dedup else {"duplicates": 0, "shards_rewritten": 0}
    t_near = time.time()
    near = _near_duplicates(sc, out, num_shards, config, env) if config.phash and config.near_duplicates else None
    stats = [read_json(stats_uri(out, k)) for k in range(num_shards)]
    failures, forbidden_by = Counter(), Counter()
    for s in stats:
        failures.update(s["failures"])
        forbidden_by.update(s.get("forbidden_by", {}))
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
        "forbidden_by": dict(sorted(forbidden_by.items())),
        "accounting_ok": n_rows == succeeded + sum(failures.values()),
        "shards": num_shards,
        "shards_run": sum(1 for _, r in tasks if not r),
        "shards_retried": sum(1 for _, r in tasks if r),
        "retry_failed": retry_failed,
        "retried_urls": len(failed_uuids),
        "duplicates": dedup["duplicates"],
        "images_phashed": sum(s.get("phashed", 0) for s in stats),
        "near_duplicates": near,
        "decontam": _decontam_report(out, stats, eval_images) if eval_images is not None else None,
        "bytes_downloaded_this_run": sum(s["bytes_downloaded"] for s in task_stats),
        "bytes_written": sum(s["bytes_written"] for s in stats),
        "resizers": sorted({s["resizer"] for s in stats if s.get("resizer")}),
        "images_per_s_this_run": round(sum(s["succeeded"] if not s.get("retried") else s.get("recovered", 0)
                                           for s in task_stats) / max(t_dedup - t_fetch, 1e-9), 2),
        "timings_s": {"plan": round(t_fetch - t_start, 2), "fetch": round(t_dedup - t_fetch, 2),
                      "dedup": round(t_near - t_dedup, 2), "near_duplicates_and_report": round(t_end - t_near, 2),
                      "total": round(t_end - t_start, 2)},
    }
    if not report["accounting_ok"]:
        raise AssertionError(f"download accounting broken: {n_rows} inputs != {succeeded} + failures {dict(failures)}")
    manifest = {
        **report,
        "config": config.to_dict(),
        "plan": plan,
        "metadata_version": _input_metadata_version(input_uri),
        # what the shards were built from, for training: "curated" (the curate run's offline sample,
        # one text per image: train offline) or "matched" (every matched text: online curation
        # resamples it each epoch); an online run over a curated/ download would apply the keep
        # probabilities twice
        "source": kind,
        "curate_run": _curate_run(input_uri),
        "code_version": runs.code_version(CODE_FILES),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "layout": {"images": "shard-XXXXX.parquet", "stats": f"{STATS_DIR}/shard-XXXXX.json",
                   "failed": f"{FAILED_DIR}/shard-XXXXX.parquet", "duplicates": DUPLICATES,
                   "phash": f"{PHASH_DIR}/shard-XXXXX.parquet", "near_duplicates": NEAR_DUPLICATES,
                   "eval_images": EVAL_IMAGES},
    }
    write_json(storage.join(out, MANIFEST), manifest)
    storage.write_bytes(success, b"")
    return report


def _eval_images(sc, out: str, config: DownloadConfig, env: dict, log=print) -> EvalImages:
    """The evaluation images of config.eval_images, hashed (in the driver for a few, in Spark tasks
    beyond) and recorded in the output (EVAL_IMAGES)."""
    folder = config.eval_images
    files = eval_image_files(folder)
    if len(files) <= DRIVER_EVAL_MAX_FILES:
        hashed = hash_eval_files(files, folder, config)
    else:
        slices = min(len(files), max(1, sc.defaultParallelism) * 4)
        hashed = sc.parallelize(files, slices).mapPartitions(
            functools.partial(hash_eval_partition, folder=folder, config=config, env=env)).collect()
    ev = EvalImages.from_hashed(hashed, config.eval_image_distance, folder)
    write_table(storage.join(out, EVAL_IMAGES), ev.table(hashed), row_group_size=100_000)
    log(f"download: {len(ev.names):,} evaluation images from {folder} ({ev.unreadable:,} unreadable); "
        f"images within {ev.max_distance} bits of one are rejected as {EVAL_IMAGE}")
    return ev


def _near_duplicates(sc, out: str, num_shards: int, config: DownloadConfig, env: dict) -> dict:
    """Group the run's near-duplicate images (curation.download_shards: band rows -> buckets ->
    components), publish the table and the shards' counts; the summary for the report."""
    d = config.near_duplicate_distance
    if num_shards <= DRIVER_NEAR_DUP_MAX_SHARDS:
        chunks = [c for k in range(num_shards) for c in phash_band_chunks(k, out, d, 1)]
        edges = list(bucket_components(chunks, d))
        nodes, roots = merge_components(edges)
        members = [m for item in sorted(rows_by_shard(nodes).items()) for m in shard_members(item, out)]
    else:
        par = max(1, sc.defaultParallelism)
        slices, buckets = min(num_shards, 4 * par), min(num_shards, 2 * par)
        edges = (sc.parallelize(range(num_shards), slices)
                 .mapPartitions(functools.partial(band_chunks_partition, out=out, max_distance=d, num_buckets=buckets,
                                                  env=env))
                 .partitionBy(buckets, lambda b: b)
                 .mapPartitions(functools.partial(bucket_partition, max_distance=d, env=env))
                 .collect())
        nodes, roots = merge_components(edges)
        items = sorted(rows_by_shard(nodes).items())
        members = (sc.parallelize(items, min(len(items), slices))
                   .mapPartitions(functools.partial(members_partition, out=out, env=env)).collect()) if items else []
    return publish_near_duplicates(out, num_shards, near_duplicate_table(nodes, roots, members), d)


def _decontam_report(out: str, stats: list[dict], ev: EvalImages) -> dict:
    """The eval_image rejects of the run: count and the first REPORT_EXAMPLES (by uuid)."""
    examples = []
    for s in stats:
        if s["failures"].get(EVAL_IMAGE) and len(examples) < REPORT_EXAMPLES:
            t = read_table(failed_uri(out, s["shard"]))
            examples += [{"uuid": r["uuid"], "url": r["url"], "detail": r["detail"]} for r in t.to_pylist()
                         if r["reason"] == EVAL_IMAGE]
    examples.sort(key=lambda e: e["uuid"])
    unchecked = [s["shard"] for s in stats if s.get("eval_images") != ev.fingerprint]
    return {**ev.stats(), "rejected": sum(s["failures"].get(EVAL_IMAGE, 0) for s in stats),
            # shards completed by an earlier run without these evaluation images: not checked
            "shards_not_checked": len(unchecked),
            "examples": examples[:REPORT_EXAMPLES], "listed_in": f"{FAILED_DIR}/ (reason {EVAL_IMAGE})"}


def summary_hints(report: dict) -> list[str]:
    """What to do about the failures of a run: the flags that allow refused addresses, and
    --retry-failed when this run fetched nothing because every shard was already complete."""
    r, hints = report, []
    failures = r["failures"]
    forbidden = failures.get("forbidden_address", 0)
    if forbidden:
        by = r.get("forbidden_by") or {}
        loopback, private = by.get("loopback", 0), by.get("private", 0)
        parts = [f"{loopback:,} loopback (fetched with --allow-loopback: a local mirror or test server)"] if loopback else []
        if private:
            parts.append(f"{private:,} private (fetched with --allow-private: an intranet mirror)")
        if forbidden - loopback - private:
            parts.append(f"{forbidden - loopback - private:,} link-local, multicast, reserved or unspecified "
                         "(never fetched)")
        hints.append(f"forbidden_address: {forbidden:,} URLs resolve to non-public addresses: {'; '.join(parts)}; "
                     f"each one's address is in {storage.join(r['output'], FAILED_DIR)}/")
    retriable = sum(c for reason, c in failures.items()
                    if reason not in NOT_RETRIED and reason not in FINAL_REASONS and reason != "missing_uuid")
    if retriable and r["shards_run"] == 0 and not r.get("retry_failed"):
        only = " (--retry-reasons forbidden_address to retry only those)" if forbidden else ""
        hints.append(f"every shard was complete, nothing was fetched: {retriable:,} URLs failed earlier; "
                     f"rerun with --retry-failed{only} to fetch them again")
    dc = r.get("decontam") or {}
    if dc.get("shards_not_checked"):
        hints.append(f"decontamination: {dc['shards_not_checked']:,} shards were completed by an earlier run without "
                     "these evaluation images and were not checked; download into a new output to check every image")
    return hints


def print_summary(report: dict, log=print) -> None:
    r = report
    log("")
    log(f"download done in {r['timings_s']['total']:.1f}s: {r['input_rows']:,} URLs -> {r['succeeded']:,} images, "
        f"{r['failed']:,} failed ({r['shards']} shards, {r['shards_run']} run now, {r['shards_retried']} retried; "
        f"{r['images_per_s_this_run']} images/s)")
    for reason, c in r["failures"].items():
        log(f"  {reason:<20} {c:>10,}")
    near = r.get("near_duplicates")
    if near:
        log(f"near-duplicates (<= {near['max_distance']} bits): {near['groups']:,} groups of {near['images_in_groups']:,} "
            f"images among {near['images_hashed']:,} hashed (kept; listed in {near['table']})")
    dc = r.get("decontam")
    if dc:
        log(f"decontamination: {dc['rejected']:,} images within {dc['max_distance']} bits of one of {dc['images']:,} "
            f"evaluation images rejected ({EVAL_IMAGE}; listed in {dc['listed_in']})")
    for hint in summary_hints(r):
        log(f"hint: {hint}")
    log(f"output: {r['output']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="More: the docstring of jobs/download.py (stages, resume, progress), the output\n"
                                       "layout in curation/download_shards.py, README.md (\"What it does\",\n"
                                       "\"Running on a cluster\").",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True,
                   help="curated/ or matched/ Parquet: a directory, a glob or @FILE; local path or s3://")
    p.add_argument("--output", required=True, help="images directory (local path or s3://bucket/prefix)")
    p.add_argument("--input-kind", choices=("auto", "curated", "matched"), default="auto")
    p.add_argument("--retry-failed", action="store_true", help="re-fetch the failed URLs of finished shards")
    p.add_argument("--retry-reasons", help="comma-separated failure reasons to retry (default: all)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", help="Spark master (default local[*] unless spark-submit sets one)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (terminal) or progress lines (otherwise)")
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
        input_files(args.input)  # a missing or empty input is said before Spark starts
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
