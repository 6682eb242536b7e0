"""`curate --output s3://` (issue 13): the bytes of a local output, published without a copy.

On S3 a run writes straight under `<output>/_runs/<run-id>/` and is made current by the
output's `_MANIFEST.json` (storage.publish_versioned); readers resolve through it. The per-input
state and the exchange's scratch live on S3 too (a sibling `.<name>.state/` prefix), so a cluster
without a shared filesystem runs it. Real local Spark, a real S3 API server (moto) on loopback.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from bench.identical_outputs import COMPARED, digests
from curation import storage
from curation.curate_config import CurateConfig
from curation.layout import CurateOutput
from curation.samples.alt_texts import write_sample
from jobs.curate import InjectedFailure, run

pytestmark = pytest.mark.spark
T_EN = 6
SEED = 11
NAMES = (*COMPARED, "rejects")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("curate-s3-sample"), seed=3, files=5, pages_per_file=6)


def _cfg(sample, output, **kw) -> CurateConfig:
    return CurateConfig(inputs=tuple(sample["wat_files"]), metadata=sample["metadata"], output=str(output),
                        t_en=T_EN, seed=SEED, **kw)


def _quiet(*_a):
    pass


@pytest.fixture(scope="module")
def local_output(spark, sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("curate-s3-local") / "out"
    run(_cfg(sample, out), spark, progress=_quiet)
    return str(out)


def _top_level(uri: str) -> set[str]:
    return {f[len(uri.rstrip("/")) + 1:].split("/", 1)[0] for f in storage.list_files(uri)}


def _runs(uri: str) -> list[str]:
    return sorted({f.split("/_runs/", 1)[1].split("/", 1)[0] for f in storage.list_files(storage.join(uri, "_runs"))})


def test_s3_output_is_byte_identical_published_by_manifest_and_rerun_reads_nothing(
        spark, sample, local_output, s3_server, s3_bucket):
    out = f"s3://{s3_bucket}/crawl/out"
    lines: list[str] = []
    first = run(_cfg(sample, out), spark, progress=lines.append)
    assert first["inputs"]["read"] == len(sample["wat_files"])

    # the root holds the pointer, the marker and the runs; readers see the run the pointer names
    assert _top_level(out) == {"_MANIFEST.json", "_SUCCESS", "_runs"}
    pointer = json.loads(storage.read_bytes(storage.join(out, "_MANIFEST.json")))
    run1 = pointer["published"]["run"]
    assert _runs(out) == [run1]
    assert CurateOutput.published(out).root == storage.join(out, "_runs", run1)
    assert CurateOutput.resolve(storage.join(out, "curated")) == storage.join(out, "_runs", run1, "curated")
    assert storage.is_complete(out)
    assert digests(out, NAMES) == digests(local_output, NAMES)
    # the summary names where the files are
    assert any(storage.join(out, "_runs", run1, "curated") in line for line in lines)

    # no scratch left behind in the published run; state beside the output, outside any run
    published = _top_level(storage.join(out, "_runs", run1))
    assert not published & {CurateOutput.EXCHANGE, CurateOutput.PICKED}
    state = f"s3://{s3_bucket}/crawl/.out.state"
    assert any(f.endswith("/stats.json") for f in storage.list_files(state))

    # a rerun reads no input again (one listing finds the state), publishes a new run, keeps the previous
    second = run(_cfg(sample, out), spark, progress=_quiet)
    assert second["inputs"]["reused"] == len(sample["wat_files"]) and second["inputs"]["read"] == 0
    run2 = json.loads(storage.read_bytes(storage.join(out, "_MANIFEST.json")))["published"]["run"]
    assert run2 != run1 and _runs(out) == sorted([run1, run2])
    assert digests(out, NAMES) == digests(local_output, NAMES)

    # a third run collects the oldest: the current run and the one before it stay
    run(_cfg(sample, out), spark, progress=_quiet)
    run3 = json.loads(storage.read_bytes(storage.join(out, "_MANIFEST.json")))["published"]["run"]
    assert _runs(out) == sorted([run2, run3])


def test_a_failed_s3_run_leaves_the_published_run_and_removes_its_own(spark, sample, local_output, s3_server,
                                                                     s3_bucket):
    out = f"s3://{s3_bucket}/out"
    run(_cfg(sample, out), spark, progress=_quiet)
    before = storage.read_bytes(storage.join(out, "_MANIFEST.json"))
    with pytest.raises(InjectedFailure):
        run(_cfg(sample, out, fail_after="outputs"), spark, progress=_quiet)
    assert storage.read_bytes(storage.join(out, "_MANIFEST.json")) == before
    assert _runs(out) == [json.loads(before)["published"]["run"]]
    assert digests(out, NAMES) == digests(local_output, NAMES)


def test_download_reads_an_s3_curate_output_through_its_manifest(spark, sample, s3_server, s3_bucket):
    """The download job's input lister resolves `s3://.../curated` to the current run's files."""
    from jobs.download import input_files

    out = f"s3://{s3_bucket}/dl/out"
    run(_cfg(sample, out), spark, progress=_quiet)
    files = input_files(storage.join(out, "curated"))
    current = CurateOutput.published(out)
    assert files and all(f.startswith(current.curated + "/") for f in files)
    rows = sum(pq.read_metadata(storage.open_read(f)).num_rows for f in files)
    assert rows == json.loads(storage.read_bytes(storage.join(out, "_MANIFEST.json")))["rows"]["curated"]


def test_an_s3_output_holding_foreign_objects_is_refused(sample, s3_server, s3_bucket):
    from curation.layout import OutputRefused
    from jobs.curate import preflight

    out = f"s3://{s3_bucket}/mine"
    storage.write_bytes(storage.join(out, "notes.txt"), b"my notes")
    with pytest.raises(OutputRefused):
        preflight(_cfg(sample, out))
    assert storage.read_bytes(storage.join(out, "notes.txt")) == b"my notes"
    assert os.environ.get("AWS_ENDPOINT_URL_S3", "").startswith("http://127.0.0.1:")


def test_training_reads_an_s3_curate_output_through_its_manifest(spark, sample, local_output, s3_server, s3_bucket):
    import numpy as np

    from training.data import load_curated, load_entry_probs

    out = f"s3://{s3_bucket}/train/out"
    run(_cfg(sample, out), spark, progress=_quiet)
    got, want = load_entry_probs(storage.join(out, "entry_probs")), load_entry_probs(os.path.join(local_output, "entry_probs"))
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert load_curated(storage.join(out, "curated")) == load_curated(os.path.join(local_output, "curated"))
