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
