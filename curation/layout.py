"""Each job's output layout, and the one rule for writing where something already is (DESIGN 7).

A job writes into `--output`. What is there may be a user's directory (`.`, `$HOME`, a folder
of notes), an input of the run, another job's output, or an earlier output of the same job. A
job may only replace or extend the last of these: it is recognised by the job's own marker file
(its manifest, or the plan a resumable job writes first). Replacing jobs (curate, metadata)
publish a whole new directory over the old one, so they also refuse an earlier output that has
gained entries they do not write (an `images/` put inside a curate output would go with the
swap). Everything else is refused with a one-line :class:`OutputRefused` before any work starts.

The layout classes name every file of an output once, so writers, readers and this rule agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from curation import metadata_dir, storage


class OutputRefused(ValueError):
    """`--output` names something the job may not write over (the message is one line)."""


@dataclass(frozen=True)
class OutputLayout:
    """What a job's output looks like from outside: its marker files and its top-level names."""

    job: str
    markers: tuple[str, ...]  # any one present (and claiming `job`, when JSON with a "job" key) = ours
    names: frozenset[str] | None  # top-level entries a replacing job writes; None: the job writes in place

    def owns(self, uri: str) -> bool:
        """Whether `uri` holds an output of this job (complete or, for in-place jobs, started)."""
        for marker in self.markers:
            path = storage.join(uri, marker)
            if not storage.exists(path):
                continue
            try:
                doc = json.loads(storage.read_bytes(path))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("job", self.job) == self.job:
                return True
        return False


SUCCESS = storage.SUCCESS_MARKER
JOB_MANIFEST = "_MANIFEST.json"


class _Entry:
    """An entry of an output layout: its path under the instance's root (`out.matched`)."""

    def __init__(self, *names: str):
        self.names = names

    def __get__(self, out, owner=None):
        return self if out is None else out.path(*self.names)


class CurateOutput:
    """The curate job's output directory (DESIGN 6): `CurateOutput(root).matched` and so on are the
    paths every writer (jobs/curate.py) and reader (download, training, the summary) uses."""

    MATCHED = "matched"
    CURATED = "curated"
    COUNTS = "counts"
    ENTRY_PROBS = "entry_probs"
    REJECTS = "rejects"
    THRESHOLDS = "thresholds.json"
    REPORT_JSON = "report.json"
    REPORT_HTML = "report.html"
    STATE = "_state"  # the ledger: which inputs (and versions) the output covers
    PICKED = "_picked"  # scratch of one run, removed before publishing
    EXCHANGE = "_exchange"  # scratch of one run (the inputs' texts by uuid bucket), removed before publishing
    MANIFEST = JOB_MANIFEST
    LEDGER = "ledger.json"  # under STATE: the inputs, their versions and the settings fingerprint
    RUNS = storage.RUNS_PREFIX  # s3:// outputs: each run's files, the manifest names the current one
    LAYOUT = OutputLayout("curate", (JOB_MANIFEST,), frozenset({
        MATCHED, CURATED, COUNTS, ENTRY_PROBS, REJECTS, THRESHOLDS, REPORT_JSON, REPORT_HTML, STATE, PICKED,
        EXCHANGE, JOB_MANIFEST, SUCCESS, RUNS}))
    # the outputs a user reads, in the order the summary lists them
    PUBLISHED = (MATCHED, CURATED, COUNTS, ENTRY_PROBS, THRESHOLDS, REJECTS)

    def __init__(self, root: str):
        self.root = os.fspath(root)

    @classmethod
    def published(cls, root: str) -> CurateOutput:
        """The output a reader sees at `root`: on S3 the run its manifest names
        (storage.publish_versioned), elsewhere `root` itself."""
        return cls(storage.published_root(root, cls.MANIFEST))

    @classmethod
    def resolve(cls, uri: str) -> str:
        """A reader's URI of an output's root or of an entry in it (`s3://b/out/curated`) -> where
        its files are (`s3://b/out/_runs/<run>/curated`); anything else is returned as given."""
        if not storage.is_s3(uri):
            return uri
        u = os.fspath(uri).rstrip("/")
        root = storage.published_root(u, cls.MANIFEST)
        if root != u:
            return root
        parent, _, name = u.rpartition("/")
        if name in cls.LAYOUT.names and "/" in parent.removeprefix("s3://"):
            proot = storage.published_root(parent, cls.MANIFEST)
            if proot != parent:
                return storage.join(proot, name)
        return uri

    def path(self, *names: str) -> str:
        return storage.join(self.root, *names)

    matched = _Entry(MATCHED)
    curated = _Entry(CURATED)
    counts = _Entry(COUNTS)
    entry_probs = _Entry(ENTRY_PROBS)
    rejects = _Entry(REJECTS)
    thresholds = _Entry(THRESHOLDS)
    manifest = _Entry(MANIFEST)
    picked = _Entry(PICKED)
    exchange = _Entry(EXCHANGE)
    ledger = _Entry(STATE, LEDGER)
    distinct_counts = _Entry(STATE, "distinct_counts.bin")  # the run's merged HyperLogLog sketches


class RebalanceOutput(CurateOutput):
    """The rebalance job's output (jobs/rebalance.py): a curate output's counts/, thresholds.json,
    entry_probs/ and curated/ recomputed over the images that were obtained, under the same names
    (so training's --entry-probs/--curated and download's input lister read it as a curate output's);
    no matched/ or rejects/: its manifest names the curate run whose matched/ it filtered."""

    LAYOUT = OutputLayout("rebalance", (JOB_MANIFEST,), frozenset({
        CurateOutput.CURATED, CurateOutput.COUNTS, CurateOutput.ENTRY_PROBS, CurateOutput.THRESHOLDS,
        CurateOutput.REPORT_JSON, CurateOutput.REPORT_HTML, CurateOutput.PICKED, CurateOutput.EXCHANGE,
        JOB_MANIFEST, SUCCESS, storage.RUNS_PREFIX}))
    PUBLISHED = (CurateOutput.CURATED, CurateOutput.COUNTS, CurateOutput.ENTRY_PROBS, CurateOutput.THRESHOLDS)


class ImagesOutput:
    """The download job's output directory (described in curation.download_shards): resumed in
    place, so its plan marks it as the job's from the first run on. Side files live in
    `_`-prefixed subdirectories, so a dataset reader of the directory sees the image shards alone."""

    PLAN = "_PLAN.json"
    MANIFEST = JOB_MANIFEST
    DUPLICATES = "_dedup/duplicates.parquet"
    NEAR_DUPLICATES = "_dedup/near_duplicates.parquet"  # images of near-duplicate groups (pHash)
    PHASH_DIR = "_phash"  # per shard: uuid, pHash of each image, the shard's rows and order
    EVAL_IMAGES = "_decontam/eval_images.parquet"  # the evaluation images a run was checked against
    STATS_DIR = "_stats"
    FAILED_DIR = "_failed"
    LAYOUT = OutputLayout("download", (JOB_MANIFEST, PLAN), None)

    @staticmethod
    def shard_name(k: int) -> str:
        return f"shard-{k:05d}"

    @staticmethod
    def shard_uri(out: str, k: int) -> str:
        return storage.join(out, f"{ImagesOutput.shard_name(k)}.parquet")

    @staticmethod
    def phash_uri(out: str, k: int) -> str:
        return storage.join(out, ImagesOutput.PHASH_DIR, f"{ImagesOutput.shard_name(k)}.parquet")

    @staticmethod
    def stats_uri(out: str, k: int) -> str:
        return storage.join(out, ImagesOutput.STATS_DIR, f"{ImagesOutput.shard_name(k)}.json")

    @staticmethod
    def failed_uri(out: str, k: int) -> str:
        return storage.join(out, ImagesOutput.FAILED_DIR, f"{ImagesOutput.shard_name(k)}.parquet")


class MetadataOutput:
    """The metadata build's output directory (curation.metadata_dir reads it)."""

    MANIFEST = metadata_dir.MANIFEST
    REPORT = "_REPORT.json"
    LAYOUT = OutputLayout("metadata", (MANIFEST,), frozenset({MANIFEST, REPORT, "entries", "automata", SUCCESS}))


def _local(uri: str) -> str:
    return os.path.realpath(uri[len("file://"):] if uri.startswith("file://") else uri)


def _inside(path: str, directory: str) -> bool:
    if storage.is_s3(directory) or storage.is_s3(path):
        if not (storage.is_s3(directory) and storage.is_s3(path)):
            return False
        d, p = storage.split_s3(directory), storage.split_s3(path)
        key = d[1].rstrip("/")
        return d[0] == p[0] and (not key or p[1] == key or p[1].startswith(key + "/"))
    d, p = _local(directory), _local(path)
    return p == d or p.startswith(d.rstrip(os.sep) + os.sep)


def _top_level_names(uri: str) -> list[str]:
    return storage.list_children(uri) if storage.is_s3(uri) else sorted(os.listdir(_local(uri)))


def check_output(uri: str, layout: OutputLayout, inputs: Iterable[str] = ()) -> None:
    """Raise OutputRefused unless the job may write its output at `uri` (see the module docstring).

    `inputs` are the run's input files or directories: none may lie inside the output.
    """
    uri = os.fspath(uri)
    for path in inputs:
        if _inside(os.fspath(path), uri):
            raise OutputRefused(f"input {path} lies inside --output {uri}, which the {layout.job} job writes; "
                                "put the output elsewhere")
    if storage.is_s3(uri):
        if not storage.exists(uri):
            return
    else:
        local = _local(uri)
        if not os.path.lexists(local):
            return
        if not os.path.isdir(local):
            raise OutputRefused(f"--output {uri} is a file, not a directory: choose a new or empty directory")
        if not os.listdir(local):
            return
    if not layout.owns(uri):
        found = ", ".join(_top_level_names(uri)[:5])
        raise OutputRefused(f"--output {uri} is not empty and is not an earlier {layout.job} output (it holds {found}); "
                            f"the {layout.job} job only replaces its own outputs: choose a new or empty directory")
    if layout.names is not None:
        foreign = [n for n in _top_level_names(uri) if n not in layout.names]
        if foreign:
            raise OutputRefused(f"--output {uri} is an earlier {layout.job} output that also holds "
                                f"{', '.join(foreign[:5])}, which the job did not write and would replace: "
                                "move it out or choose another --output")
