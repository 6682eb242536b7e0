"""What every job run needs around its algorithm: a SparkSession, a code version, a lock, JSON I/O.

Shared by jobs/curate.py, jobs/download.py and jobs/build_metadata.py so a run is started,
identified and locked the same way everywhere. Spark is imported only inside build_spark.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping

from curation import storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_version(files: Iterable[str]) -> str:
    """`git describe` when available, plus a hash of the source files that decide the output.

    The hash part changes exactly when those files change, so it can key incremental reruns
    even on a cluster where the code is shipped without its git history.
    """
    h = hashlib.sha256()
    for rel in files:
        path = os.path.join(ROOT, rel)
        if os.path.exists(path):
            with open(path, "rb") as f:
                h.update(rel.encode() + b"\0" + f.read())
    git = ""
    with contextlib.suppress(Exception):
        git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    return f"{git or 'nogit'}+src.{h.hexdigest()[:12]}"


def spark_settings(master: str | None, submitted: bool, conf: Mapping[str, object] | None = None,
                   local_conf: Mapping[str, object] | None = None) -> tuple[str | None, dict[str, str]]:
    """(master, conf) that build_spark gives the session builder; see build_spark."""
    settings: dict[str, str] = {}
    if not submitted:
        settings["spark.ui.showConsoleProgress"] = "false"  # our progress output instead
    master = master or (None if submitted else "local[*]")
    settings["spark.python.worker.reuse"] = "true"
    if not submitted and master.startswith("local"):
        # workers fork from a daemon that has already imported numpy/pyarrow/fastText/our modules.
        # Local mode only: the daemon starts before any --py-files reach sys.path, so on a cluster
        # it needs the package installed in the executors' Python (see infra/spark-defaults.conf).
        settings["spark.python.daemon.module"] = "curation.spark_daemon"
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


@contextlib.contextmanager
def output_lock(output: str, job: str = "job"):
    """One run per local output at a time (cron reruns overlap slow runs); a no-op for s3://.

    Holding the lock also makes it safe to repair what killed runs left: an old output put
    aside by an interrupted publish is restored, stale staging directories are removed.
    """
    if storage.is_s3(output):
        yield
        return
    import fcntl

    parent, name = os.path.split(storage.resolve_local(output))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another {job} run holds the lock on {output}") from None
        dest = os.path.join(parent, name)
        olds = sorted(x for x in os.listdir(parent) if x.startswith(f".{name}.old-")
                      and os.path.exists(os.path.join(parent, x, storage.SUCCESS_MARKER)))
        if olds and not os.path.lexists(dest):  # killed between publish's two renames
            os.rename(os.path.join(parent, olds[-1]), dest)
        for stale in os.listdir(parent):  # left by killed runs: never complete, never read
            if stale.startswith((f".{name}.staging-", f".{name}.old-")):
                shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
        yield


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(uri: str, doc: object) -> None:
    """Pretty, key-sorted JSON (local or s3://), written atomically by storage.open_write."""
    data = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n"
    storage.write_bytes(uri, data.encode("utf-8"))


def read_json(uri: str) -> object:
    return json.loads(storage.read_bytes(uri))
