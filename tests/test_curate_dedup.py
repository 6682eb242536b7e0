"""The curate job's distinct counts, decontamination and near-duplicate clusters, end to end on
real local Spark with real alt-texts (../shared/data/web) and real XTD captions planted into
generated inputs."""

from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import grouping, sketches
from curation.curate_config import CurateConfig
from curation.samples.alt_texts import write_sample
from jobs.curate import run
from tests.conftest import shared_file
from tests.test_curate import _files_rows, _same_outputs

pytestmark = pytest.mark.spark
T_EN = 6
SEED = 11


def _quiet(*_a):
    pass


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("dedup-sample"), seed=2, files=6, pages_per_file=7)


@pytest.fixture(scope="module")
def alt_text_parts(tmp_path_factory):
    """The real alt-texts (../shared/data/web/alt-text-1000.parquet) as 4 table inputs."""
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    d = tmp_path_factory.mktemp("alt-parts")
    paths = []
    for k in range(4):
        path = d / f"alt-{k}.parquet"
        pq.write_table(table.slice(k * 250, 250), path)
        paths.append(str(path))
    return paths


def _cfg(sample, output, inputs, **kw) -> CurateConfig:
    return CurateConfig(inputs=tuple(inputs), metadata=sample["metadata"], output=str(output), t_en=T_EN,
                        seed=SEED, **kw)


def _matched_texts(out) -> list[dict]:
    return [{**x, "uuid": r["uuid"], "url": r["url"]} for _f, rows in _files_rows(out / "matched")
            for r in rows for x in r["texts"]]


def _exact(texts: list[dict]) -> dict:
    hosts = sketches.url_hosts(pa.array([t["url"] for t in texts], pa.string())).to_pylist()
    values = {"image_url": [t["url"] for t in texts], "host": hosts, "page_url": [t["page_url"] for t in texts],
              "text": [t["text"] for t in texts]}
    return sketches.exact_counts(values, [t["lang"] for t in texts])


def _within(estimate: float, exact: int, rel: float) -> bool:
    """Within three relative standard errors (HLL++'s linear counting is near exact on small sets)."""
    return abs(estimate - exact) <= max(1.0, 3 * rel * exact)


# --- 1. distinct counts -----------------------------------------------------------------------


def test_distinct_counts_of_real_alt_texts_are_within_the_stated_error():
    """grouping.distinct_counts on the real alt-texts, exploded to 100k distinct texts / URLs."""
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    urls, texts = table.column("URL").to_pylist(), table.column("TEXT").to_pylist()
    from curation.urls import image_uuid, normalize_url

    rows = []
    for rep in range(100):
        for u, t in zip(urls, texts, strict=True):
            norm, _ = normalize_url(u)
            if norm and t:
                url = norm + (f"?v={rep}" if rep else "")
                rows.append((image_uuid(url), url, f"{t} {rep // 3}", "en" if rep % 2 else "de", "https://p/" + str(rep)))
    cols = dict(zip(("uuid", "url", "text", "lang", "page_url"), zip(*rows, strict=True), strict=True))
    t = pa.table({k: pa.array(list(v), pa.string()) for k, v in cols.items()})
    distinct, hashes = grouping.distinct_counts(t)
    assert len(hashes) == t.num_rows
    exact = _exact([{"url": r[1], "text": r[2], "lang": r[3], "page_url": r[4]} for r in rows])
    rel = distinct.relative_error
    assert rel == pytest.approx(1.04 / 128)
    for key in sketches.KEYS:
        assert _within(distinct.estimate(key), exact[key]["all"], rel), (key, distinct.estimate(key), exact[key])
        for lang, n in exact[key]["by_lang"].items():
            assert _within(distinct.estimate(key, lang), n, rel), (key, lang)
    assert exact["text"]["all"] > 30_000  # past linear counting: the HLL estimator proper


def test_job_distinct_counts_merge_across_partitions_and_incremental_runs(spark, sample, alt_text_parts, tmp_path):
    inputs = [*sample["wat_files"], *alt_text_parts]
    one = tmp_path / "one"
    m1 = run(_cfg(sample, one, inputs, partitions=1), spark, progress=_quiet)
    many = tmp_path / "many"
    m2 = run(_cfg(sample, many, inputs, partitions=5, exchange_tasks=3), spark, progress=_quiet)
    inc = tmp_path / "inc"
    run(_cfg(sample, inc, inputs[:4], partitions=2), spark, progress=_quiet)
    m3 = run(_cfg(sample, inc, inputs, partitions=3), spark, progress=_quiet)
    assert m3["inputs"]["reused"] == 4
    sk = [sketches.DistinctCounts.from_bytes(open(d / "_state" / "distinct_counts.bin", "rb").read())
          for d in (one, many, inc)]
    assert sk[0] == sk[1] == sk[2] and sk[0].slots()
    assert m1["distinct"] == m2["distinct"] == m3["distinct"]
    reports = [json.load(open(d / "report.json")) for d in (one, many, inc)]
    assert reports[0]["distinct"] == reports[1]["distinct"] == reports[2]["distinct"] == m1["distinct"]
    assert open(one / "report.html").read() == open(many / "report.html").read()
    _same_outputs(one, many)
    _same_outputs(one, inc)
    # the estimates against exact counts from matched/
    exact = _exact(_matched_texts(one))
    d = m1["distinct"]
    assert d["relative_error"] == pytest.approx(1.04 / 128, abs=1e-6)
    for key in sketches.KEYS:
        assert _within(d[key]["all"], exact[key]["all"], d["relative_error"]), key
        assert set(d[key]["by_lang"]) == set(exact[key]["by_lang"])
        for lang, n in exact[key]["by_lang"].items():
            assert _within(d[key]["by_lang"][lang], n, d["relative_error"]), (key, lang)
    assert "Distinct values among matched texts" in open(one / "report.html").read()
    langs = {x["lang"]: x for x in reports[0]["languages"]}
    assert langs["en"]["distinct"]["text"] == d["text"]["by_lang"]["en"]
    assert glob.glob(str(one / "_state" / "*.bin"))
    assert os.path.exists(one / "_SUCCESS")


# --- 2. decontamination -----------------------------------------------------------------------

XTD = "eval/babel-imagenet/xtd.json"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Table inputs: the real alt-texts with real XTD captions planted among them (verbatim,
    upper-cased, with punctuation added), and a URL list naming some alt-text images."""
    xtd = json.loads(shared_file(XTD).read_text(encoding="utf-8"))
    captions = [c for lang in sorted(xtd["captions"]) for caps in xtd["captions"][lang][:60] for c in caps]
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    urls, texts = table.column("URL").to_pylist(), table.column("TEXT").to_pylist()
    rows = list(zip(urls, texts, strict=True))
    for k, c in enumerate(captions):
        variant = (c, c.upper(), c + " !!")[k % 3]
        rows.append((f"https://eval-copies.example/img/{k}.jpg", variant))
    d = tmp_path_factory.mktemp("planted")
    paths = []
    for k in range(3):
        part = rows[k::3]
        path = d / f"planted-{k}.parquet"
        pq.write_table(pa.table({"URL": [r[0] for r in part], "TEXT": [r[1] for r in part]}), path)
        paths.append(str(path))
    url_list = d / "eval-urls.txt"
    url_list.write_text("# eval image URLs\n" + "\n".join(u for u in urls[:300] if u) + "\n", encoding="utf-8")
    return {"inputs": paths, "urls": str(url_list), "captions": captions, "eval_urls": set(urls[:300])}


def _shingle_index(captions):
    """Exact reference: shingle sets of the captions decontam indexes (those with at least
    decontam.MIN_SHINGLES shingles: a two-word caption is no evidence of a copy)."""
    from curation import near_dup as nd
    from curation.decontam import MIN_SHINGLES

    sets = [s for s in (nd.shingles(c) for c in captions) if len(s) >= MIN_SHINGLES]
    inverted: dict[bytes, list[int]] = {}
    for i, sh in enumerate(sets):
        for x in sh:
            inverted.setdefault(x, []).append(i)
    return sets, inverted


def _best_jaccard(text, sets, inverted) -> float:
    from curation import near_dup as nd

    mine = nd.shingles(text)
    cands = {i for x in mine for i in inverted.get(x, ())}
    return max((nd.jaccard(mine, sets[i]) for i in cands), default=0.0)


def test_decontamination_drops_planted_eval_captions_and_urls(spark, sample, planted, tmp_path):
    from curation.urls import normalize_url

    xtd = str(shared_file(XTD))
    off = run(_cfg(sample, tmp_path / "off", planted["inputs"]), spark, progress=_quiet)
    assert "decontam" not in off["accounting"] and off["decontam"] is None
    before = _matched_texts(tmp_path / "off")
    sets, inverted = _shingle_index(json_captions(xtd))
    planted_matched = [t for t in before if t["url"].startswith("https://eval-copies.example/")]
    assert len(planted_matched) > 20  # the plant reaches the counts when decontamination is off

    out = tmp_path / "on"
    cfg = _cfg(sample, out, planted["inputs"], decontam_captions=(xtd,), decontam_urls=(planted["urls"],),
               partitions=1)
    m = run(cfg, spark, progress=_quiet)
    st = m["accounting"]["decontam"]
    assert st["balanced"] and st["in"] == m["accounting"]["match"]["out"]
    dropped = st["rejected"]
    assert dropped.get("eval_text", 0) >= len(planted_matched) * 0.9 and dropped.get("eval_url", 0) > 0
    after = _matched_texts(out)
    assert sum(dropped.values()) == len(before) - len(after)
    eval_urls = {normalize_url(u)[0] for u in planted["eval_urls"]}
    for t in after:  # nothing kept is an eval URL or an eval caption's near-duplicate
        assert t["url"] not in eval_urls
        assert _best_jaccard(t["text"], sets, inverted) < 0.8, t["text"]
    for t in before:  # and everything dropped is one of them
        if t not in after:
            assert t["url"] in eval_urls or _best_jaccard(t["text"], sets, inverted) >= 0.8, t
    rej = [r for _f, rows in _files_rows(out / "rejects") for r in rows if r["stage"] == "decontam"]
    assert len(rej) == sum(dropped.values()) and {r["reason"] for r in rej} == set(dropped)
    rep = json.load(open(out / "report.json"))
    assert rep["decontam"]["dropped"] == sum(dropped.values()) and rep["decontam"]["examples"]
    assert rep["reject_reasons"]["decontam:eval_text"] == dropped["eval_text"] and rep["errors"] == 0
    assert m["decontam"]["captions"] > 10_000 and m["stage1_fingerprint"] != off["stage1_fingerprint"]
    assert "Decontamination against evaluation sets" in open(out / "report.html").read()
    # counts use what remains: the same as a run over the inputs without the dropped texts is
    # checked through the accounting chain; and any partitioning gives the same bytes
    again = tmp_path / "on3"
    run(_cfg(sample, again, planted["inputs"], decontam_captions=(xtd,), decontam_urls=(planted["urls"],),
             partitions=3), spark, progress=_quiet)
    _same_outputs(out, again)
    assert json.load(open(again / "report.json")) == rep


def json_captions(path) -> list[str]:
    from curation.decontam import read_eval_captions

    return read_eval_captions(path)[0]


# --- 3. near-duplicate alt-text clusters -------------------------------------------------------


@pytest.fixture(scope="module")
def near_dups(tmp_path_factory):
    """Table inputs: the real alt-texts, and for every fourth one three near-copies on other images
    (upper case, punctuation added, a word appended), spread over different inputs."""
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    rows = [(u, t) for u, t in zip(table.column("URL").to_pylist(), table.column("TEXT").to_pylist(), strict=True)]
    for k, (_u, t) in enumerate(rows[::4]):
        if t:
            for j, variant in enumerate((t.upper(), t + " !!", t + " photo")):
                rows.append((f"https://copies.example/{j}/{k}.jpg", variant))
    d = tmp_path_factory.mktemp("near-dups")
    paths = []
    for k in range(4):
        part = rows[k::4]
        path = d / f"nd-{k}.parquet"
        pq.write_table(pa.table({"URL": [r[0] for r in part], "TEXT": [r[1] for r in part]}), path)
        paths.append(str(path))
    return paths


def test_near_duplicate_clusters_equal_one_batch_clustering_for_any_partitioning(spark, sample, near_dups, tmp_path):
    from curation import near_dup as nd

    inputs = [*sample["wat_files"][:2], *near_dups]
    out = tmp_path / "nd1"
    m = run(_cfg(sample, out, inputs, near_dup=True, partitions=1), spark, progress=_quiet)
    texts = _matched_texts(out)
    distinct = sorted({t["text"] for t in texts})
    ids = nd.near_duplicate_clusters(distinct)  # the library on one batch: the reference
    members: dict[int, list[str]] = {}
    for text, c in zip(distinct, ids.tolist(), strict=True):
        members.setdefault(c, []).append(text)
    multi = {c: v for c, v in members.items() if len(v) > 1}
    rep = json.load(open(out / "report.json"))["near_dup"]
    assert rep["clusters"] == len(multi) > 20
    assert rep["clustered_texts"] == sum(len(v) for v in multi.values())
    per_text = {t: c for c, v in multi.items() for t in v}
    sizes: dict[int, int] = {}
    for t in texts:
        if t["text"] in per_text:
            sizes[per_text[t["text"]]] = sizes.get(per_text[t["text"]], 0) + 1
    expect = sorted(((-n, c) for c, n in sizes.items()))[:len(rep["largest"])]
    assert [(-c["texts"], int(c["id"])) for c in rep["largest"]] == expect
    for c in rep["largest"]:
        assert all(e in {x[:len(e.rstrip('…'))] for x in multi[int(c["id"])]} or e.endswith("…")
                   for e in c["examples"])
    en = rep["by_lang"]["en"]
    assert 0 < en["share"] <= 1 and en["texts"] == sum(sizes.values()) - sum(
        v["texts"] for k, v in rep["by_lang"].items() if k != "en")
    assert m["near_dup"]["clusters"] == len(multi)
    assert "Near-duplicate alt-text clusters" in open(out / "report.html").read()
    # the recall of the job's clusters against exact Jaccard on these texts, at the threshold
    exact = nd.same_cluster_pairs(nd.exact_clusters(distinct))
    found = nd.same_cluster_pairs(ids)
    assert len(exact & found) >= 0.7 * len(exact)
    # any partitioning and exchange gives the same bytes; off by default leaves outputs alone
    out3 = tmp_path / "nd3"
    run(_cfg(sample, out3, inputs, near_dup=True, partitions=3, exchange_tasks=2), spark, progress=_quiet)
    _same_outputs(out, out3)
    assert open(out / "report.html").read() == open(out3 / "report.html").read()
    off = tmp_path / "off"
    run(_cfg(sample, off, inputs, partitions=2), spark, progress=_quiet)
    _same_outputs(out, off)
    assert json.load(open(off / "report.json"))["near_dup"] is None


def test_eval_set_files_in_each_layout(tmp_path):
    from curation import decontam as dc

    coco = tmp_path / "captions_val.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "coco_url": "http://images.cocodataset.org/val/1.jpg"}],
                                "annotations": [{"image_id": 1, "caption": "A man riding a wave on a surfboard."}]}))
    jsonl = tmp_path / "xm3600.jsonl"
    jsonl.write_text(json.dumps({"image_url": "https://x.example/a.jpg", "en": {"caption": ["two dogs play"]},
                                 "de": {"caption": ["zwei Hunde spielen"]}}) + "\n")
    txt = tmp_path / "captions.txt"
    txt.write_text("one caption\n\nanother caption\n")
    assert dc.read_eval_captions(str(coco)) == (["A man riding a wave on a surfboard."],
                                                ["http://images.cocodataset.org/val/1.jpg"])
    assert dc.read_eval_captions(str(jsonl)) == (["two dogs play", "zwei Hunde spielen"], ["https://x.example/a.jpg"])
    assert dc.read_eval_captions(str(txt)) == (["one caption", "another caption"], [])
    xtd_caps, xtd_urls = dc.read_eval_captions(str(shared_file(XTD)))
    assert len(xtd_caps) == 11_000 and xtd_urls == []
    assert dc.index_from_files() is None
    a = dc.index_from_files([str(coco), str(jsonl)]).to_bytes()
    assert a == dc.index_from_files([str(coco), str(jsonl)]).to_bytes()  # the fingerprint's digest is stable


# --- 4. the per-cluster image cap ----------------------------------------------------------------


@pytest.fixture(scope="module")
def templated(tmp_path_factory):
    """Table inputs: the real alt-texts plus generated template texts over many images (a numbered
    near-duplicate template, one identical boilerplate text), spread over the inputs."""
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    rows = [(u, t) for u, t in zip(table.column("URL").to_pylist(), table.column("TEXT").to_pylist(), strict=True)]
    rows += [(f"https://shop.example/p/{k}.jpg", f"photo of the dog on the beach number {k}") for k in range(40)]
    rows += [(f"https://shop.example/q/{k}.jpg", "click to enlarge the cat photo") for k in range(30)]
    rows += [(f"https://shop.example/q/{k}.jpg", "click to enlarge the cat photo") for k in range(10)]  # same images
    d = tmp_path_factory.mktemp("templated")
    paths = []
    for k in range(4):
        part = rows[k::4]
        path = d / f"tp-{k}.parquet"
        pq.write_table(pa.table({"URL": [r[0] for r in part], "TEXT": [r[1] for r in part]}), path)
        paths.append(str(path))
    return paths


def test_near_dup_cap_keeps_the_lowest_hash_images_per_cluster_for_any_partitioning(spark, sample, templated,
                                                                                    tmp_path):
    from collections import Counter

    from curation import balance
    from curation import near_dup as nd

    cap = 5
    free = tmp_path / "free"
    run(_cfg(sample, free, templated, near_dup=True, partitions=2), spark, progress=_quiet)
    before = _matched_texts(free)
    distinct = sorted({t["text"] for t in before})
    cluster = dict(zip(distinct, nd.near_duplicate_clusters(distinct).tolist(), strict=True))  # the reference
    images: dict[int, set[str]] = {}
    for t in before:
        images.setdefault(cluster[t["text"]], set()).add(t["uuid"])
    kept: dict[int, set[str]] = {}
    for c, uuids in images.items():  # the cap images with the smallest hash of (seed, uuid)
        order = sorted(uuids, key=lambda u: (balance.uniforms([u], SEED, 0, "near_dup_cap")[0], u))
        kept[c] = set(order[:cap])
    over = {c for c, v in images.items() if len(v) > cap}
    assert len(over) >= 2  # the template and the boilerplate text at least
    expect = sorted((t["uuid"], t["text"]) for t in before if t["uuid"] in kept[cluster[t["text"]]])

    out = tmp_path / "cap1"
    m = run(_cfg(sample, out, templated, near_dup=True, near_dup_cap=cap, partitions=1), spark, progress=_quiet)
    after = _matched_texts(out)
    assert sorted((t["uuid"], t["text"]) for t in after) == expect
    # the dropped texts are rejects with their reason, and the stage balances
    rejects = [r for _f, rows in _files_rows(out / "rejects") for r in rows if r["reason"] == "near_dup_cap"]
    stage = m["accounting"]["near_dup"]
    assert stage["rejected"] == {"near_dup_cap": len(rejects)} and stage["balanced"]
    assert len(rejects) >= len(before) - len(after) > 0
    assert all(r["stage"] == "near_dup" for r in rejects)
    # counts (and so thresholds) are those of what remains
    counted = Counter((t["lang"], e) for t in after for e in t["entry_ids"])
    got = {(r["lang"], r["entry_id"]): r["count"] for _f, rows in _files_rows(out / "counts") for r in rows}
    assert got == dict(counted)
    rep = json.load(open(out / "report.json"))["near_dup"]
    assert rep["cap"] == cap and rep["capped_texts"] == len(rejects) and rep["capped_clusters"] == len(over)
    assert "capped at 5 images per cluster" in open(out / "report.html").read()
    # any partitioning and exchange gives the same bytes
    out3 = tmp_path / "cap3"
    m3 = run(_cfg(sample, out3, templated, near_dup=True, near_dup_cap=cap, partitions=3, exchange_tasks=2,
             rows_per_file=40), spark, progress=_quiet)
    out4 = tmp_path / "cap4"
    run(_cfg(sample, out4, templated, near_dup=True, near_dup_cap=cap, partitions=4, exchange_tasks=3,
             rows_per_file=40), spark, progress=_quiet)
    _same_outputs(out3, out4)
    assert m3["near_dup"]["cap_buckets"] > 1 and m["near_dup"]["capped_texts"] == len(rejects)
    assert sorted((t["uuid"], t["text"]) for t in _matched_texts(out3)) == expect
    with pytest.raises(ValueError, match="near_dup_cap needs near_dup"):
        _cfg(sample, out, templated, near_dup_cap=cap)
