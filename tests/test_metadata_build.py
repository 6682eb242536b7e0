"""The Spark metadata build end to end: real dumps/WordNet facts, determinism, bad input, PMI, selection."""

from __future__ import annotations

import bz2
import json
import math
from pathlib import Path

import pytest
from conftest import shared_file

from curation.matcher import load_automaton, match_ids
from curation.metadata_dir import MetadataDir
from jobs import build_metadata as job
from jobs.build_metadata import bigram_pmi, build
from metadata import selection
from metadata.alignment import lang_for_unit
from metadata.build import BuildInputs, discover_inputs
from metadata.config import MetadataConfig
from metadata.dump_reader import iter_pages
from metadata.merge import merge_language
from metadata.samples import SamplePage, dump_xml, write_dump, write_omw, write_pageviews

pytestmark = pytest.mark.spark

ZH_TEXT = "北京是中华人民共和国的首都。我来到北京清华大学。上海是中国的城市，北京也是中国的城市。"


def _entries(root, lang) -> dict[str, str]:
    t = MetadataDir(root).entries_table(lang)
    return dict(zip(t.column("entry").to_pylist(), t.column("source").to_pylist(), strict=True))


# --- one build over real data plus generated inputs with known defects ----------------------------


def _generated(tmp: Path) -> dict[str, str]:
    de_pages = [SamplePage("Berlin", "[[Berlin]] ist eine Stadt. Neue Stadt ist Berlin. " * 3),
                SamplePage("Hamburg", "Hamburg ist eine [[Stadt]] in [[Deutschland|Deutschland]]. Berlin und Hamburg."),
                SamplePage("Tief", "Tief verschachtelt. " + "{{" * 500 + "x" + "}}" * 500),
                SamplePage("Umleitung", "#WEITERLEITUNG [[Berlin]]", redirect="Berlin")]
    bad_utf8 = tmp / "frwiki-sample.xml"
    bad_utf8.write_bytes(dump_xml([SamplePage("Paris", "Paris est une ville."), SamplePage("Lyon", "Lyon \x01")], lang="fr")
                         .replace(b"\x01", b"\xff\xfe"))
    corrupt = bytearray(bz2.compress(dump_xml([SamplePage(f"S{i}", f"texte {i} " * 400) for i in range(50)], lang="es")))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 32] = bytes(32)
    (tmp / "eswiki-corrupt.xml.bz2").write_bytes(bytes(corrupt))
    (tmp / "itwiki-empty.xml.bz2").write_bytes(b"")
    return {
        "de": write_dump(tmp / "dewiki-sample.xml.xz", de_pages, lang="de", kind="xz"),
        "zh": write_dump(tmp / "zhwiki-sample.xml.bz2", [SamplePage(f"北京{i}", ZH_TEXT) for i in range(5)], lang="zh"),
        "fr": str(bad_utf8), "es": str(tmp / "eswiki-corrupt.xml.bz2"), "it": str(tmp / "itwiki-empty.xml.bz2"),
        "omw_fra": write_omw(tmp / "wn-data-fra.tab", "fra", [("1-n", "chien"), ("2-n", "ville")]),
        "pv": write_pageviews(tmp / "pageviews-20240101-000000.gz",
                              [("de", "Hamburg", 50), ("de.m", "Berlin", 70), ("de", "Kein_Artikel", 999)]),
    }


@pytest.fixture(scope="module")
def real_build(spark, tmp_path_factory):
    """Build A: real dumps (en, ja; 30 articles each), WordNet 3.0 nouns, CLDR lemmas, and generated
    dumps (zh via jieba; de with pageviews; fr with a bad-UTF-8 page; a corrupt and an empty dump)."""
    tmp = tmp_path_factory.mktemp("real")
    gen = _generated(tmp)
    inputs = BuildInputs(
        wikipedia=[str(shared_file("wikipedia/enwiki-pages-articles-shortened.xml.bz2")),
                   str(shared_file("wikipedia/jawiki-truncated-100k.xml.xz"))] + [gen[k] for k in ("de", "zh", "fr", "es", "it")],
        wordnet=[str(shared_file("wordnet/wordnet-3.0-en/data.noun.xz")), str(shared_file("wordnet/omw-cldr/wn-cldr-jpn.tab")),
                 str(shared_file("wordnet/omw-cldr/wn-cldr-cmn.tab")), gen["omw_fra"]],
        pageviews=[gen["pv"]],
    )
    out = tmp / "metadata"
    report = build(spark, inputs, str(out), MetadataConfig(max_pages_per_dump=30, bigram_min_pmi=1.0), progress=False)
    return out, report, gen, tmp


def test_real_english_titles_and_wordnet(real_build):
    out, report, _, _ = real_build
    en = _entries(out, "en")
    assert en["dog"] == "wordnet" and en["child"] == "wordnet"  # WordNet 3.0 synset names
    assert "domestic dog" not in en  # a later lemma of dog.n.01, not its name
    titles = [p.title for p, _ in zip(iter_pages(shared_file("wikipedia/enwiki-pages-articles-shortened.xml.bz2")), range(30), strict=False)]
    found = [t for t in titles if t in en]
    assert "Anarchism" in en
    # no pageview files: MetaCLIP 1's rule needs views, so titles fall back to the in-link rule:
    # floor(76%) new titles, on top of those an earlier source already holds
    assert len(found) >= math.floor(0.76 * len(titles))
    manifest = MetadataDir(out).manifest["languages"]["en"]
    assert manifest["titles_ranked_by"] == "inlinks"  # no pageview files given
    assert manifest["units"]["en"]["rules"] == "metaclip1"
    unigrams = manifest["units"]["en"]["sources"]["wiki_unigram"]
    assert "cap" not in unigrams and unigrams["candidates"] > 0  # MetaCLIP 1: every unigram seen >= 100 times
    assert manifest["wikipedia"]["skipped_redirect"] > 0 and manifest["wikipedia"]["pages_counted"] == 30
    assert manifest["by_source"]["number"] >= 1 and manifest["entries"] == len(en)
    assert report["entries_by_language"]["en"] == len(en)


def test_real_japanese_entries_are_words(real_build):
    out, _, _, _ = real_build
    ja = _entries(out, "ja")
    unigrams = [e for e, s in ja.items() if s == "wiki_unigram"]
    assert "日本" in ja and "アンパサンド" in ja  # a word, and the first article's title
    cjk = [e for e in unigrams if all("\u3040" <= c <= "\u9fff" for c in e)]
    assert sum(len(e) > 1 for e in cjk) >= 0.5 * len(cjk)  # segmented words, not single characters
    assert MetadataDir(out).manifest["languages"]["ja"]["tokenizer"] == "fugashi"
    assert "アフリカーンス語" in ja  # CLDR wordnet lemma (jpn -> ja)


def test_real_chinese_entries_are_words(real_build):
    out, _, _, _ = real_build
    zh = _entries(out, "zh")
    unigrams = [e for e, s in zh.items() if s == "wiki_unigram"]
    assert zh.get("北京") == "wiki_unigram" and "京" not in unigrams  # jieba words, not characters
    assert MetadataDir(out).manifest["languages"]["zh"]["tokenizer"] == "jieba"


def test_automata_load_and_match_their_language(real_build):
    out, _, _, _ = real_build
    md = MetadataDir(out)
    for lang, text, expect in [("en", "A photo of my dog, aged 12.", {"dog", "12"}),
                               ("ja", "日本の写真", {"日本"}), ("zh", "我在北京的照片", {"北京"})]:
        automaton = load_automaton(out / "automata" / f"{lang}.ac")
        entries = md.entries(lang)
        found = {entries[i] for i in match_ids(automaton, text)}
        assert expect <= found, (lang, found)
    assert md.languages() == ["de", "en", "fr", "ja", "other", "zh"]


def test_bad_inputs_are_counted_not_fatal_and_pageviews_rank_titles(real_build):
    out, report, _, _ = real_build
    m = MetadataDir(out).manifest
    counts = m["build_config"]["counts"]["wikipedia"]
    assert counts["corrupt_input"] == 1 and counts["empty_input"] == 1 and counts["invalid_utf8"] == 1
    assert counts["deep_nesting"] == 1 and counts["skipped_redirect"] > 1
    assert m["languages"]["fr"]["wikipedia"]["articles"] == 1  # Paris read, Lyon (bad UTF-8) skipped
    assert "chien" in _entries(out, "fr")
    de = _entries(out, "de")
    assert m["languages"]["de"]["titles_ranked_by"] == "pageviews"
    assert "Kein Artikel" not in de  # pageview titles must be articles of the dump
    assert de.get("Hamburg") in ("wiki_unigram", "wiki_title") and "Berlin" in de
    assert report["inputs"]["pageviews"]["kept"] == 3
    assert de.get("Neue Stadt") == "wiki_bigram"  # PMI > 1 in this tiny corpus; joined with a space


def test_deterministic_and_languages_independent(spark, real_build, s3_bucket):
    """Build B, from only the generated de/fr inputs, published to S3 (real moto server): its files
    equal build A's, so a rerun reproduces them and adding languages (en, ja, zh, ...) changed none
    of their ids."""
    from curation import storage

    out_a, _, gen, tmp = real_build
    inputs = discover_inputs([gen["de"], gen["fr"]], [gen["omw_fra"]], [gen["pv"]])
    dest = f"s3://{s3_bucket}/metadata/v1"
    report = build(spark, inputs, dest, MetadataConfig(max_pages_per_dump=30, bigram_min_pmi=1.0), progress=False)
    assert storage.is_complete(dest) and report["output"] == dest
    keys = sorted(u[len(dest) + 1:] for u in storage.list_files(dest + "/"))
    assert [k for k in keys if k.startswith("entries/")] == ["entries/de.parquet", "entries/fr.parquet", "entries/other.parquet"]
    assert "manifest.json" in keys and "_REPORT.json" in keys
    for name in ("entries/de.parquet", "entries/fr.parquet"):
        assert storage.read_bytes(f"{dest}/{name}") == (out_a / name).read_bytes(), name
    ma = MetadataDir(out_a).manifest["languages"]
    mb = json.loads(storage.read_bytes(f"{dest}/manifest.json"))["languages"]
    for lang in ("de", "fr"):  # automata: same content (their file bytes embed memory addresses)
        assert ma[lang]["automaton_content_sha256"] == mb[lang]["automaton_content_sha256"]
        local = tmp / f"b-{lang}.ac"
        local.write_bytes(storage.read_bytes(f"{dest}/automata/{lang}.ac"))
        assert sorted(load_automaton(local).items()) == sorted(load_automaton(out_a / "automata" / f"{lang}.ac").items())
        ma[lang]["sha256"].pop(f"automata/{lang}.ac"), mb[lang]["sha256"].pop(f"automata/{lang}.ac")
        assert ma[lang] == mb[lang]


def test_variants_capped_apart_and_an_imported_english_list(spark, tmp_path):
    """A build where zh_yue and zh are capped each on its own and unioned, two codes feeding
    `other` likewise, and English taken from a MetaCLIP-style metadata.json instead of the real
    English dump (which is then not read). The report shows entries by source before/after caps."""
    yue_words = [f"粵{i:02d}" for i in range(30)]
    zh_pages = [SamplePage(f"北京{i}", ZH_TEXT) for i in range(3)]
    yue_pages = [SamplePage(f"香港{i}", "佢哋 " + " ".join(yue_words[: 10 + i]) + " 香港") for i in range(12)]
    kab_pages = [SamplePage(f"Tamurt {i}", "argaz d tamurt " * (i + 1)) for i in range(4)]
    ryu_pages = [SamplePage("沖縄", "うちなーぐち 沖縄 " * 3)]
    metadata_json = tmp_path / "metadata.json"
    metadata_json.write_text(json.dumps(["dog", "New York", "0", "photo"]), encoding="utf-8")
    inputs = discover_inputs(
        [write_dump(tmp_path / "zhwiki-x.xml.bz2", zh_pages, lang="zh"),
         write_dump(tmp_path / "zh_yuewiki-x.xml.bz2", yue_pages, lang="zh-yue"),
         write_dump(tmp_path / "kabwiki-x.xml.bz2", kab_pages, lang="kab"),
         write_dump(tmp_path / "ryuwiki-x.xml.bz2", ryu_pages, lang="ryu"),
         str(shared_file("wikipedia/enwiki-pages-articles-shortened.xml.bz2"))],
        [], [], {"en": str(metadata_json)})
    out = tmp_path / "metadata"
    report = build(spark, inputs, str(out), MetadataConfig(bigram_min_pmi=1.0), progress=False)
    m = MetadataDir(out).manifest
    zh = m["languages"]["zh"]["units"]
    assert sorted(zh) == ["zh", "zh_yue"]
    # zh_yue's own cap: floor(10% of its distinct unigrams), new entries only (the numbers came first)
    yue_unigrams = zh["zh_yue"]["sources"]["wiki_unigram"]
    assert yue_unigrams["cap"] == math.floor(yue_unigrams["candidates"] * 0.1) and yue_unigrams["selected"] == yue_unigrams["cap"]
    assert zh["zh"]["sources"]["wiki_unigram"]["cap"] == math.floor(zh["zh"]["sources"]["wiki_unigram"]["candidates"] * 0.1)
    assert sorted(m["languages"]["other"]["units"]) == ["kab", "ryu"]
    assert m["languages"]["other"]["units"]["ryu"]["sources"]["wiki_bigram"]["selected"] >= 1
    other = _entries(out, "other")  # Okinawan: characters (no segmenter), bigrams joined without a space
    assert other["沖縄"] == "wiki_bigram" and other["argaz d"] == "wiki_bigram"
    # English is the imported list plus the numbers; the English dump was not read
    en = MetadataDir(out).entries_table("en")
    assert set(en.column("source").to_pylist()) == {"imported", "number"}
    assert set(en.column("entry").to_pylist()) == {"dog", "New York", "photo"} | {str(i) for i in range(100)}
    assert m["build_config"]["inputs"]["imported"] == {"en": "metadata.json"}
    assert m["build_config"]["inputs"]["wikipedia_excluded"] == ["enwiki-pages-articles-shortened.xml.bz2"]
    table = report["entries_by_source"]["zh"]["wiki_unigram"]
    assert table["before_caps"] > table["cap"] >= table["after_caps"] >= table["entries"] > 0
    assert report["entries_by_source"]["en"]["imported"]["entries"] == 4


def test_bigram_pmi_matches_hand_computation(spark):
    rows = [("u", "en", "new", "", 4), ("u", "en", "york", "", 2), ("u", "en", "city", "", 6),
            ("b", "en", "new", "york", 2), ("b", "en", "new", "city", 2), ("b", "en", "york", "city", 4),
            ("u", "zh", "北京", "", 1), ("u", "zh", "大学", "", 1), ("b", "zh", "北京", "大学", 1)]
    agg = spark.createDataFrame(rows, "kind string, lang string, a string, b string, n long")
    got = {(r["lang"], r["entry"]): r["pmi"] for r in bigram_pmi(agg, {"en": " ", "zh": ""}).collect()}
    n = 12  # N: the total unigram count of en (NLTK's, MetaCLIP 1's)
    assert got[("en", "new york")] == pytest.approx(math.log2(2 * n / (4 * 2)))
    assert got[("en", "york city")] == pytest.approx(math.log2(4 * n / (2 * 6)))
    assert got[("zh", "北京大学")] == pytest.approx(1.0)  # joined without a space; N = 2 unigrams
    by_bigrams = {(r["lang"], r["entry"]): r["pmi"]
                  for r in bigram_pmi(agg, {"en": " ", "zh": ""}, MetadataConfig(pmi_total="bigrams")).collect()}
    assert by_bigrams[("en", "new york")] == pytest.approx(math.log2(2 * 8 / (4 * 2)))  # N: 8 bigrams


def _job_languages(spark, rows, config, units, imported_sizes=None):
    """The job's stages from aggregated records to each language's candidates."""
    agg = spark.createDataFrame(rows, "kind string, lang string, a string, b string, n long")
    mc1 = sorted(u for u, lang in units.items() if selection.uses_metaclip1(lang, config))
    unigrams = job.unigram_candidates(agg, config, mc1)
    bigrams = job.bigram_candidates(agg, config, units)
    titles = job.title_candidates(agg, config, mc1, with_pageviews=True)
    plans = job.plan_units(job.unit_stats(agg, unigrams, bigrams, titles), units, config, imported_sizes)
    return {g.lang: g for g in job.by_language(spark, job.candidates(spark, agg, unigrams, bigrams, titles, plans),
                                                 plans, config)}, plans


def _library_units(rows, units, config):
    """selection.unit_candidates of every unit, from the same records as plain values."""
    out: dict[str, dict] = {}
    rank_by = {}
    for unit, lang in units.items():
        c = selection.UnitCounts()
        for kind, u, a, b, n in rows:
            if u != unit:
                continue
            if kind == "u":
                c.unigrams[a] = n
            elif kind == "b":
                c.bigrams[(a, b)] = n
            elif kind == "a":
                c.articles.append(a)
            elif kind == "l":
                c.inlinks[a] = n
            elif kind == "p":
                c.pageviews[a] = n
            elif kind == "q":
                c.metaclip1_views[a] = n
            elif kind == "w":
                c.wordnet.append(a)
        ranked, rank_by[unit] = selection.unit_candidates(lang, c, config, selection.bigram_joiner(unit))
        out.setdefault(lang, {})[unit] = ranked
    return out, rank_by


def test_job_selection_agrees_with_the_library_rules(spark):
    """Language by language, what the job's window ranks send, capped and unioned by the merge,
    is what metadata.selection + metadata.merge give on the same records as plain values: same
    entries, same counts before and after the caps, though the job sends only each capped
    source's head. Covers a MetaCLIP 2 language with a variant (zh, zh_yue), English under
    MetaCLIP 1's rules with pageviews, a language ranked by pageviews restricted to articles and
    two codes feeding `other`."""
    zh = [f"词{i:02d}" for i in range(40)]
    rows = [("u", "zh", w, "", 100 - i) for i, w in enumerate(zh)] + [("w", "zh", w, "omw", 1) for w in zh[:3] + ["狗"]]
    rows += [("u", "zh", "1", "", 1000)]  # a number: takes no unigram slot
    rows += [("b", "zh", zh[i], zh[i + 1], 1) for i in range(0, 20)] + [("b", "zh", "词0", "0词01", 1), ("u", "zh", "词0", "", 1),
                                                                       ("u", "zh", "0词01", "", 1)]
    rows += [("u", "zh_yue", w, "", 5) for w in zh[10:30]] + [("a", "zh_yue", w, "", 1) for w in ("香港", "九龍", zh[12])]
    rows += [("u", "en", w, "", n) for w, n in [("the", 500), ("dog", 150), ("of", 100), ("cat", 99), ("new", 120),
                                                  ("york", 110)]]
    rows += [("b", "en", "new", "york", 110), ("b", "en", "the", "dog", 1), ("w", "en", "dog", "wn30", 1)]
    rows += [("a", "en", t, "", 1) for t in ("Dog", "Cat", "Bird")] + [("l", "en", "Cat", "", 3)]
    rows += [("p", "en", t, "", v) for t, v in [("Dog", 900), ("Cat", 80), ("Bird", 75), ("Nowhere", 5000)]]
    rows += [("q", "en", t, "", v) for t, v in [("Dog", 700), ("Cat", 70), ("Nowhere", 5000)]]  # Bird: 69 or less
    rows += [("a", "de", t, "", 1) for t in ("Berlin", "Bonn", "Köln", "Ulm")] + [("l", "de", "Bonn", "", 2)]
    rows += [("p", "de", t, "", v) for t, v in [("Berlin", 7), ("Kein Artikel", 99), ("Bonn", 3), ("Ulm", 1)]]
    rows += [("u", "kab", w, "", n) for w, n in [("argaz", 9), ("tamurt", 5), ("aman", 3)]]
    rows += [("u", "ryu", w, "", n) for w, n in [("沖縄", 9), ("うちなー", 4)]] + [("b", "ryu", "沖縄", "うちなー", 4)]
    units = {u: lang_for_unit(u) for u in ("zh", "zh_yue", "en", "de", "kab", "ryu")}
    assert units["zh_yue"] == "zh" and units["kab"] == units["ryu"] == "other"
    for cfg in (MetadataConfig(numbers_upto=3, unigram_top_fraction=0.5, bigram_min_pmi=0.5, title_top_fraction=0.76,
                               metaclip1_bigram_min_pmi=1.0),
                MetadataConfig(numbers_upto=0, unigram_max=2, bigram_min_pmi=-1.0, bigram_max=1, title_top_fraction=0.4,
                               titles_require_article=False, pmi_total="bigrams", metaclip1_languages=())):
        got, plans = _job_languages(spark, rows, cfg, units)
        want, rank_by = _library_units(rows, units, cfg)
        assert sorted(got) == sorted(want)
        for lang in want:
            g, w = merge_language(got[lang].units, cfg), merge_language(want[lang], cfg)
            assert (g.entries, g.sources) == (w.entries, w.sources), lang
            assert g.by_source == w.by_source and g.by_unit == w.by_unit, lang
            assert got[lang].rank_by == {u: rank_by[u] for u in got[lang].units}
        # the job sent only the head a cap needs: zh's 40 unigrams, cap 20 or 2, head <= cap + 4 numbers + 4 lemmas
        sent = len(got["zh"].units["zh"]["wiki_unigram"].entries)
        assert sent == plans["zh"].limits["wiki_unigram"] < 41
    en = merge_language(got["en"].units, cfg)  # the second config: MetaCLIP 2 rules for English too
    assert plans["en"].rules == "metaclip2" and en.by_source["wiki_unigram"]["cap"] == 0


def test_job_cli_defaults(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
    import build_metadata

    args = build_metadata.parse_args(["--output", str(tmp_path / "m"), "--bigram-min-pmi", "5"])
    assert args.wikipedia is None and build_metadata.make_config(args).bigram_min_pmi == 5.0
    assert build_metadata.SHARED.endswith("shared/data")
    if Path(build_metadata.SHARED, "wikipedia").is_dir():
        found = discover_inputs([build_metadata.SHARED + "/wikipedia"], []).wikipedia
        assert len(found) == 9 and any(Path(p).name.startswith("jawiki") for p in found)
