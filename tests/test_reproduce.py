"""`make reproduce` in small (training.reproduce): the synthetic world, the real jobs over it, the arms, the report.

The world's invariants are checked on plain values. One small reproduction (24 concepts, 5
languages of 5 scripts, 3 arms x 2 seeds of 20 steps) then runs through the real metadata
build, curate job and download job on the suite's SparkSession, the loopback image server and
real training processes, and the tests check what each stage must have done: the names became
the metadata, curation dropped every noise text, every matched image was downloaded, the arms
differ only in their entry probabilities and see equal pairs, the English-only run consumed only
images with an English text, balancing flattened what the model saw, and the report is
self-contained and can be written again from the runs alone.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.reproduce import ReproduceConfig, prepare_output, report_only, run
from training.reproduce import world as world_mod
from training.reproduce.world import World, WorldConfig, WorldInputError

SMALL_WORLD = WorldConfig(seed=3, languages=("en", "de", "ru", "zh", "ar"), concepts=24, images=1200,
                          heldout_per_concept=2, eval_templates=4)


@pytest.fixture(scope="module")
def babel(shared_data):
    d = shared_data / "eval" / "babel-imagenet"
    if not (d / world_mod.BABEL_FILE).is_file():
        pytest.skip(f"Babel-ImageNet data absent under {d}")
    return d


# --- the world, on plain values ------------------------------------------------------------------------


def test_world_is_a_function_of_its_seed(babel):
    a, b = World(SMALL_WORLD, babel), World(SMALL_WORLD, babel)
    assert a.pool() == b.pool()
    assert a.render("c000007", 5) == b.render("c000007", 5)
    other = World(SMALL_WORLD.replace(seed=4), babel)
    assert [c.imagenet for c in other.concepts] != [c.imagenet for c in a.concepts]
    assert other.pool() != a.pool()


def test_concepts_are_real_unambiguous_names_with_distinct_looks(babel):
    w = World(SMALL_WORLD, babel)
    raw = json.loads((babel / world_mod.BABEL_FILE).read_text(encoding="utf-8"))
    for lang in w.languages:
        idx, names = raw[world_mod.LANGUAGES[lang][0]]
        real = {int(i): world_mod.clean_name(n) for i, n in zip(idx, names, strict=True)}
        ours = [c.names[lang] for c in w.concepts]
        assert ours == [real[c.imagenet] for c in w.concepts]  # Babel-ImageNet's own name of that class
        assert len(set(ours)) == len(ours)  # no two concepts share a name in any language
    looks = np.array([c.look for c in w.concepts])
    dist = (looks[:, None, :] != looks[None, :, :]).sum(-1)
    assert dist[~np.eye(len(looks), dtype=bool)].min() >= 2
    assert all(c.look[0] != c.look[3] for c in w.concepts)  # never a shape the colour of its background
    scripts = {world_mod.LANGUAGES[lang][2] for lang in w.languages}
    assert scripts == {"Latin", "Cyrillic", "Han", "Arabic"}


def test_pool_is_long_tailed_with_a_head_per_language_and_noise(babel):
    w = World(SMALL_WORLD.replace(images=6000), babel)
    pool = w.pool()
    kinds = Counter(r["kind"] for r in pool)
    assert kinds["noise"] > 0 and kinds["second"] > 0 and kinds["mismatch"] > 0 and kinds["bare"] > 0
    for r in pool:
        if r["concept"] >= 0:
            assert w.concepts[r["concept"]].names[r["lang"]] in r["text"]
        else:  # a noise text names no concept in any language
            assert not any(c.names[lang] in r["text"] for c in w.concepts for lang in w.languages
                           if len(c.names[lang]) > 3)
    by_lang = {lang: Counter(r["concept"] for r in pool if r["lang"] == lang and r["kind"] == "text")
               for lang in ("en", "de")}
    for lang, c in by_lang.items():
        top = [n for _, n in c.most_common()]
        assert top[0] > 5 * np.median(top), lang  # a head far above the typical concept
    heads = {lang: {k for k, _ in c.most_common(5)} for lang, c in by_lang.items()}
    assert heads["en"] != heads["de"]  # each language has its own head
    assert all(t not in w.train_templates["en"] for t in w.eval_templates["en"])


def test_wordnet_sources_read_back_as_the_names(babel, tmp_path):
    from metadata.wordnet import omw_lemmas, wordnet_records

    w = World(SMALL_WORLD, babel)
    paths = w.write_wordnet_sources(tmp_path)
    for p in paths:
        lemmas = [lemma for _iso, lemma in omw_lemmas(p)]
        lang = {r[1] for r in wordnet_records(p) if r[0] == "w"}
        assert len(lang) == 1
        (lang,) = lang
        assert lemmas == [c.names[lang] for c in w.concepts]


def test_missing_babel_data_is_a_user_error(tmp_path):
    with pytest.raises(WorldInputError, match="Babel-ImageNet"):
        World(SMALL_WORLD, tmp_path)


def test_output_of_someone_else_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(WorldInputError, match="not written by training.reproduce"):
        prepare_output(tmp_path)


# --- one small reproduction through the real jobs and trainer ---------------------------------------------


@pytest.fixture(scope="module")
def small_run(spark, babel, tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    out = base / "out"
    # a relative --output, as `make reproduce` gives it: the training processes run in the project root,
    # so every path the orchestrator hands them must be absolute
    cfg = ReproduceConfig(output="out", seeds=(0, 1), steps=20, batch_size=64, warmup_steps=5, t_en=10,
                          vocab_size=1500, port=0, babel_dir=str(babel), progress=False, jobs=2)
    lines: list[str] = []
    cwd = os.getcwd()
    os.chdir(base)
    try:
        results = run(SMALL_WORLD, cfg, spark=spark, log=lines.append)
    finally:
        os.chdir(cwd)
    return out, cfg, results, lines


@pytest.mark.spark
def test_pipeline_stages_did_their_work(small_run):
    out, cfg, results, _lines = small_run
    work = out / "work"
    p = results["pipeline"]
    n = SMALL_WORLD.concepts
    # metadata: every language's entries are the concept names plus the numbers 0-99
    langs = json.loads((work / "metadata" / "manifest.json").read_text())["languages"]
    for lang in SMALL_WORLD.languages:
        assert langs[lang]["entries"] == n + 100
    # curate: every noise record is rejected (no entry matches it), matched images are concept images
    matched = pq.read_table(work / "curate" / "matched", columns=["url", "texts"]).to_pylist()
    images = {m["url"].rsplit("/", 1)[-1] for m in matched}
    assert images and not any(i.startswith("n") for i in images)
    assert p["curate"]["stages"]["match"]["rejected"].get("no_match", 0) >= p["pool"]["by_kind"]["noise"] * 0.5
    idx = results["index"]
    assert all(idx[lang]["matched_texts"] > 0 for lang in SMALL_WORLD.languages)
    # download: every matched image became a shard row, drawn by the loopback server
    assert p["download"]["succeeded"] == len(matched) and p["download"]["failed"] == 0
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (work / "images").glob("*.parquet"))
    assert rows == len(matched)


@pytest.mark.spark
def test_arms_differ_only_in_entry_probabilities(small_run):
    out, _cfg, _results, _lines = small_run
    arms = out / "work" / "arms"
    curate = {f.stem: np.load(f) for f in (out / "work" / "curate" / "entry_probs").glob("*.npy")}
    raw = {f.stem: np.load(f) for f in (arms / "raw" / "entry_probs").glob("*.npy")}
    bal = {f.stem: np.load(f) for f in (arms / "balanced" / "entry_probs").glob("*.npy")}
    eng = {f.stem: np.load(f) for f in (arms / "english" / "entry_probs").glob("*.npy")}
    assert set(raw) == set(bal) == set(curate) and set(eng) == {"en"}
    assert all((raw[k] == 1).all() and raw[k].shape == curate[k].shape for k in raw)
    assert all(np.array_equal(bal[k], curate[k]) for k in bal) and np.array_equal(eng["en"], curate["en"])
    assert (curate["en"] < 1).any()  # t_en caps some English head entries
    configs = {json.loads((d / "spec.json").read_text())["train_argv"][1] for d in (out / "work" / "runs").iterdir()}
    assert len(configs) == 1  # one trainer config (model size, schedule) for every run


@pytest.mark.spark
def test_equal_seen_pairs_and_what_each_arm_consumed(small_run, babel):
    from curation.urls import image_uuid, normalize_url

    out, cfg, results, _lines = small_run
    w = World(SMALL_WORLD, babel)
    base = pq.read_table(sorted((out / "work" / "pool").glob("*.parquet"))[0]).column("URL")[0].as_py()
    base = base.rsplit("/img/", 1)[0]
    langs_of: dict[str, set] = {}
    for r in w.pool():
        langs_of.setdefault(image_uuid(normalize_url(f"{base}/img/{r['image']}.png")[0]), set()).add(r["lang"])
    assert len(results["runs"]) == 6
    for r in results["runs"]:
        run_dir = out / "work" / "runs" / f"{r['arm']}-s{r['seed']}"
        samples = [line.split("\t")[2] for line in (run_dir / "samples" / "rank-0.tsv").read_text().splitlines()]
        assert len(samples) == cfg.steps * cfg.batch_size == results["seen_pairs_per_run"] == r["seen_pairs"]
        assert sum(r["seen"]) <= len(samples)  # a noise image that matched an entry names no concept
        if r["arm"] == "english":  # never an image without an English text
            assert all("en" in langs_of[u] for u in samples)
        if r["arm"] == "raw":
            assert r["kept_share"] == 1.0  # the raw pool keeps every image every epoch
        else:
            assert r["kept_share"] < 1.0
    for seed in cfg.seeds:
        by = {r["arm"]: r for r in results["runs"] if r["seed"] == seed}
        # balancing spreads the pairs over more concepts and takes them off the pool's head
        assert by["balanced"]["seen_effective_concepts"] > by["raw"]["seen_effective_concepts"]
        assert by["balanced"]["seen_top20_share"] < by["raw"]["seen_top20_share"]


@pytest.mark.spark
def test_zero_shot_is_scored_per_language_and_learns(small_run):
    _out, _cfg, results, _lines = small_run
    n = SMALL_WORLD.concepts
    for r in results["runs"]:
        for lang in SMALL_WORLD.languages:
            pc = r["per_concept"][lang]
            assert len(pc) == n and all(0.0 <= a <= 1.0 for a in pc)
            assert abs(np.mean(pc) - r["top1"][lang]) < 1e-3  # every concept has the same held-out count
    # after 20 steps English is above chance (1/24) in every run that sees English
    assert all(r["top1"]["en"] > 2.0 / n for r in results["runs"])
    for name, keys in (("balanced_vs_raw", ("tail_all", "head_all")), ("worldwide_vs_english", ("en", "others"))):
        comp = results["comparisons"][name]
        for k in keys:
            assert comp[k]["n"] == 2 and len(comp[k]["values"]) == 2 and isinstance(comp[k]["shown"], bool)


@pytest.mark.spark
def test_report_is_self_contained_and_rewritable(small_run):
    out, _cfg, results, lines = small_run
    page = (out / "reproduce.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 4 and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset
    assert "What the miniature does not show" in page and "curse of multilinguality" in page
    saved = json.loads((out / "reproduce.json").read_text(encoding="utf-8"))
    assert saved["config"]["seeds"] == [0, 1] and saved["comparisons"].keys() == results["comparisons"].keys()
    # every phase is timed, in the JSON and in the progress lines, and the phases add up to the total
    phases = ("world", "metadata", "curate", "download", "heldout", "tokenizer", "training")
    assert all(saved["timings_s"][k] >= 0 for k in phases)
    assert sum(v for k, v in saved["timings_s"].items() if k != "total") <= saved["timings_s"]["total"] + 0.5
    assert all(any(x.startswith(f"reproduce: phase {k} took ") for x in lines) for k in phases)
    assert "seed" in page and "shown</b> only when" in page  # the page says what the spread and 'shown' mean
    md = (out / "reproduce.md").read_text(encoding="utf-8")
    assert md.count("\n| ") >= 1 + len(saved["arms"]) and "balanced − raw: tail" in md
    again = report_only(out)
    assert again["comparisons"] == json.loads(json.dumps(results["comparisons"]))
    assert any("training runs" in x for x in lines) and any("download" in x for x in lines)
