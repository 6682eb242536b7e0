"""The preloading Python daemon (jobs.spark_daemon) that local runs fork Spark workers from."""

from __future__ import annotations

import pytest

from jobs.spark_daemon import PRELOAD, preload


def test_preload_imports_everything_it_lists():
    assert preload() == []
    assert preload(("no_such_module_xyz", "json")) == ["no_such_module_xyz"]  # skipped, not fatal
    assert "curation.annotate" in PRELOAD and "pyarrow.parquet" in PRELOAD


@pytest.mark.spark
def test_spark_workers_fork_from_the_preloaded_frozen_daemon(spark):
    def _worker_state(_it):  # nested: pickled by value (the workers cannot import test modules)
        import gc
        import sys

        yield ("curation.grouping" in sys.modules, "pandas" in sys.modules, gc.get_freeze_count() > 0)

    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == "jobs.spark_daemon"
    states = spark.sparkContext.parallelize(range(4), 2).mapPartitions(_worker_state).collect()
    assert states == [(True, True, True)] * 2  # imported before the fork, and frozen out of the GC


def test_the_daemon_is_used_only_when_this_process_starts_spark_locally():
    """Under spark-submit (or with a cluster master) the executors' Python may lack the package."""
    from jobs.common import spark_settings

    key = "spark.python.daemon.module"
    assert spark_settings(None, submitted=False)[1][key] == "jobs.spark_daemon"
    assert spark_settings("local[2]", submitted=False)[0] == "local[2]"
    assert key not in spark_settings("spark://h:7077", submitted=False)[1]
    assert key not in spark_settings(None, submitted=True)[1]
    master, conf = spark_settings(None, True, {key: "pyspark.daemon"}, {"spark.driver.memory": "9g"})
    assert master is None and conf[key] == "pyspark.daemon" and "spark.driver.memory" not in conf
    conf = spark_settings(None, False, {"a": 1}, {"a": 2, "b": 3})[1]
    assert (conf["a"], conf["b"]) == ("1", "3")  # conf wins over local_conf


def test_local_spark_binds_to_loopback_and_cluster_masters_keep_their_settings():
    from jobs.common import spark_settings

    for master in (None, "local[2]"):
        conf = spark_settings(master, submitted=False)[1]
        assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    for master, submitted in (("spark://h:7077", False), (None, True)):
        assert "spark.driver.bindAddress" not in spark_settings(master, submitted)[1]
