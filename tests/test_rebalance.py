"""The rebalance job (jobs/rebalance.py, curation/rebalance.py) on real local Spark: over every matched
uuid it reproduces the curate run byte for byte; over a subset its counts, thresholds, entry
probabilities and sample are the paper's formulas on the filtered matched/; a real download over a
loopback HTTP server gives the valid uuids; user errors are one line before Spark."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import balance, sampling
from curation import rebalance as rb
from curation.curate_config import CurateConfig
from curation.samples.alt_texts import write_sample
from curation.schemas import CURATED, MATCHED
from jobs import rebalance as job
from jobs.curate import run as curate_run

pytestmark = pytest.mark.spark
T_EN = 6
SEED = 11


def _quiet(*_a):
    pass


@pytest.fixture(scope="module")
def source(spark, tmp_path_factory):
    """A curate run with several matched/ parts (uuid buckets)."""
    base = tmp_path_factory.mktemp("rebalance")
    sample = write_sample(base / "sample", seed=1, files=4, pages_per_file=7)
    out = base / "curated-out"
    cfg = CurateConfig(inputs=tuple(sample["wat_files"]), metadata=sample["metadata"], output=str(out), t_en=T_EN,
                       seed=SEED, rows_per_file=60)
    manifest = curate_run(cfg, spark, progress=_quiet)
    assert manifest["exchange"]["buckets"] >= 3
    return base, out


def _matched(out) -> pa.Table:
    return pa.concat_tables(pq.read_table(f, schema=MATCHED) for f in sorted(glob.glob(str(out / "matched" / "*.parquet"))))


def _rebalance(spark, source_out, output, **valid) -> dict:
    plan = job.preflight(str(source_out), str(output), **valid)
    return job.run(plan, spark, progress=_quiet)


def _file_bytes(root, sub) -> dict[str, bytes]:
    d = os.path.join(root, sub)
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def _hand_counts(matched: pa.Table) -> Counter:
    c = Counter()
    for row in matched.to_pylist():
        for t in row["texts"]:
            for e in t["entry_ids"]:
                c[(t["lang"], e)] += 1
    return c


def _dense(counts: Counter, num_entries: dict[str, int]) -> dict[str, np.ndarray]:
    out = {lang: np.zeros(n, np.int64) for lang, n in num_entries.items()}
    for (lang, e), n in counts.items():
        out[lang][e] = n
    return out


def test_every_matched_uuid_reproduces_the_curate_run_byte_for_byte(spark, source, tmp_path, monkeypatch):
    base, out = source
    uuids = _matched(out).column("uuid").to_pylist()
    rng = np.random.default_rng(0)
    lines = ["uuid"] + [uuids[i] for i in rng.permutation(len(uuids))] + uuids[:5] + [""]  # header, duplicates
    listing = tmp_path / "valid.txt"
    listing.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(rb, "TEXT_PIECE_BYTES", 97)  # many pieces cut inside lines
    new = tmp_path / "rb"
    manifest = _rebalance(spark, out, new, uuids=str(listing))
    assert manifest["exchange"]["runs"] > 1
    for sub in ("counts", "curated", "entry_probs"):
        assert _file_bytes(new, sub) == _file_bytes(out, sub), sub
    assert (new / "thresholds.json").read_bytes() == (out / "thresholds.json").read_bytes()
    assert manifest["rows"]["images"] == manifest["rows"]["images_source"] == len(uuids)
    assert manifest["valid"]["distinct"] == len(uuids) and manifest["valid"]["not_matched"] == 0
    assert all(v["images_dropped"] == 0 for v in manifest["by_lang"].values())
    assert (new / "report.json").exists() and (new / "report.html").exists() and (new / "_SUCCESS").exists()
    assert not (new / "matched").exists() and manifest["source"]["matched"] == str(out / "matched")
    # training reads the rebalanced output as it reads a curate output's
    from training.data import load_curated, load_entry_probs

    a, b = load_entry_probs(new / "entry_probs"), load_entry_probs(out / "entry_probs")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert load_curated(new / "curated") == load_curated(out / "curated")
    # the download job records which run its curated/ input came from
    from jobs.download import _curate_run

    recorded = _curate_run(str(new / "curated"))
    assert recorded["job"] == "rebalance" and recorded["output"] == str(new) and recorded["seed"] is not None
    # a rerun replaces its own earlier output
    again = _rebalance(spark, out, new, uuids=str(out / "matched"))  # Parquet with a uuid column
    assert again["rows"] == manifest["rows"] and _file_bytes(new, "curated") == _file_bytes(out, "curated")


def test_a_subset_is_the_formulas_on_the_filtered_matched(spark, source, tmp_path):
    base, out = source
    matched = _matched(out)
    uuids = matched.column("uuid").to_pylist()
    valid = [u for u in uuids if hashlib.sha1(u.encode()).digest()[0] % 2 == 0]
    strangers = [hashlib.sha224(f"not matched {i}".encode()).hexdigest()[:24] for i in range(7)]
    pq.write_table(pa.table({"uuid": valid + strangers}), tmp_path / "valid.parquet", row_group_size=10)
    new = tmp_path / "rb"
    manifest = _rebalance(spark, out, new, uuids=str(tmp_path / "valid.parquet"))

    kept = matched.filter(pa.array([u in set(valid) for u in uuids]))
    hand = _hand_counts(kept)
    got = pq.read_table(new / "counts").to_pylist()
    assert {(r["lang"], r["entry_id"]): r["count"] for r in got} == dict(hand)
    thresholds = json.loads((out / "thresholds.json").read_text())
    num_entries = {lang: th["entries"] for lang, th in thresholds["languages"].items()}
    dense = _dense(hand, num_entries)
    want = balance.language_thresholds(dense, T_EN, en="en")
    th = json.loads((new / "thresholds.json").read_text())
    assert th["p"] == want["en"]["p"]
    for lang, w in want.items():
        assert th["languages"][lang]["t"] == w["t"], lang
        probs = np.load(new / "entry_probs" / f"{lang}.npy")
        assert np.array_equal(probs, balance.entry_probabilities(dense[lang], w["t"])), lang
    assert th != json.loads((out / "thresholds.json").read_text())  # fewer images, other counts
    # curated/: the sampling of the kept images with the new probabilities and the source's seed
    probs = {lang: np.load(new / "entry_probs" / f"{lang}.npy") for lang in num_entries}
    expect = pa.Table.from_batches(list(sampling.curate_batches(kept.to_batches(), probs_by_lang=probs, seed=SEED)),
                                   schema=CURATED)
    assert pq.read_table(new / "curated").to_pylist() == expect.to_pylist()
    # what was kept and dropped, per language
    per = {}
    for row in matched.to_pylist():
        for lang in {t["lang"] for t in row["texts"]}:
            e = per.setdefault(lang, {"images_kept": 0, "images_dropped": 0, "texts_dropped": 0})
            e["images_kept" if row["uuid"] in set(valid) else "images_dropped"] += 1
        if row["uuid"] not in set(valid):
            for t in row["texts"]:
                per[t["lang"]]["texts_dropped"] += 1
    assert manifest["by_lang"] == dict(sorted(per.items()))
    assert manifest["rows"]["images"] == len(valid) and manifest["valid"]["not_matched"] == len(strangers)
    assert manifest["accounting"]["obtained"]["rejected"] == {"not_obtained": len(uuids) - len(valid)}


def test_the_images_a_download_obtained(spark, source, tmp_path):
    from test_fetch import HostileServer, make_jpeg

    from curation.download_config import DownloadConfig
    from jobs import download as download_job

    base, out = source
    matched = _matched(out)
    rows = matched.to_pylist()[:14]
    with HostileServer() as srv:
        for i, row in enumerate(rows):  # the images of a matched/ subset on loopback; every third is gone
            if i % 3:
                srv.add(f"m{i}.jpg", make_jpeg(64 + 4 * i, 48, seed=300 + i))
            row["url"] = f"{srv.base}/img/m{i}.jpg" if i % 3 else f"{srv.base}/status/404"
        src = tmp_path / "to-download"
        src.mkdir()
        pq.write_table(pa.Table.from_pylist(rows, schema=MATCHED), src / "part-00000.parquet")
        cfg = DownloadConfig(allow_loopback=True, connect_timeout=1.0, read_timeout=1.5, total_timeout=2.0,
                             retries=0, shard_size=5, threads=4, image_size=32)
        images = tmp_path / "images"
        download_job.run(spark, str(src), str(images), cfg, progress=False, log=_quiet)
    got = set(pq.read_table(images, columns=["uuid"]).column("uuid").to_pylist())
    assert got == {r["uuid"] for i, r in enumerate(rows) if i % 3}
    new = tmp_path / "rb"
    manifest = _rebalance(spark, out, new, downloaded=str(images))
    kept = matched.filter(pa.array([u in got for u in matched.column("uuid").to_pylist()]))
    counts = {(r["lang"], r["entry_id"]): r["count"] for r in pq.read_table(new / "counts").to_pylist()}
    assert counts == dict(_hand_counts(kept))
    assert manifest["rows"]["images"] == len(got) and manifest["valid"]["kind"] == "downloaded"
    assert manifest["valid"]["download"]["source"] == "matched"
    assert set(pq.read_table(new / "curated").column("uuid").to_pylist()) <= got


def _main(capsys, *argv) -> tuple[int, str]:
    rc = job.main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def test_user_errors_are_one_line_before_spark(source, tmp_path, capsys):
    base, out = source
    listing = tmp_path / "valid.txt"
    listing.write_text(_matched(out).column("uuid")[0].as_py() + "\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("x")
    cases = {
        "missing source": (["--curated-output", str(tmp_path / "nope"), "--uuids", str(listing)], "does not exist"),
        "not a curate output": (["--curated-output", str(plain), "--uuids", str(listing)], "not a curate output"),
        "output == input": (["--curated-output", str(out), "--uuids", str(listing), "--output", str(out)], "overlap"),
        "output inside input": (["--curated-output", str(out), "--uuids", str(listing), "--output",
                                 str(out / "rb")], "overlap"),
        "missing list": (["--curated-output", str(out), "--uuids", str(tmp_path / "none.txt")], "not found"),
        "not a download": (["--curated-output", str(out), "--downloaded", str(out / "matched")],
                           "not a download output"),
    }
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases["empty list"] = (["--curated-output", str(out), "--uuids", str(empty)], "lists no uuid")
    junk = tmp_path / "junk.txt"
    junk.write_text("https://example.com/a.jpg\n")
    cases["not uuids"] = (["--curated-output", str(out), "--uuids", str(junk)], "is not an image uuid")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    cases["foreign output"] = (["--curated-output", str(out), "--uuids", str(listing), "--output", str(foreign)],
                               "not empty")
    for name, (argv, needle) in cases.items():
        if "--output" not in argv:
            argv = [*argv, "--output", str(tmp_path / "new")]
        rc, err = _main(capsys, *argv)
        assert rc == 2, name
        assert err.startswith("rebalance: error:") and "\n" not in err and needle in err, (name, err)
    assert (foreign / "todo.txt").read_text() == "mine" and not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):  # neither --downloaded nor --uuids: argparse's usage error
        job.main(["--curated-output", str(out), "--output", str(tmp_path / "new")])


def test_nothing_to_rebalance_publishes_nothing(spark, source, tmp_path):
    base, out = source
    listing = tmp_path / "other.txt"
    listing.write_text(hashlib.sha224(b"another crawl").hexdigest()[:24] + "\n")
    with pytest.raises(job.NothingToRebalance):
        _rebalance(spark, out, tmp_path / "rb", uuids=str(listing))
    assert not (tmp_path / "rb").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".rb.staging")]


def test_a_rebalanced_output_is_not_a_source(spark, source, tmp_path):
    base, out = source
    new = tmp_path / "rb"
    _rebalance(spark, out, new, uuids=str(out / "matched"))
    with pytest.raises(rb.RebalanceError, match="itself a rebalanced output"):
        job.preflight(str(new), str(tmp_path / "rb2"), uuids=str(out / "matched"))


def test_s3_source_and_output(spark, source, tmp_path, s3_server, s3_bucket):
    """A source on S3, the uuid list on S3, the output published on S3 (a run prefix made current by its
    manifest): the same bytes as the local run, and training's reader resolves the run."""
    from curation import storage
    from curation.layout import RebalanceOutput
    from training.data import load_entry_probs

    base, out = source
    src = f"s3://{s3_bucket}/crawl/out"
    for f in sorted(glob.glob(str(out / "**"), recursive=True)):
        if os.path.isfile(f) and not os.path.relpath(f, out).startswith("_state"):
            storage.write_bytes(storage.join(src, os.path.relpath(f, out)), open(f, "rb").read())
    uuids = _matched(out).column("uuid").to_pylist()
    listing = f"s3://{s3_bucket}/lists/valid.txt"
    storage.write_bytes(listing, ("\n".join(uuids) + "\n").encode())
    dest = f"s3://{s3_bucket}/crawl/rebalanced"
    manifest = _rebalance(spark, src, dest, uuids=listing)
    root = RebalanceOutput.published(dest).root
    assert "/_runs/" in root and storage.is_complete(dest)
    for sub in ("counts", "curated", "entry_probs"):
        local = _file_bytes(out, sub)
        assert {n: storage.read_bytes(storage.join(root, sub, n)) for n in local} == local, sub
    assert not [f for f in storage.list_files(root) if "/_picked/" in f or "/_exchange/" in f]
    probs = load_entry_probs(storage.join(dest, "entry_probs"))
    assert all(np.array_equal(probs[k], np.load(out / "entry_probs" / f"{k}.npy")) for k in probs)
    assert manifest["source"]["output"] == src


def test_a_run_that_counted_every_record_is_refused(spark, source, tmp_path):
    base, out = source
    every = tmp_path / "every"
    cfg = CurateConfig(inputs=tuple(sorted(glob.glob(str(base / "sample" / "wat" / "*.wat.gz"))))[:1],
                       metadata=str(base / "sample" / "metadata"), output=str(every), t_en=T_EN, seed=SEED,
                       count_identical_texts="every")
    curate_run(cfg, spark, progress=_quiet)
    with pytest.raises(rb.RebalanceError, match="count_identical_texts='every'"):
        job.preflight(str(every), str(tmp_path / "rb"), uuids=str(every / "matched"))
