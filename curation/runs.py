"""What every job run needs around its algorithm, without Spark: a code version, a lock, JSON I/O.

Shared by jobs/curate.py, jobs/download.py and jobs/build_metadata.py so a run is identified
and locked the same way everywhere (Spark itself is jobs.common's).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable

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


class LockHeld(RuntimeError):
    """Another run of the job writes the same output now."""


# An S3 output's lease is rewritten this often and is stale (its run presumed dead) after this long.
S3_LEASE_HEARTBEAT_S = 30.0
S3_LEASE_STALE_AFTER_S = 600.0


@contextlib.contextmanager
def output_lock(output: str, job: str = "job", stale_after_s: float = S3_LEASE_STALE_AFTER_S,
                heartbeat_s: float | None = S3_LEASE_HEARTBEAT_S):
    """One run per output at a time (cron reruns overlap slow runs).

    Local: an flock on `.<name>.lock` beside the output (released by the kernel when the
    process dies). Holding it also makes it safe to repair what killed runs left: an old output
    put aside by an interrupted publish is restored, stale staging directories are removed.
    S3: a lease object `.<name>.lock` beside the output (storage.S3Lease), kept alive by a
    heartbeat and taken over once silent for `stale_after_s`. Yields the lease (None locally).
    """
    if storage.is_s3(output):
        import socket

        parent, _, name = output.rstrip("/").rpartition("/")
        owner = {"job": job, "run_id": storage.new_run_id(), "host": socket.gethostname(), "pid": os.getpid(),
                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "output": output}
        lease = storage.S3Lease(storage.join(parent, f".{name}.lock"), owner, stale_after_s, heartbeat_s,
                                guards=output)
        try:
            lease.acquire()
        except storage.LeaseHeld as e:
            raise LockHeld(f"another {job} run holds the lease on {output}: {e}; wait for it to end") from None
        try:
            yield lease
        finally:
            lease.release()
        return
    import fcntl

    parent, name = os.path.split(storage.resolve_local(output))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"another {job} run holds the lock on {output}: wait for it to end "
                           f"(or remove {f.name} if no run is alive)") from None
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
