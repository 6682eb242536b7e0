"""curation.grouping and the column-wise table path of curation.annotate, without Spark:
per-input state files, uuid buckets, grouping, counts and their merging."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import annotate, grouping, inputs
from curation.inputs import EventCounter, iter_table_events
from curation.samples.alt_texts import write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("stages-sample"), seed=5, files=3, pages_per_file=30)


@pytest.fixture(scope="module")
def resources(sample):
    return annotate.worker_resources(sample["metadata"], None, max_loaded=4)


@pytest.fixture(scope="module")
def state(sample, resources, tmp_path_factory):
    """Stage-1 state of the sample's WAT files: (state dir, input ids, stats)."""
    d = str(tmp_path_factory.mktemp("state"))
    ids, stats = [], {}
    for k, path in enumerate(sample["wat_files"]):
        iid = f"i{k}"
        stats[iid] = grouping.process_input(path, iid, "wat", d, resources, batch_size=16,
                                                 count_only=("no_match", "not_response"))
        ids.append(iid)
    return d, ids, stats


def test_table_columns_equal_the_event_path(tmp_path, resources):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "URL": ["https://ex.com/a.jpg", "ftp://x/y.jpg", "https://ex.com/b.jpg", "https://ex.com/c.jpg", None,
                "https://ex.com/a.jpg"],
        "TEXT": ["dog and cat", "dog", "", None, "a house", "the dog and the cat"]}), path)
    chunks = list(inputs.table_pair_chunks(str(path), "URL", "TEXT", chunk_rows=4))
    events = list(iter_table_events(str(path), "URL", "TEXT"))
    pairs = [v for k, v in events if k == "pair"]
    got = [row for chunk in chunks for row in chunk.rows()]
    assert got == [{k: p[k] for k in inputs.PAIR_COLUMNS} for p in pairs]
    assert [r for chunk in chunks for r in chunk.rejects] == [v for k, v in events if k == "reject"]
    assert sum(chunk.records for chunk in chunks) == sum(1 for k, _ in events if k == "record")
    assert all(chunk.texts == chunk.columns["text"].to_pylist() for chunk in chunks)
    # the whole stage: same stats either way
    a = annotate.Annotator("i", str(path), resources, batch_size=2)
    b = annotate.Annotator("i", str(path), resources, batch_size=2)
    ta = pa.Table.from_batches(list(a.run_columns(iter(chunks))), schema=annotate.ANNOTATED)
    tb = pa.Table.from_batches(list(b.run(iter(events))), schema=annotate.ANNOTATED)
    assert a.stats() == b.stats() and all(s["balanced"] for s in a.stats()["accounting"].values())
    key = lambda r: (r["kind"], r["uuid"] or "", r["text"] or "", r["reason"] or "")  # noqa: E731
    assert sorted(ta.to_pylist(), key=key) == sorted(tb.to_pylist(), key=key)
    assert EventCounter().update(events).as_dict()["pairs"] == len(pairs) == 2


def test_input_state_is_sorted_by_uuid_and_complete(state):
    d, ids, stats = state
    for iid in ids:
        texts = grouping.read_state_texts(f"{d}/input_id={iid}/{grouping.TEXTS_FILE}")
        uuids = texts.column("uuid").to_pylist()
        assert uuids == sorted(uuids) and texts.num_rows == stats[iid]["texts"] > 0
        assert grouping.read_input_stats(d, iid) == json.loads(json.dumps(stats[iid]))
        assert pq.read_table(f"{d}/input_id={iid}/{grouping.REJECTS_FILE}").num_rows == stats[iid]["reject_rows"]
    assert grouping.read_input_stats(d, "nope") is None


def _read_parts(d, n):
    return [r for k in range(n) for r in pq.read_table(f"{d}/{grouping.part_name(k)}").to_pylist()]


def _exchange(files, buckets, directory, n_runs):
    """The exchange as the job runs it: contiguous chunks of the inputs, one run each."""
    directory.mkdir(exist_ok=True)
    runs = []
    for m in range(n_runs):
        runs.append(str(directory / f"run-{m}-of-{n_runs}-{buckets}.arrow"))
        result = grouping.exchange_run(files[m * len(files) // n_runs:(m + 1) * len(files) // n_runs], buckets, runs[-1])
        assert pa.ipc.open_file(runs[-1]).num_record_batches == buckets
        assert result["totals"]["exchanged"] == sum(pa.ipc.open_file(r).read_all().num_rows for r in runs[-1:])
    return runs


def test_buckets_partition_the_images_and_merge_to_the_one_bucket_result(state, tmp_path):
    d, ids, stats = state
    files = [f"{d}/input_id={i}/{grouping.TEXTS_FILE}" for i in ids]
    one, three = tmp_path / "one", tmp_path / "three"
    one.mkdir()
    three.mkdir()
    r1 = grouping.group_bucket(0, 1, _exchange(files, 1, tmp_path / "x", 1), str(one))
    runs3 = _exchange(files, 3, tmp_path / "x", 2)
    parts = [grouping.group_bucket(k, 3, runs3, str(three)) for k in range(3)]
    merged = parts[0]
    for p in parts[1:]:
        merged = grouping.merge_results(merged, p)
    rows1, rows3 = _read_parts(one, 1), _read_parts(three, 3)
    assert rows1 == rows3 and len(rows1) == r1["totals"]["images"] == merged["totals"]["images"]
    assert [r["uuid"] for r in rows1] == sorted(r["uuid"] for r in rows1)  # globally sorted across parts
    assert r1["totals"]["texts_in"] == sum(s["texts"] for s in stats.values())
    assert grouping.counts_table(merged).equals(grouping.counts_table(r1))
    assert merged["lang_texts"] == r1["lang_texts"]
    # counts = texts containing each entry, over unique (uuid, text)
    expect = Counter((t["lang"], e) for r in rows1 for t in r["texts"] for e in t["entry_ids"])
    got = grouping.counts_table(r1).to_pylist()
    assert {(x["lang"], x["entry_id"]): x["count"] for x in got} == dict(expect)
    assert [(x["lang"], x["entry_id"]) for x in got] == sorted(expect)
    for r in rows1:
        texts = [t["text"] for t in r["texts"]]
        assert texts == sorted(set(texts))


def test_group_texts_keeps_identical_texts_once_and_empty_input():
    rows = [("b" * 24, "u2", "x", "alt"), ("a" * 24, "u1", "y", "title"), ("a" * 24, "u1", "y", "alt"),
            ("a" * 24, "u1", "x", "alt")]
    t = pa.Table.from_pylist([{"uuid": u, "url": url, "text": x, "source": s, "page_url": "", "lid": "en",
                               "lid_prob": 0.5, "lang": "en", "entry_ids": [1]} for u, url, x, s in rows],
                             schema=grouping.STATE_TEXTS)
    matched, unique = grouping.group_texts(t)
    got = [(r["uuid"][0], [(x["text"], x["source"]) for x in r["texts"]]) for r in matched.to_pylist()]
    assert got == [("a", [("x", "alt"), ("y", "alt")]), ("b", [("x", "alt")])] and unique.num_rows == 3
    empty, _ = grouping.group_texts(grouping.STATE_TEXTS.empty_table())
    assert empty.num_rows == 0
    assert grouping.entry_counts(pa.array([], pa.string()), pa.array([], pa.list_(pa.int32()))) == \
        grouping.new_result()


def test_merge_results_sums_exactly():
    a = grouping.new_result(images=2)
    a["counts"]["en"] = (np.array([1, 5], np.int32), np.array([3, 2**40], np.int64))
    b = grouping.new_result(images=1, curated=4)
    b["counts"]["en"] = (np.array([0, 5], np.int32), np.array([1, 1], np.int64))
    b["counts"]["de"] = (np.array([2], np.int32), np.array([7], np.int64))
    m = grouping.merge_results(a, b)
    assert m["totals"] == {"images": 3, "curated": 4}
    assert grouping.counts_table(m).to_pylist() == [
        {"lang": "de", "entry_id": 2, "count": 7}, {"lang": "en", "entry_id": 0, "count": 1},
        {"lang": "en", "entry_id": 1, "count": 3}, {"lang": "en", "entry_id": 5, "count": 2**40 + 1}]


def test_uuid_order_is_the_string_order():
    rng = np.random.default_rng(3)
    uuids = ["%024x" % int(x) for x in rng.integers(0, 2**62, 500)] + ["0" * 24, "f" * 24, "0" * 24]
    arr = pa.array(uuids).slice(1)  # a sliced array: offsets do not start at 0
    order = grouping.uuid_order(arr)
    assert [arr[i].as_py() for i in order] == sorted(uuids[1:])
    odd = pa.array(["b", "a", "ccc"])
    assert grouping.uuid_order(odd).tolist() == [1, 0, 2]
    # realistic uuids (uniform hex) with repeats: the one-key fast path, stable like a full sort
    real = [rng.bytes(12).hex() for _ in range(300)] * 3
    rng.shuffle(real)
    stable = sorted(range(len(real)), key=lambda i: real[i])  # Python's sort is stable
    assert grouping.uuid_order(pa.array(real)).tolist() == stable
    # equal first 16 characters, different ends: the full comparison decides
    close = ["abcdef0123456789" + end for end in ("ffffffff", "00000000", "ffffffff", "0000000f")]
    assert grouping.uuid_order(pa.array(close)).tolist() == [1, 3, 0, 2]


def test_stage1_lid_decisions_equal_identify(sample, resources):
    """Annotator groups LID decisions per language; they must equal annotate.identify text by text."""
    events = [e for path in sample["wat_files"] for e in inputs.iter_input_events(path, "wat", "URL", "TEXT")]
    texts = [v["text"] for k, v in events if k == "pair"]
    for min_prob in (0.0, 0.9):
        stage = annotate.Annotator("i", "x", resources, batch_size=32, min_lid_prob=min_prob)
        list(stage.run(iter(events)))
        _l, _p, _langs, reasons = annotate.identify(texts, resources, min_prob)
        lid = stage.stats()["accounting"]["lid"]
        assert lid["rejected"] == dict(Counter(r for r in reasons if r is not None))
        assert lid["out"] == sum(r is None for r in reasons) and lid["balanced"]
    assert lid["rejected"]["low_lid_prob"] > 0


def test_non_string_table_columns_take_the_row_path(tmp_path):
    """Binary alt-text and large_string URLs: the same pairs and rejects as the event path."""
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({
        "URL": pa.array(["https://ex.com/a.jpg", "HTTPS://EX.com/b.jpg", "ftp://x/y.jpg"], pa.large_string()),
        "TEXT": pa.array([b"dog \xff cat", b"  a  house ", b"dog"], pa.binary())}), path)
    chunks = list(inputs.table_pair_chunks(str(path), "URL", "TEXT"))
    events = list(iter_table_events(str(path), "URL", "TEXT"))
    assert [row for c in chunks for row in c.rows()] == [
        {k: v[k] for k in inputs.PAIR_COLUMNS} for kind, v in events if kind == "pair"]
    assert [r for c in chunks for r in c.rejects] == [v for kind, v in events if kind == "reject"] != []
    assert [t for c in chunks for t in c.texts] == ["dog cat", "a house"]  # U+FFFD became a space


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_state_texts_range_reads_equal_a_filter(tmp_path, monkeypatch, compression):
    """Skipped batches, sliced edge batches, empty and unbounded ranges: always the filtered rows."""
    monkeypatch.setattr(grouping, "STATE_BATCH_ROWS", 7)
    uuids = sorted(f"{(i * 2654435761) % 16**6:06x}" + "0" * 18 for i in range(60)) + ["f" * 24] * 3
    table = pa.table({name: pa.array([f"{name}{i}" for i in range(len(uuids))]) if f.type == pa.string()
                      else pa.nulls(len(uuids), f.type) for name, f in zip(grouping.STATE_TEXTS.names,
                                                                           grouping.STATE_TEXTS, strict=True)})
    table = table.set_column(0, "uuid", pa.array(uuids)).cast(grouping.STATE_TEXTS)
    path = str(tmp_path / "t.arrow")
    grouping.write_state_texts(table, path, compression=compression)
    assert grouping.read_state_texts(path).equals(table)
    for lo, hi in [(None, None), ("4", "8"), (uuids[7], uuids[30]), ("0", "00"), (None, uuids[0]), ("f", None),
                   ("5", "50"), (uuids[10], uuids[10] + "x")]:
        want = [u for u in uuids if (lo is None or u >= lo) and (hi is None or u < hi)]
        got = grouping.read_state_texts(path, lo, hi)
        assert got.column("uuid").to_pylist() == want, (lo, hi)
        assert got.schema == grouping.STATE_TEXTS


def test_picks_stored_by_grouping_give_the_sample_of_matched(state, tmp_path):
    """curate_part from the picks group_bucket stored == curate_part reading matched/ again."""
    import numpy as np

    d, ids, _stats = state
    files = [f"{d}/input_id={i}/{grouping.TEXTS_FILE}" for i in ids]
    matched, picked, direct, via = (tmp_path / n for n in ("matched", "picked", "direct", "via"))
    for p in (matched, picked, direct, via):
        p.mkdir()
    runs = _exchange(files, 2, tmp_path / "x", 3)
    result = [grouping.group_bucket(k, 2, runs, str(matched), str(picked), seed=7) for k in range(2)]
    assert sum(r["totals"]["images"] for r in result) > 0
    langs = {r["lang"] for k in range(2) for row in _read_parts(matched, 2) for r in row["texts"]}
    probs = {lang: np.linspace(0.05, 1.0, 4096) for lang in langs}  # any probabilities: the paths must agree
    for k in range(2):
        a = grouping.curate_part(k, str(matched), str(direct), probs, seed=7)
        b = grouping.curate_part(k, str(matched), str(via), probs, seed=7, picked_dir=str(picked))
        assert a["totals"]["curated"] == b["totals"]["curated"]
    assert _read_parts(direct, 2) == _read_parts(via, 2) and len(_read_parts(via, 2)) > 0


def test_the_exchange_moves_every_text_once_and_the_run_count_changes_nothing(state, tmp_path):
    d, ids, stats = state
    files = [f"{d}/input_id={i}/{grouping.TEXTS_FILE}" for i in ids]
    total = sum(s["texts"] for s in stats.values())
    for buckets in (1, 4, 7):
        by_runs = {}
        for n_runs in (1, 2, len(files)):
            runs = _exchange(files, buckets, tmp_path / f"b{buckets}r{n_runs}", n_runs)
            tables = [grouping.read_bucket(runs, k) for k in range(buckets)]
            assert sum(t.num_rows for t in tables) == total
            for k, t in enumerate(tables):  # bucket k holds exactly the uuids of its range
                lo, hi = grouping.uuid_range(k, buckets)
                us = t.column("uuid").to_pylist()
                assert all((lo is None or u >= lo) and (hi is None or u < hi) for u in us)
            by_runs[n_runs] = [grouping.group_texts(t)[0] for t in tables]
        assert by_runs[1] == by_runs[2] == by_runs[len(files)]


def test_bucket_offsets_cut_a_sorted_uuid_column_at_the_bucket_bounds():
    uuids = pa.array(["0" * 24, "3" * 24, "5555" + "0" * 20, "5555" + "5" * 20, "a" * 24, "f" * 24])
    assert grouping.bucket_offsets(uuids, 1).tolist() == [0, 6]
    # bounds "555555" and "aaaaaa": "5555000..." < "555555" <= "5555555..."; "aaaa..." >= "aaaaaa"
    assert grouping.bucket_offsets(uuids, 3).tolist() == [0, 3, 4, 6]
    assert grouping.bucket_offsets(pa.array([], pa.string()), 2).tolist() == [0, 0, 0]


def test_bucket_offsets_place_few_rows_among_many_buckets_as_cutting_does():
    uuids = sorted(f"{i * 7919 % 16**6:06x}" + "0" * 18 for i in range(40))
    for buckets in (3, 39, 40, 41, 500):  # both sides of rows == bounds
        want = [0]
        for k in range(buckets):
            lo, hi = grouping.uuid_range(k, buckets)
            want.append(want[-1] + sum((lo is None or u >= lo) and (hi is None or u < hi) for u in uuids))
        assert grouping.bucket_offsets(pa.array(uuids), buckets).tolist() == want
