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
