"""A real Spark standalone cluster on loopback for tests: one master and N workers.

Why a cluster and not local[*]: in local mode every task runs in the driver's JVM, so nothing
shows what a cluster changes: executors are other processes with their own working and scratch
directories, task bodies reach them pickled by reference, the code and the venv's Python must be
found there, and settings reach them only through the Spark conf or their own environment.

How: pip's pyspark ships the jars and bin/spark-class but no sbin/start-*.sh, so the daemons are
its `org.apache.spark.deploy.master.Master` and `...worker.Worker` classes run by spark-class.
Everything binds to and advertises 127.0.0.1 (--host, SPARK_LOCAL_IP/HOSTNAME) and takes an
OS-chosen port (port 0): the master's RPC and web UI ports are read back from its log, so two
test sessions never race for a port. Each daemon runs in its own process group with its log in the cluster directory;
stop() ends every group (the daemon and the executors and Python workers it launched), also
when start-up failed halfway.

The daemons' environment is the test process's minus AWS_* (a job that needs S3 on the
executors must send its settings there, spark.executorEnv.*, as on a real cluster: see NO_AWS)
and minus other SPARK_* / PYSPARK_* settings, with PYSPARK_PYTHON = this interpreter and a
PYTHONPATH that starts with tests/loopback_only: executors inherit it, so their Python workers
refuse non-loopback connects like every other process of the suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_ONLY = ROOT / "tests" / "loopback_only"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_MASTER_URL = re.compile(r"Starting Spark master at (spark://\S+)")
_MASTER_UI = re.compile(r"Successfully started service 'MasterUI' on port (\d+)")
# The daemons (and so the executors) know no AWS: no credentials, no config files, no instance
# metadata, and a generic endpoint nothing listens on, so a job that does not forward its own
# settings fails on loopback, never reaching AWS. A forwarded AWS_ENDPOINT_URL_S3 (or
# AWS_ENDPOINT_URL) takes precedence, as in boto3.
NO_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true",
          "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
# no proxy: a proxy from the environment would take the status request off loopback
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def spark_home() -> str:
    """The pip-installed pyspark directory: its jars/ and bin/spark-class run the daemons."""
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def loopback_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this environment) with the suite's loopback guard first on PYTHONPATH,
    then the repository root, this interpreter as PYSPARK_PYTHON, and Spark bound to and
    advertising 127.0.0.1: the environment of the daemons and of a driver run against them."""
    env = dict(os.environ if base is None else base)
    paths = [str(LOOPBACK_ONLY), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYSPARK_PYTHON"] = sys.executable
    env["SPARK_LOCAL_IP"] = "127.0.0.1"  # what Spark binds to
    env["SPARK_LOCAL_HOSTNAME"] = "127.0.0.1"  # what it advertises (else the machine's name)
    return env


class StandaloneCluster:
    """`with StandaloneCluster(dir, workers=2) as c:` -> c.master_url (spark://127.0.0.1:port)."""

    def __init__(self, root: str | os.PathLike, workers: int = 2, cores: int = 1, memory: str = "1g",
                 start_timeout: float = 180.0):
        self.root = Path(root)
        self.workers, self.cores, self.memory = workers, cores, memory
        self.start_timeout = start_timeout
        self.master_url: str | None = None
        self.webui_url: str | None = None
        self._procs: list[tuple[str, subprocess.Popen]] = []

    # --- start / stop ---------------------------------------------------------------------------

    def __enter__(self) -> StandaloneCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SPARK_", "PYSPARK_"))}
        env.update(NO_AWS)
        conf_dir = self.root / "conf"  # empty: no spark-env.sh / spark-defaults.conf but ours
        conf_dir.mkdir(parents=True, exist_ok=True)
        env.update(SPARK_HOME=spark_home(), SPARK_CONF_DIR=str(conf_dir), SPARK_DAEMON_MEMORY="256m",
                   # the daemons only schedule: C1 JIT and the serial GC spare the two shared cores
                   SPARK_DAEMON_JAVA_OPTS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        env.update(extra)
        return loopback_env(env)

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        with log:
            proc = subprocess.Popen([os.path.join(spark_home(), "bin", "spark-class"), *args],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self._env(extra_env), cwd=self.root, start_new_session=True)
        self._procs.append((name, proc))
        return proc

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        self._spawn("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"],
                    {"SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"})  # no REST port 6066
        url, ui = self._wait_for_log("master", (_MASTER_URL, _MASTER_UI), deadline)
        self.master_url, self.webui_url = url, f"http://127.0.0.1:{ui}"
        for i in range(self.workers):
            work = self.root / f"worker-{i}"
            (work / "local").mkdir(parents=True, exist_ok=True)
            self._spawn(f"worker-{i}", [WORKER_CLASS, "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
                                        "--cores", str(self.cores), "--memory", self.memory,
                                        "--work-dir", str(work), self.master_url],
                        {"SPARK_LOCAL_DIRS": str(work / "local")})
        while len(self.alive_workers()) < self.workers:
            self._check_running(deadline)
            time.sleep(0.5)

    def stop(self, grace: float = 15.0) -> None:
        """End every daemon's process group (workers first): SIGTERM, then SIGKILL after `grace` s."""
        procs, self._procs = self._procs[::-1], []
        for _name, proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group is left (executors, workers)
            proc.wait()

    # --- status -------------------------------------------------------------------------------

    def status(self) -> dict:
        """The master's JSON status (workers, applications)."""
        with _http.open(f"{self.webui_url}/json/", timeout=10) as resp:
            return json.load(resp)

    def alive_workers(self) -> list[dict]:
        try:
            workers = self.status().get("workers", [])
        except OSError:  # the web UI is still starting
            return []
        return [w for w in workers if w.get("state") == "ALIVE"]

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _check_running(self, deadline: float) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"spark {name} exited with {proc.returncode}:\n{self.log_tail(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster did not start in {self.start_timeout:.0f}s; master log:\n"
                               f"{self.log_tail('master')}")

    def _wait_for_log(self, name: str, patterns, deadline: float) -> list[str]:
        while True:
            text = self.log_tail(name, chars=1 << 20)
            found = [p.search(text) for p in patterns]
            if all(found):
                return [m.group(1) for m in found]
            self._check_running(deadline)
            time.sleep(0.2)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
