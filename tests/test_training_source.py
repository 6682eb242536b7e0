"""What image shards were built from, end to end (issue 14 item 1).

A real curate run over a url+text table whose URLs a loopback HTTP server serves, the download
of its curated/ and of its matched/, then training: online curation resamples the matched pool
every epoch, and is refused over the curated/ download, which is one draw of the keep
probabilities already (curating it again would apply them twice). A download from before the
source was recorded still trains, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fetch import HostileServer, make_jpeg
from test_training import micro_config

from curation import runs
from curation.curate_config import CurateConfig
from curation.download_config import DownloadConfig
from curation.samples.alt_texts import write_sample_metadata
from jobs import curate
from jobs import download as download_job

pytestmark = pytest.mark.spark

NOUNS = ["dog", "cat", "house", "car", "tree", "flower", "mountain", "river", "beach", "city", "bridge", "bird"]
DL = DownloadConfig(allow_loopback=True, connect_timeout=2.0, read_timeout=5.0, total_timeout=10.0, retries=1,
                    backoff_base=0.01, backoff_max=0.02, shard_size=12, threads=4, image_size=32)


def _quiet(*_a):
    pass


@pytest.fixture(scope="module")
def pools(spark, tmp_path_factory):
    """(base dir, curate manifest): base/curate is the curate output, base/images-{curated,matched}
    the downloads of its curated/ and matched/."""
    base = tmp_path_factory.mktemp("source")
    write_sample_metadata(base / "metadata")
    with HostileServer() as srv:
        rows = []
        for i in range(24):
            url = srv.add(f"p{i}.jpg", make_jpeg(64 + 4 * i, 48, seed=300 + i))
            a, b = NOUNS[i % len(NOUNS)], NOUNS[(i * 5 + 3) % len(NOUNS)]
            rows.append({"URL": url, "TEXT": f"a photo of the {a} next to the {b} in the morning"})
            if i % 2:  # a second alt text for the same image: matched/ keeps both, curated/ one
                rows.append({"URL": url, "TEXT": f"my {b} and the old {a} on a sunny day"})
        table = base / "pairs.parquet"
        pq.write_table(pa.Table.from_pylist(rows), table)
        cfg = CurateConfig(inputs=(str(table),), metadata=str(base / "metadata"), output=str(base / "curate"),
                           seed=3)
        manifest = curate.run(cfg, spark, progress=_quiet)
        for name in ("curated", "matched"):
            report = download_job.run(spark, str(base / "curate" / name), str(base / f"images-{name}"), DL,
                                      progress=False, log=_quiet)
            assert report["succeeded"] == 24 and report["input_kind"] == name, report
    return base, manifest


def _train_args(out, shards, *more) -> list[str]:
    cfg = micro_config(out.parent / f"{out.name}.json", steps=2, workers=0, batch=8)
    return ["--config", str(cfg), "--shards", str(shards), "--output", str(out), "--quiet", "--no-eval", *more]


def test_download_records_what_its_shards_were_built_from(pools):
    base, curate_manifest = pools
    digest = hashlib.sha256((base / "curate" / "_MANIFEST.json").read_bytes()).hexdigest()
    for name in ("curated", "matched"):
        m = json.loads((base / f"images-{name}" / "_MANIFEST.json").read_text())
        assert m["source"] == name
        run = m["curate_run"]
        assert run["output"] == str(base / "curate") and run["manifest_sha256"] == digest
        assert run["metadata_version"] == curate_manifest["metadata"]["version"] == m["metadata_version"]
        assert (run["seed"], run["t_en"]) == (3, curate_manifest["config"]["t_en"])


def test_online_curation_of_a_curated_download_is_refused_in_one_line(pools, tmp_path, capsys):
    from training.train import main

    base, _ = pools
    out = tmp_path / "run"
    rc = main(_train_args(out, base / "images-curated", "--entry-probs", str(base / "curate" / "entry_probs")))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: "), err
    assert "matched/" in err and f"--mode offline --curated {base / 'curate' / 'curated'}" in err
    assert not (out / "tokenizer.json").exists(), "refused before the tokenizer, model and data start"


def test_matched_download_trains_online_and_curated_download_offline(pools, tmp_path, capsys):
    from training.train import train

    base, _ = pools
    online = train(_train_args(tmp_path / "online", base / "images-matched",
                               "--entry-probs", str(base / "curate" / "entry_probs")))
    assert online["finished"] and online["data"]["images_out"] == 2 * 8
    offline = train(_train_args(tmp_path / "offline", base / "images-curated", "--mode", "offline",
                                "--curated", str(base / "curate" / "curated")))
    assert offline["finished"] and offline["data"]["images_rejected"]["not_curated"] == 0
    assert "warning" not in capsys.readouterr().err


def test_download_from_before_sources_were_recorded_trains_with_a_warning(pools, tmp_path, capsys):
    from training.train import train

    base, _ = pools
    old = tmp_path / "images-old"
    shutil.copytree(base / "images-matched", old)
    manifest = json.loads((old / "_MANIFEST.json").read_text())
    for key in ("source", "curate_run"):  # what the download job wrote before it recorded them
        del manifest[key]
    runs.write_json(str(old / "_MANIFEST.json"), manifest)
    rep = train(_train_args(tmp_path / "run", old, "--entry-probs", str(base / "curate" / "entry_probs")))
    assert rep["finished"]
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("train: warning: ")]
    assert len(warnings) == 1 and str(old) in warnings[0] and "--mode offline" in warnings[0]
