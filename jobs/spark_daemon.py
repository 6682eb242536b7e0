"""PySpark's Python worker daemon, with our heavy imports done once before it forks workers.

Spark starts one daemon per executor (`python -m <spark.python.daemon.module>`) and forks a
worker from it for each concurrent task slot. Every worker of the stock daemon imports numpy,
pyarrow (whose first array call imports pandas), fastText and our modules again: about 1 CPU-s
per worker, paid on every executor of a cluster. Imported here, before the fork, they are
shared copy-on-write by all workers. `jobs.common.build_spark` selects this module in local mode.

Fork safety: no thread may hold a lock at fork time. BLAS gets one thread (the workers run
one task each; OPENBLAS_NUM_THREADS is set before numpy loads), and pyarrow's jemalloc
background thread is covered by jemalloc's own fork handlers. The imported objects are then
frozen out of the garbage collector (gc.freeze): the stock daemon runs gc.collect() after
every task, which otherwise walks all of pandas/pyarrow's objects each time (~20 ms a task).

A module that fails to import is skipped (the task that needs it reports the error itself).
"""

from __future__ import annotations

import gc
import importlib
import os

PRELOAD = (
    "numpy",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.ipc",
    "ahocorasick",
    "fasttext",
    "pyspark.worker",
    "curation.text",
    "curation.urls",
    "curation.inputs",
    "curation.lid",
    "curation.matcher",
    "curation.metadata_dir",
    "curation.accounting",
    "curation.annotate",
    "curation.grouping",
    "curation.download_shards",
)


def preload(modules=PRELOAD) -> list[str]:
    """Import `modules`; returns those that could not be imported."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module must not stop the daemon
            failed.append(name)
    try:
        import pyarrow as pa

        pa.array([0])  # pyarrow's lazy pandas check runs on the first conversion: here, once
    except Exception:  # noqa: BLE001
        failed.append("pyarrow.array")
    return failed


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    preload()
    gc.freeze()
    from pyspark.daemon import manager

    manager()
