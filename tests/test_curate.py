"""The curate job end to end on real local Spark: formulas, partition invariance, bad input, kill + rerun,
incremental reruns and table input."""

from __future__ import annotations

import glob
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation import balance
from curation.curate_config import CurateConfig
from curation.inputs import iter_wat_events
from curation.lid import LanguageIdentifier
from curation.matcher import match_ids
from curation.metadata_dir import MetadataDir
from curation.samples.alt_texts import write_sample
from curation.samples.wat_writer import encode_warc_record, gzip_member, write_wat
from curation.urls import image_uuid, normalize_url
from jobs.curate import InjectedFailure, input_id, plan_inputs, run

pytestmark = pytest.mark.spark
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T_EN = 6  # small enough that English has a head above it in the test sample
SEED = 11


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("curate-sample"), seed=1, files=8, pages_per_file=7)


def _cfg(sample, output, inputs=None, **kw) -> CurateConfig:
    return CurateConfig(inputs=tuple(inputs or sample["wat_files"]), metadata=sample["metadata"], output=str(output),
                        t_en=T_EN, seed=SEED, **kw)


def _quiet(*_a):
    pass


@pytest.fixture(scope="module")
def baseline(spark, sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "out"
    manifest = run(_cfg(sample, out, partitions=1), spark, progress=_quiet)
    return out, manifest


def _files_rows(path) -> list[tuple[str, list[dict]]]:
    """(file name, rows) for every Parquet file of an output directory, in name order."""
    return [(os.path.basename(f), pq.read_table(f).to_pylist()) for f in sorted(glob.glob(os.path.join(path, "*.parquet")))]


def _same_outputs(a, b):
    for name in ("matched", "counts", "curated", "rejects"):
        assert _files_rows(a / name) == _files_rows(b / name), name
    assert json.load(open(a / "thresholds.json")) == json.load(open(b / "thresholds.json"))
    for f in sorted(os.listdir(a / "entry_probs")):
        assert np.array_equal(np.load(a / "entry_probs" / f), np.load(b / "entry_probs" / f)), f


# --- the paper's formulas, computed independently in plain Python ---------------------------------


def _independent(files, metadata, t_en, seed):
    md = MetadataDir(metadata)
    pairs = [v for f in files for k, v in iter_wat_events(f) if k == "pair"]
    lid = LanguageIdentifier().predict([p["text"] for p in pairs])
    texts = {}
    for p, (_label, _prob, lang) in zip(pairs, lid, strict=False):
        if lang in md.languages():
            ids = match_ids(md.automaton(lang), p["text"]).tolist()
            if ids:
                texts[(p["uuid"], p["text"])] = (lang, ids)
    counts = {lang: Counter() for lang in md.languages()}
    for lang, ids in texts.values():
        for e in ids:
            counts[lang][e] += 1
    dense = {lang: [counts[lang].get(i, 0) for i in range(md.num_entries(lang))] for lang in md.languages()}
    en = dense["en"]
    p = sum(c for c in en if c < t_en) / sum(en)
    t = {}
    for lang, cs in dense.items():
        if lang == "en":
            t[lang] = t_en
            continue
        total, cum, best, best_d = sum(cs), 0, 0, None
        for c in sorted(cs):
            cum += c
            d = abs(cum / total - p) if total else 0.0
            if best_d is None or d < best_d:
                best, best_d = c, d
        t[lang] = best if total else 0
    prob = {lang: [float(np.float32(t[lang] / max(c, t[lang]))) if max(c, t[lang]) else 1.0 for c in cs]
            for lang, cs in dense.items()}
    images = {}
    for (uuid, text), (lang, ids) in texts.items():
        images.setdefault(uuid, []).append((text, lang, ids))
    curated = {}
    for uuid, ts in images.items():
        ts.sort()
        text, lang, ids = ts[int(balance.pick_index([uuid], [len(ts)], seed, 0)[0])]
        keep_prob = 1.0 - math.prod(1.0 - prob[lang][e] for e in ids)
        if balance.uniforms([uuid], seed, 0, "keep")[0] < keep_prob:
            curated[uuid] = (text, lang, ids)
    return counts, p, t, prob, images, curated


def test_counts_thresholds_probs_and_sample_equal_the_paper(baseline, sample):
    out, manifest = baseline
    counts, p, t, prob, images, curated = _independent(sample["wat_files"], sample["metadata"], T_EN, SEED)
    got_counts = {(r["lang"], r["entry_id"]): r["count"] for _f, rows in _files_rows(out / "counts") for r in rows}
    assert got_counts == {(lang, e): n for lang, c in counts.items() for e, n in c.items()}
    th = json.load(open(out / "thresholds.json"))
    assert th["p"] == pytest.approx(p, abs=1e-12) and 0 < p < 1  # English really has a head
    assert {lang: v["t"] for lang, v in th["languages"].items()} == t
    for lang, probs in prob.items():
        assert np.load(out / "entry_probs" / f"{lang}.npy").tolist() == pytest.approx(probs, abs=1e-7), lang
    matched = {r["uuid"]: [(x["text"], x["lang"], x["entry_ids"]) for x in r["texts"]]
               for _f, rows in _files_rows(out / "matched") for r in rows}
    assert matched == images
    got = {r["uuid"]: (r["text"], r["lang"], r["entry_ids"]) for _f, rows in _files_rows(out / "curated") for r in rows}
    assert got == curated and 0 < len(got) < len(images)
    # stage accounting is complete and chained
    acct = manifest["accounting"]
    assert all(s["balanced"] for s in acct.values())
    assert acct["read"]["in"] == sample["records"]
    assert acct["group"]["out"] == sum(len(v) for v in images.values()) and acct["sample"]["out"] == len(got)
    assert os.path.exists(out / "_SUCCESS") and os.path.exists(out / "report.html")
    rep = json.load(open(out / "report.json"))
    assert rep["all_stages_balanced"] and rep["rows"]["curated"] == len(got)


def test_three_partitions_give_identical_output(spark, sample, baseline, tmp_path):
    out = tmp_path / "p3"
    run(_cfg(sample, out, partitions=3), spark, progress=_quiet)
    _same_outputs(baseline[0], out)


def test_run_killed_in_grouping_leaves_nothing_complete_and_rerun_reads_no_input_again(spark, sample, baseline,
                                                                                     tmp_path):
    """SIGKILL to the driver while it groups per image: no output a reader could take, and the
    rerun (with 8 partitions) reuses every input's state and equals an uninterrupted run."""
    out = tmp_path / "killed"
    args = [sys.executable, os.path.join(ROOT, "jobs", "curate.py"), "--metadata", sample["metadata"],
            "--output", str(out), "--t-en", str(T_EN), "--seed", str(SEED), "--master", "local[1]"]
    for f in sample["wat_files"]:
        args += ["--input", f]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not glob.glob(str(tmp_path / ".killed.staging-*" / "matched")):  # phase 2 has begun
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.time() < deadline, "grouping never started"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not out.exists(), "a killed first run must not leave an output a reader could take"
    manifest = run(_cfg(sample, out, partitions=8), spark, progress=_quiet)
    assert (manifest["inputs"]["read"], manifest["inputs"]["reused"]) == (0, 8)
    _same_outputs(baseline[0], out)
    assert not glob.glob(str(tmp_path / ".killed.staging-*")), "the rerun cleans what the killed run left"


def test_incremental_rerun_reads_only_new_inputs(spark, sample, baseline, tmp_path):
    out = tmp_path / "inc"
    first = run(_cfg(sample, out, inputs=sample["wat_files"][:4]), spark, progress=_quiet)
    assert first["inputs"] == {**first["inputs"], "count": 4, "read": 4, "reused": 0}
    before = _files_rows(out / "matched")
    with pytest.raises(InjectedFailure):
        run(_cfg(sample, out, fail_after="stage1"), spark, progress=_quiet)
    # the failed run changed nothing: the previous complete output is still there
    assert (out / "_SUCCESS").exists() and _files_rows(out / "matched") == before
    assert not glob.glob(str(tmp_path / ".inc.staging-*"))
    second = run(_cfg(sample, out), spark, progress=_quiet)
    # the failed run's phase 1 survived it: its 4 new inputs are not read again either
    assert (second["inputs"]["reused"], second["inputs"]["read"]) == (8, 0)
    _same_outputs(baseline[0], out)
    assert second["accounting"] == baseline[1]["accounting"]


def test_plan_inputs_reuses_only_unchanged_inputs_of_the_same_fingerprint(tmp_path):
    files = []
    for i in range(3):
        f = tmp_path / f"in-{i}.wat.gz"
        f.write_bytes(b"x" * (i + 1))
        files.append(str(f))
    state = tmp_path / "state" / "fp1"
    reused, new, ledger, keys = plan_inputs(files[:2], str(state), True)
    assert reused == [] and new == files[:2]
    for iid in ledger:  # their state completes (stats.json is written last)
        d = state / f"input_id={keys[iid]}"
        d.mkdir(parents=True)
        (d / "stats.json").write_text("{}")
    reused, new, _, _ = plan_inputs(files, str(state), True)
    assert reused == [input_id(f) for f in files[:2]] and new == files[2:]
    os.utime(files[0], ns=(1, 1))  # a changed input is read again
    reused, new, _, _ = plan_inputs(files, str(state), True)
    assert reused == [input_id(files[1])] and new == [files[0], files[2]]
    assert plan_inputs(files, str(tmp_path / "state" / "fp2"), True)[0] == []  # other settings / metadata / code
    assert plan_inputs(files, str(state), False)[0] == []  # --no-incremental


# --- bad input ------------------------------------------------------------------------------------


def _bad_wat_files(d):
    good = d / "good.wat.gz"
    write_wat(good, [{"page_url": "https://ex.com/a/p.html", "links": [
        {"path": "IMG@/src", "url": "img/1.jpg", "alt": "dog and cat"},
        {"path": "IMG@/src", "url": "/2.jpg", "alt": ""},  # empty alt
        {"path": "IMG@/src", "url": "/3.jpg", "alt": "dog " * 262_144},  # a 1 MB alt-text
        {"path": "IMG@/src", "url": "/4.jpg", "alt": "the house by the river"}]}])
    trunc = d / "truncated.wat.gz"
    write_wat(trunc, [{"page_url": f"https://ex.com/t{i}.html",
                       "links": [{"path": "IMG@/src", "url": f"/t{i}.jpg", "alt": "a dog"}]} for i in range(3)])
    raw = trunc.read_bytes()
    trunc.write_bytes(raw[: len(raw) - 30])

    def record(payload: bytes) -> bytes:
        return gzip_member(encode_warc_record("metadata", payload, {"WARC-Target-URI": "https://ex.com/x"}))

    mixed = d / "mixed.wat.gz"
    envelope = {"Envelope": {"WARC-Header-Metadata": {"WARC-Target-URI": "https://ex.com/m.html"},
                             "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": [
                                 {"path": "IMG@/src", "url": "/m.jpg", "alt": "the cat on the chair"}]}}}}}
    mixed.write_bytes(
        record(b'{"Envelope": {"Payload-Metadata": ')  # malformed JSON
        + record(b'{"Envelope": {"x": "\xff\xfe caf\xe9"}}')  # invalid UTF-8
        + record(json.dumps({"Container": {}}).encode())  # missing keys
        + record(json.dumps(envelope).encode()))  # fine
    return [good, trunc, mixed]


def test_bad_wat_every_record_accounted_for(spark, sample, tmp_path):
    files = _bad_wat_files(tmp_path)
    out = tmp_path / "out"
    manifest = run(_cfg(sample, out, inputs=[str(f) for f in files]), spark, progress=_quiet)
    acct = manifest["accounting"]
    assert all(s["balanced"] for s in acct.values()), acct
    read, extract = acct["read"]["rejected"], acct["extract"]["rejected"]
    for reason in ("malformed_json", "invalid_utf8", "missing_keys"):
        assert read[reason] == 1, reason
    assert read.get("truncated_gzip", 0) + read.get("truncated_record", 0) == 1
    assert extract["empty_text"] == 1 and extract["text_too_long"] == 1
    # records: 2 warcinfo skips + good (1) + truncated (2 whole + 1 cut) + mixed (4, no warcinfo)
    assert acct["read"]["in"] == 2 + 1 + 3 + 4
    rejects = Counter(r["reason"] for _f, rows in _files_rows(out / "rejects") for r in rows)
    assert rejects["malformed_json"] == 1 and rejects["text_too_long"] == 1 and rejects["empty_text"] == 1
    matched = {x["text"] for _f, rows in _files_rows(out / "matched") for r in rows for x in r["texts"]}
    assert {"dog and cat", "the house by the river", "the cat on the chair", "a dog"} <= matched
    rep = json.load(open(out / "report.json"))
    assert rep["accounting"] == acct and rep["reject_reasons"]["read:malformed_json"] == 1


def test_table_input_alt_text_1000(spark, sample, tmp_path):
    from tests.conftest import shared_file

    table = shared_file("web/alt-text-1000.parquet")
    out = tmp_path / "out"
    manifest = run(_cfg(sample, out, inputs=[str(table)]), spark, progress=_quiet)
    acct = manifest["accounting"]
    assert acct["read"]["in"] == 1000 and all(s["balanced"] for s in acct.values())
    assert acct["lid"]["in"] + sum(acct["extract"]["rejected"].values()) + sum(acct["read"]["rejected"].values()) == 1000
    src = pq.read_table(table).to_pylist()
    uuids = {image_uuid(u) for u, _ in (normalize_url(r["URL"]) for r in src) if u}
    matched = [r for _f, rows in _files_rows(out / "matched") for r in rows]
    assert matched and {r["uuid"] for r in matched} <= uuids
    assert all(r["uuid"] == image_uuid(r["url"]) for r in matched)
    assert {x["source"] for r in matched for x in r["texts"]} == {"table"}
    assert gzip  # (bad-input helpers above use gzip members)


def test_input_without_any_match_gives_empty_complete_outputs(spark, sample, tmp_path):
    path = tmp_path / "nomatch.wat.gz"
    write_wat(path, [{"page_url": "https://ex.com/a.html", "type": "request"},
                     {"page_url": "https://ex.com/a.html", "links": [{"path": "IMG@/src", "url": "/x.jpg", "alt": "zzqx"}]}])
    out = tmp_path / "out"
    manifest = run(_cfg(sample, out, inputs=[str(path)]), spark, progress=_quiet)
    assert manifest["rows"]["images"] == 0 and manifest["rows"]["curated"] == 0
    assert all(s["balanced"] for s in manifest["accounting"].values())
    assert (out / "_SUCCESS").exists()
    for name in ("matched", "curated", "counts"):
        assert sum(len(rows) for _f, rows in _files_rows(out / name)) == 0, name
    th = json.load(open(out / "thresholds.json"))
    assert th["p"] == 0.0 and all(v["matched_texts"] == 0 for v in th["languages"].values())


def test_many_uuid_buckets_give_the_same_content(spark, sample, baseline, tmp_path, monkeypatch):
    """Small files: several uuid buckets and reject parts, results summed across tasks (treeReduce,
    which large runs use instead of merging in the driver)."""
    from jobs import common

    monkeypatch.setattr(common, "DRIVER_MERGE_MAX", 1)
    out = tmp_path / "buckets"
    manifest = run(_cfg(sample, out, partitions=3, rows_per_file=40), spark, progress=_quiet)
    assert len(glob.glob(str(out / "matched" / "*.parquet"))) >= 3
    base = baseline[0]

    def rows(path, name):
        return [r for _f, rs in _files_rows(path / name) for r in rs]
    for name in ("matched", "curated", "counts"):
        assert rows(out, name) == rows(base, name), name  # parts are consecutive ranges of one order
    key = lambda r: tuple(r.values())  # noqa: E731
    assert sorted(rows(out, "rejects"), key=key) == sorted(rows(base, "rejects"), key=key)
    assert json.load(open(out / "thresholds.json")) == json.load(open(base / "thresholds.json"))
    assert manifest["accounting"] == baseline[1]["accounting"] and manifest["rows"] == baseline[1]["rows"]


def test_inputs_left_off_a_rerun_are_refused_unless_dropped_explicitly(spark, sample, tmp_path):
    out = tmp_path / "drop"
    run(_cfg(sample, out, inputs=sample["wat_files"][:3]), spark, progress=_quiet)
    before = _files_rows(out / "matched")
    with pytest.raises(ValueError, match="--drop-missing-inputs"):
        run(_cfg(sample, out, inputs=sample["wat_files"][:2]), spark, progress=_quiet)
    assert _files_rows(out / "matched") == before  # nothing was published
    lines = []
    manifest = run(_cfg(sample, out, inputs=sample["wat_files"][:2], drop_missing_inputs=True), spark,
                   progress=lines.append)
    assert manifest["inputs"]["dropped"] == [sample["wat_files"][2]]
    assert any("not in this one" in ln and sample["wat_files"][2] in ln for ln in lines)


def test_the_job_shows_each_phase_in_a_log_and_a_held_lock_is_a_one_line_error(sample, tmp_path):
    out = tmp_path / "logged"
    args = [sys.executable, os.path.join(ROOT, "jobs", "curate.py"), "--metadata", sample["metadata"],
            "--output", str(out), "--t-en", str(T_EN), "--master", "local[1]", "--input", sample["wat_files"][0]]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for phase in ("curate 1/4 read+LID+match: 1/1 inputs", "curate 2/4 exchange: 1/1 runs",
                  "curate 3/4 group per image:", "curate 4/4 sample:"):
        assert phase in res.stderr, res.stderr[-2000:]
    from curation.runs import output_lock

    with output_lock(str(out), "curate"):  # another run holds it
        held = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "JAVA_HOME": "/nonexistent-java"})  # refused before Spark
    assert held.returncode == 2 and held.stderr.count("\n") == 1 and "holds the lock" in held.stderr, held.stderr


def test_wrong_columns_are_a_one_line_error_before_spark_and_no_valid_record_exits_non_zero(sample, tmp_path):
    import pyarrow as pa

    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"url": ["https://ex.com/a.jpg"], "caption": ["a dog"]}), table)
    job = [sys.executable, os.path.join(ROOT, "jobs", "curate.py"), "--metadata", sample["metadata"],
           "--t-en", str(T_EN), "--master", "local[1]"]
    res = subprocess.run([*job, "--input", str(table), "--output", str(tmp_path / "o1")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "JAVA_HOME": "/nonexistent"})
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "no column" in res.stderr and "caption" in res.stderr and "--url-col" in res.stderr
    empty = tmp_path / "requests.wat.gz"
    write_wat(empty, [])  # a WAT holding a warcinfo record only: valid, but nothing to curate
    res = subprocess.run([*job, "--input", str(empty), "--output", str(tmp_path / "o2")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "hold no image link with a text" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "o2").exists()
