"""What every job shares: its SparkSession, task fan-out and merging, and one-line user errors.

Spark lives here and in the job modules beside it, never in the library (curation/, metadata/,
training/ import no pyspark). A job plans in the driver, runs library functions as task bodies
over RDDs of task ids (no SQL planning, no rows for the JVM to convert) and merges their small
results.

A user error (a bad flag, a missing input, an --output the job may not write) is reported
before Spark starts, as `<job>: error: <what to do>` on stderr, never as a traceback after a
JVM start-up; internal errors keep their traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping

USER_ERROR_EXIT = 2


def broadcast_value(x):
    """What a task body was given: a Spark broadcast's value, or the plain value (local calls)."""
    return x.value if hasattr(x, "value") else x


def _result_total(name: str, result: dict) -> int:
    return result["totals"].get(name, 0)


def result_total(name: str):
    """A picklable `result -> result["totals"][name]` (0 when absent), for run_tasks' progress."""
    return functools.partial(_result_total, name)


def user_error(job: str, exc: BaseException) -> int:
    """Print `exc` as the one-line user error of `job`; returns the exit status to use."""
    message = " ".join(str(exc).split())  # one line, whatever the exception's text
    print(f"{job}: error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT


# --- the SparkSession ----------------------------------------------------------------------------


def spark_settings(master: str | None, submitted: bool, conf: Mapping[str, object] | None = None,
                   local_conf: Mapping[str, object] | None = None) -> tuple[str | None, dict[str, str]]:
    """(master, conf) that build_spark gives the session builder; see build_spark."""
    settings: dict[str, str] = {}
    if not submitted:
        settings["spark.ui.showConsoleProgress"] = "false"  # our progress output instead
    master = master or (None if submitted else "local[*]")
    settings["spark.python.worker.reuse"] = "true"
    if not submitted and master.startswith("local"):
        # local mode talks to itself only: bind the driver's RPC and block manager to loopback
        # instead of the machine's external interface
        settings["spark.driver.bindAddress"] = "127.0.0.1"
        settings["spark.driver.host"] = "127.0.0.1"
        # workers fork from a daemon that has already imported numpy/pyarrow/fastText/our modules.
        # Local mode only: the daemon starts before any --py-files reach sys.path, so on a cluster
        # it needs the package installed in the executors' Python (see infra/spark-defaults.conf).
        settings["spark.python.daemon.module"] = "jobs.spark_daemon"
    for key, value in ({} if submitted else local_conf or {}).items():
        settings[key] = str(value)
    for key, value in (conf or {}).items():
        settings[key] = str(value)
    return master, settings


def build_spark(app_name: str, master: str | None = None, conf: Mapping[str, object] | None = None,
                local_conf: Mapping[str, object] | None = None):
    """The job's SparkSession: local[*] by default, whatever spark-submit says when submitted.

    `conf` is always applied; `local_conf` only when this process starts Spark itself (not under
    spark-submit), for defaults such as driver memory that spark-submit/spark-defaults own on a
    cluster. `conf` wins over `local_conf`.
    """
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit
    if not submitted:
        # python workers use this interpreter (the venv), not whatever `python3` is on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master, settings = spark_settings(master, submitted, conf, local_conf)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# --- tasks ---------------------------------------------------------------------------------------

# Up to this many task results are merged in the driver; more are tree-reduced in the executors
# (each extra reduce stage costs the JVM more than merging a few dozen results here).
DRIVER_MERGE_MAX = 64


def merged(rdd, merge: Callable[[dict, dict], dict], zero: Callable[[], dict]) -> dict:
    """The sum of the task results of an RDD (tree-reduced in the executors when there are many)."""
    if rdd.getNumPartitions() > DRIVER_MERGE_MAX:
        return rdd.treeReduce(merge, depth=2)
    return functools.reduce(merge, rdd.collect(), zero())


# --- progress ------------------------------------------------------------------------------------

PROGRESS_LOG_EVERY_S = 10.0


def progress_mode(enabled: bool = True, stream=None) -> str | None:
    """"bar" on a terminal, "log" (plain periodic lines, for logs and cron) otherwise, None when off."""
    if not enabled:
        return None
    stream = stream or sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "log"


class PhaseProgress:
    """Progress of one Spark phase from accumulators the tasks add to: units done of `total`
    (inputs, runs, buckets) and items (texts) with their rate and an ETA.

    A tqdm bar on a terminal; elsewhere a plain line every PROGRESS_LOG_EVERY_S seconds and one
    at the end, so a cron log shows a long phase advancing. Reading an accumulator in the driver
    while the action runs is what Spark allows; the tasks only add to them.
    """

    def __init__(self, sc, desc: str, total: int, unit: str, items: str = "", mode: str | None = "log",
                 log=None):
        self.desc, self.total, self.unit, self.items_name, self.mode = desc, total, unit, items, mode
        self.done = sc.accumulator(0)
        self.items = sc.accumulator(0)
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._stop = None

    def _line(self, elapsed: float) -> str:
        done, items = self.done.value, self.items.value
        rate = items / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) * elapsed / done if done else None
        parts = [f"{self.desc}: {done:,}/{self.total:,} {self.unit}"]
        if self.items_name:
            parts.append(f"{items:,} {self.items_name} ({rate:,.0f}/s)")
        parts.append(f"{elapsed:.0f}s" + (f", ETA {eta:.0f}s" if eta is not None and done < self.total else ""))
        return ", ".join(parts)

    def __enter__(self):
        if self.mode is None:
            return self
        import threading
        import time

        self._stop = threading.Event()
        t0 = time.monotonic()

        def watch():
            bar = None
            if self.mode == "bar":
                from tqdm import tqdm

                bar = tqdm(total=self.total, unit=self.unit, desc=self.desc, dynamic_ncols=True)
            next_log = t0 + PROGRESS_LOG_EVERY_S
            while not self._stop.wait(0.5):
                now = time.monotonic()
                if bar is not None:
                    bar.update(max(0, self.done.value - bar.n))
                    if self.items_name:
                        bar.set_postfix({self.items_name: f"{self.items.value:,}"}, refresh=False)
                elif now >= next_log:
                    self._log(self._line(now - t0))
                    next_log = now + PROGRESS_LOG_EVERY_S
            if bar is not None:
                bar.update(max(0, self.done.value - bar.n))
                bar.close()
            else:
                self._log(self._line(time.monotonic() - t0))

        self._thread = threading.Thread(target=watch, name=f"progress-{self.desc}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join(5)
        return False


class Counted:
    """A task body that adds 1 to `done` per result it yields, and `items_of(result)` to `items`
    (the accumulators of a PhaseProgress). A class, so it pickles by reference to this module."""

    def __init__(self, body, done, items, items_of=None):
        self.body, self.done, self.items, self.items_of = body, done, items, items_of

    def __call__(self, iterator):
        for result in self.body(iterator):
            self.done.add(1)
            if self.items_of is not None:
                self.items.add(int(self.items_of(result)))
            yield result


# --- the driver's S3 settings in the tasks -----------------------------------------------------------

S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
          "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def task_env(*uris: str) -> dict:
    """The driver's AWS settings, to apply in tasks that touch any s3:// URI of `uris`.

    Python workers keep the environment they were started with (and in local mode they fork
    from a daemon started with the session), so a driver configured after that, or a cluster
    whose executors lack the settings, would reach S3 differently from the driver. They travel
    inside the task closure, never in Spark conf (which the UI and event logs show). On a
    cluster without these variables on the driver, executors use their own chain (roles).
    """
    from curation import storage

    if not any(storage.is_s3(u) for u in uris if u):
        return {}
    return {k: os.environ[k] for k in S3_ENV if os.environ.get(k)}


def run_tasks(spark, n: int, body, merge: Callable[[dict, dict], dict], zero: Callable[[], dict], *,
              progress: tuple[str, str, str, Callable | None] = ("tasks", "tasks", "", None),
              mode: str | None = None, broadcast: Mapping[str, object] | None = None) -> dict:
    """Run `body` over task ids 0..n-1 (one partition each), showing progress, and merge results.

    `body(task_ids, **broadcasts)` is an RDD partition body; `broadcast` values travel once per
    executor as Spark broadcasts (passed to `body` under their keys, removed afterwards);
    `progress` is (description, unit, item name, item count of one result) for PhaseProgress.
    """
    import functools as _functools

    sc = spark.sparkContext
    bcs = {k: sc.broadcast(v) for k, v in (broadcast or {}).items()}
    desc, unit, items, items_of = progress
    try:
        with PhaseProgress(sc, desc, n, unit, items, mode) as p:
            task = Counted(_functools.partial(body, **bcs) if bcs else body, p.done, p.items, items_of)
            return merged(sc.parallelize(range(n), n).mapPartitions(task), merge, zero)
    finally:
        for b in bcs.values():
            b.unpersist()
