"""curation.accounting, curation.annotate and the offline sample without Spark: stage accounting,
annotation of real WAT events, the offline sample."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import accounting, annotate, balance, grouping, sampling
from curation.inputs import SKIP_REASONS, input_format, iter_input_events, iter_wat_events
from curation.matcher import match_ids
from curation.samples.alt_texts import write_sample
from curation.samples.wat_writer import write_wat
from curation.schemas import MATCHED, MATCHED_TEXT


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("pipe-sample"), seed=3, files=1, pages_per_file=25)


@pytest.fixture(scope="module")
def resources(sample):
    return annotate.worker_resources(sample["metadata"], None, max_loaded=4)


def test_stage_accounting_balances_and_merges():
    a = accounting.StageAccounting()
    a.add("lid", 10, 7, {"no_metadata_lang": 3})
    b = accounting.StageAccounting({"lid": {"in": 5, "out": 5, "rejected": {}}})
    a.merge(b).merge(b.to_dict())
    d = a.to_dict()
    assert d["lid"]["in"] == 20 and d["lid"]["out"] == 17 and d["lid"]["rejected"] == {"no_metadata_lang": 3}
    assert d["lid"]["balanced"] and a.unbalanced() == []
    a.add("match", 4, 1, {"no_match": 2})
    assert a.unbalanced() == ["match"]
    assert list(accounting.StageAccounting({"sample": d["lid"], "read": d["lid"]}).to_dict()) == ["read", "sample"]


def test_input_format_from_name():
    assert input_format("x/CC-MAIN-1.warc.wat.gz") == "wat"
    assert input_format("s3://b/part-0.parquet") == "parquet"
    assert input_format("a.jsonl.gz") == "jsonl"
    assert input_format("a.parquet", "wat") == "wat"


def _run_stage1(path, resources, batch_size=7, count_only=("no_match", "not_response")):
    stage = annotate.Annotator("i1", str(path), resources, batch_size=batch_size, count_only=count_only)
    table = pa.Table.from_batches(list(stage.run(iter_wat_events(str(path)))), schema=annotate.ANNOTATED)
    return stage, table


def test_stage1_matches_every_text_like_the_matcher(sample, resources):
    path = sample["wat_files"][0]
    stage, table = _run_stage1(path, resources)
    rows = table.to_pylist()
    texts = [r for r in rows if r["kind"] == "text"]
    stats = [r for r in rows if r["kind"] == "stats"]
    assert len(stats) == 1 and texts
    doc = json.loads(stats[0]["detail"])
    acct = doc["accounting"]
    assert all(s["balanced"] for s in acct.values()), acct
    assert acct["match"]["out"] == len(texts)
    assert acct["read"]["in"] == sample["records"]
    # chained stages: what one stage outputs the next one reads
    assert acct["extract"]["out"] == acct["lid"]["in"] and acct["lid"]["out"] == acct["match"]["in"]
    # the independent path: LID one text at a time, match_ids on the language's automaton
    pairs = [v for k, v in iter_wat_events(path) if k == "pair"]
    expected = []
    for p in pairs:
        label, prob, lang = resources.lid.predict([p["text"]])[0]
        if lang in resources.languages:
            ids = match_ids(resources.automaton(lang), p["text"])
            if ids.size:
                expected.append((p["uuid"], p["text"], lang, ids.tolist()))
    got = [(r["uuid"], r["text"], r["lang"], r["entry_ids"]) for r in texts]
    assert sorted(got) == sorted(expected)
    assert all(r["input_id"] == "i1" and 0 < r["lid_prob"] <= 1.0001 for r in texts)
    # bulk reasons get no reject rows without a sample rate; every other reason does, with its stage
    rejects = [r for r in rows if r["kind"] == "reject"]
    assert rejects and {r["reason"] for r in rejects}.isdisjoint({"no_match", "not_response"})
    assert {r["stage"] for r in rejects} <= {"read", "extract", "lid", "match"}
    n_reject_rows = sum(n for st in ("read", "extract", "lid", "match") for reason, n in acct[st]["rejected"].items()
                        if reason not in ("no_match", "not_response", *SKIP_REASONS))  # skips: counted, no rows
    assert len(rejects) == n_reject_rows


def test_stage1_loads_each_automaton_rarely_with_a_small_cache(sample, monkeypatch):
    """Texts are queued per language, so a 2-automaton LRU does not reload per batch and language."""
    from curation import metadata_dir

    loads = []
    real = metadata_dir.load_automaton
    monkeypatch.setattr(metadata_dir, "load_automaton", lambda path: loads.append(path) or real(path))
    res = annotate.WorkerResources(sample["metadata"], None, max_loaded=2)
    events = list(iter_wat_events(sample["wat_files"][0]))
    n_pairs = sum(1 for k, _ in events if k == "pair")
    stage = annotate.Annotator("i1", "x", res, batch_size=64)
    table = pa.Table.from_batches(list(stage.run(events)), schema=annotate.ANNOTATED)
    langs = {r["lang"] for r in table.to_pylist() if r["kind"] == "text"}
    assert len(langs) > 2
    # at most one load per full queue of a language plus one final flush per language
    assert len(loads) <= n_pairs // 64 + len(res.languages)
    assert len(res.metadata._automata) <= 2


def test_automata_cache_is_bounded_by_size(sample):
    import os

    from curation.metadata_dir import MetadataDir

    root = sample["metadata"]
    size_of = {lang: os.path.getsize(os.path.join(root, "automata", f"{lang}.ac")) for lang in MetadataDir(root).languages()}
    langs = sorted(size_of, key=size_of.get)
    sizes = [size_of[lang] for lang in langs]
    big, small = langs[-1], langs[0]
    # room for the biggest automaton and not for it plus the smallest
    budget_mb = (sizes[-1] + sizes[0] - 1) / (1024 * 1024)
    md = MetadataDir(root, max_loaded=100, max_loaded_mb=budget_mb)
    a = md.automaton(big)
    assert md.automaton(big) is a and md.loads == 1
    md.automaton(small)  # over budget with both: the least recently used (big) goes
    assert list(md._automata) == [small]
    md.automaton(big)
    assert list(md._automata) == [big] and md.loads == 3
    # one automaton over the whole budget is still served (and kept alone)
    tiny = MetadataDir(root, max_loaded=100, max_loaded_mb=sizes[-1] / (2 * 1024 * 1024))
    tiny.automaton(big)
    assert list(tiny._automata) == [big]
    # no size limit: the count decides
    free = MetadataDir(root, max_loaded=len(langs))
    for lang in langs + langs:
        free.automaton(lang)
    assert free.loads == len(langs)


def test_stage1_counts_bad_records(tmp_path, resources):
    path = tmp_path / "bad.wat.gz"
    write_wat(path, [{"page_url": "https://ex.com/a.html",
                      "links": [{"path": "IMG@/src", "url": "/a.jpg", "alt": "dog and cat"},
                                {"path": "IMG@/src", "url": "data:image/gif;base64,AAA", "alt": "dog"}]}])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 20])  # truncate inside the last gzip member
    _stage, table = _run_stage1(path, resources)
    rows = table.to_pylist()
    acct = json.loads(rows[-1]["detail"])["accounting"]
    assert acct["read"]["rejected"].get("truncated_gzip", 0) + acct["read"]["rejected"].get("truncated_record", 0) == 1
    assert all(s["balanced"] for s in acct.values())


def _matched_batch(images):
    """images: [(uuid, url, [(text, lang, ids)])] -> a matched/ record batch."""
    texts = [[{"text": t, "source": "alt", "page_url": "", "lid": lang, "lid_prob": 0.9, "lang": lang,
               "entry_ids": ids} for t, lang, ids in ts] for _u, _url, ts in images]
    return pa.RecordBatch.from_arrays(
        [pa.array([u for u, _, _ in images]), pa.array([url for _, url, _ in images]),
         pa.array(texts, pa.list_(MATCHED_TEXT))], names=["uuid", "url", "texts"])


def test_curate_batches_equals_the_formula():
    rng = np.random.default_rng(7)
    probs = {"en": rng.uniform(0.05, 1.0, 30).astype(np.float32), "de": rng.uniform(0.05, 1.0, 10).astype(np.float32)}
    images = []
    for k in range(300):
        ts = []
        for j in range(int(rng.integers(1, 4))):
            lang = "en" if rng.random() < 0.6 else "de"
            ids = sorted({int(x) for x in rng.integers(0, len(probs[lang]), int(rng.integers(1, 4)))})
            ts.append((f"text {k} {j}", lang, ids))
        images.append((f"{k:024x}", f"https://ex.com/{k}.jpg", ts))
    batch = _matched_batch(images)
    # a sliced batch (as Spark may hand over) must give the same answer as the pieces
    got = [r for b in (batch.slice(0, 120), batch.slice(120)) for out in
           sampling.curate_batches([b], probs_by_lang=probs, seed=5) for r in out.to_pylist()]
    uuids = [u for u, _, _ in images]
    picks = balance.pick_index(uuids, [len(ts) for _, _, ts in images], 5, 0)
    u_keep = balance.uniforms(uuids, 5, 0, "keep")
    expected = []
    for (uuid, url, ts), pick, u in zip(images, picks, u_keep, strict=False):
        text, lang, ids = ts[pick]
        keep_prob = 1.0 - math.prod(1.0 - float(probs[lang][e]) for e in ids)
        if u < keep_prob:
            expected.append({"uuid": uuid, "url": url, "text": text, "lang": lang, "entry_ids": ids})
    assert got == expected
    assert 0 < len(got) < len(images)


def test_curate_part_rejects_unknown_language(tmp_path):
    """The sampling does not keep a text in a language without entry probabilities (as training
    needs, tests/test_sampling.py); the curate job, whose probabilities cover every matched
    language, refuses one instead, reading matched/ or the stored picks."""
    batch = _matched_batch([("00" * 12, "https://e/x.jpg", [("hallo", "xx", [0])])])
    matched, picked = tmp_path / "matched", tmp_path / "picked"
    matched.mkdir()
    picked.mkdir()
    pq.write_table(pa.Table.from_batches([batch]).cast(MATCHED), matched / grouping.part_name(0))
    grouping.write_arrow(pa.Table.from_batches([sampling.pick_texts(batch, 0)]),
                              grouping.picked_path(str(picked), 0))
    for picked_dir in (None, str(picked)):
        with pytest.raises(KeyError, match="xx"):
            grouping.curate_part(0, str(matched), str(tmp_path / "curated"), {"en": np.ones(1, np.float32)},
                                      seed=0, picked_dir=picked_dir)


def test_stage1_reads_s3_inputs_and_s3_metadata(sample, s3_bucket, tmp_path):
    """s3:// inputs stream through curation.storage; s3:// metadata is cached locally per worker."""
    import os

    import boto3
    import pyarrow.parquet as pq

    s3 = boto3.client("s3")
    for root, _dirs, files in os.walk(sample["metadata"]):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), sample["metadata"])
            s3.upload_file(os.path.join(root, f), s3_bucket, f"meta/{rel}")
    wat_path = sample["wat_files"][0]
    s3.upload_file(wat_path, s3_bucket, "in/a.wat.gz")
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"URL": ["https://ex.com/a.jpg", "ftp://x/y.jpg"], "TEXT": ["dog and cat", "dog"]}), table)
    s3.upload_file(str(table), s3_bucket, "in/t.parquet")
    res = annotate.WorkerResources(f"s3://{s3_bucket}/meta", None, max_loaded=4, cache_dir=str(tmp_path / "cache"))
    assert res.local_root.startswith(str(tmp_path / "cache")) and "en" in res.languages
    local = annotate.WorkerResources(sample["metadata"], None, max_loaded=4)

    def rows(path, fmt, r):
        st = annotate.Annotator("i", path, r)
        out = pa.Table.from_batches(list(st.run(iter_input_events(path, fmt, "URL", "TEXT"))),
                                    schema=annotate.ANNOTATED).to_pylist()
        return sorted((x["uuid"], x["text"], x["entry_ids"]) for x in out if x["kind"] == "text"), out[-1]

    got, _ = rows(f"s3://{s3_bucket}/in/a.wat.gz", "wat", res)
    want, _ = rows(wat_path, "wat", local)
    assert got == want and got
    got, stats = rows(f"s3://{s3_bucket}/in/t.parquet", "parquet", res)
    assert [g[1] for g in got] == ["dog and cat"]
    assert json.loads(stats["detail"])["accounting"]["extract"]["rejected"] == {"unsupported_scheme": 1}


def test_balance_counts_covers_every_metadata_language():
    from curation.schemas import COUNTS

    counts = pa.table({"lang": ["de", "en", "en"], "entry_id": [1, 0, 2], "count": [5, 9, 1]}, schema=COUNTS)
    dense, th, probs = grouping.balance_counts(counts, {"en": 3, "de": 2, "ja": 4}, t_en=2, matched_by_lang={"en": 9})
    assert dense["en"].tolist() == [9, 0, 1] and dense["ja"].tolist() == [0, 0, 0, 0]
    assert th["en"]["t"] == 2 and th["en"]["p"] == pytest.approx(1 / 10) and th["en"]["matched_texts"] == 9
    assert probs["en"].tolist() == pytest.approx([2 / 9, 1.0, 1.0]) and probs["ja"].tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="xx"):
        grouping.dense_counts(pa.table({"lang": ["xx"], "entry_id": [0], "count": [1]}), {"en": 1})


def test_keep_probabilities_flat_equals_the_per_text_definition():
    rng = np.random.default_rng(11)
    probs = rng.uniform(0, 1, 50).astype(np.float32)
    probs[[3, 7]] = 1.0
    lists = [rng.integers(0, 50, int(rng.integers(0, 6))) for _ in range(400)]  # repeats and empty lists
    lengths = np.array([len(x) for x in lists])
    flat = np.concatenate(lists)
    expected = [balance.keep_probability(ids, probs) for ids in lists]  # 1 - prod(1 - p), text by text
    assert balance.keep_probabilities_flat(flat, lengths, probs) == pytest.approx(expected, abs=1e-12)
    assert np.array_equal(balance.keep_probabilities_flat(flat, lengths, probs), balance.keep_probabilities(lists, probs))
    with pytest.raises(IndexError):
        balance.keep_probabilities_flat(np.array([50]), np.array([1]), probs)


def test_bulk_reasons_keep_a_deterministic_sample_of_rows_and_the_rest_every_row(sample, resources):
    """rejects/ audits every reason: a row per reject, except 1 in `every` (at most `max`) of
    each bulk reason per input, the same rows whatever the batch size."""
    import itertools

    def rejects_of(batch_size, every, most):
        stage = annotate.Annotator("i1", "all", resources, batch_size=batch_size,
                                   count_only=("no_match", "no_metadata_lang"), sample_every=every, sample_max=most)
        events = itertools.chain.from_iterable(iter_wat_events(str(p)) for p in sample["wat_files"])
        rows = pa.Table.from_batches(list(stage.run(events)), schema=annotate.ANNOTATED).to_pylist()
        return [(r["stage"], r["reason"], r["detail"]) for r in rows if r["kind"] == "reject"], stage.acct.to_dict()

    rows, acct = rejects_of(7, 2, 1000)
    no_match = acct["match"]["rejected"]["no_match"]
    sampled = [r for r in rows if r[1] == "no_match"]
    assert no_match >= 10 and 0 < len(sampled) < no_match  # about half, chosen by content
    assert all(r[0] == "match" and r[2] for r in sampled)
    assert sorted(rejects_of(64, 2, 1000)[0]) == sorted(rows)  # batch size changes nothing
    every = [r for r in rejects_of(7, 1, 10**6)[0] if r[1] == "no_match"]
    assert len(every) == no_match  # 1 in 1: every row
    capped = [r for r in rejects_of(7, 1, 2)[0] if r[1] == "no_match"]
    assert len(capped) == 2 and set(capped) <= set(every)
    assert sorted(capped) == sorted([r for r in rejects_of(64, 1, 2)[0] if r[1] == "no_match"])
