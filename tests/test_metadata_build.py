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
from jobs.build_metadata import bigram_pmi, build, top_bigrams, top_titles, top_unigrams
from metadata import selection
from metadata.build import BuildInputs, discover_inputs
from metadata.config import MetadataConfig
from metadata.dump_reader import iter_pages
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
    assert len(found) >= 0.76 * len(titles)  # top 76% of titles, or already present from an earlier source
    manifest = MetadataDir(out).manifest["languages"]["en"]
    assert manifest["titles_ranked_by"] == "inlinks"  # no pageview files given
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
    for lang, text, expect in [("en", "A photo of my dog, in 1984.", {"dog", "1984"}),
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


def test_bigram_pmi_matches_hand_computation(spark):
    rows = [("u", "en", "new", "", 4), ("u", "en", "york", "", 2), ("u", "en", "city", "", 6),
            ("b", "en", "new", "york", 2), ("b", "en", "new", "city", 2), ("b", "en", "york", "city", 4),
            ("u", "zh", "北京", "", 1), ("u", "zh", "大学", "", 1), ("b", "zh", "北京", "大学", 1)]
    agg = spark.createDataFrame(rows, "kind string, lang string, a string, b string, n long")
    got = {(r["lang"], r["entry"]): r["pmi"] for r in bigram_pmi(agg, {"en": " ", "zh": ""}).collect()}
    n = 8  # bigrams in en
    assert got[("en", "new york")] == pytest.approx(math.log2(2 * n / (4 * 2)))
    assert got[("en", "york city")] == pytest.approx(math.log2(4 * n / (2 * 6)))
    assert got[("zh", "北京大学")] == pytest.approx(0.0)  # joined without a space


def test_job_selection_agrees_with_the_library_rules(spark):
    """The job's window ranks keep what metadata.selection keeps, language by language."""
    rows = [("u", "en", w, "", n) for w, n in [("new", 4), ("york", 2), ("city", 6), ("a", 6), ("b", 1), ("c", 1)]]
    rows += [("b", "en", "new", "york", 2), ("b", "en", "new", "city", 2), ("b", "en", "york", "city", 4), ("b", "en", "a", "b", 1)]
    rows += [("u", "zh", w, "", 1) for w in ("北京", "大学", "生")] + [("b", "zh", "北京", "大学", 1), ("b", "zh", "大学", "生", 1)]
    rows += [("a", lang, t, "", 1) for lang, t in [("en", "Dog"), ("en", "Cat"), ("en", "Bird"), ("de", "Berlin"), ("de", "Bonn")]]
    rows += [("l", "en", "Cat", "", 3), ("l", "en", "Nowhere", "", 9), ("l", "de", "Bonn", "", 2)]
    rows += [("p", "de", "Berlin", "", 7), ("p", "de", "Kein Artikel", "", 99), ("p", "fr", "Paris", "", 5), ("p", "fr", "Lyon", "", 5)]
    agg = spark.createDataFrame(rows, "kind string, lang string, a string, b string, n long")
    joiners = {"en": " ", "zh": ""}

    def by_lang(df):
        out: dict[str, list[str]] = {}
        for r in df.collect():
            out.setdefault(r["lang"], []).append(r["entry"])
        return {lang: sorted(entries) for lang, entries in out.items()}

    def of(kind, lang):
        return {(r[2], r[3]) if kind == "b" else r[2]: r[4] for r in rows if r[0] == kind and r[1] == lang}

    for cfg in (MetadataConfig(unigram_top_fraction=0.5, bigram_min_pmi=0.5, title_top_fraction=0.76),
                MetadataConfig(unigram_max=2, bigram_min_pmi=-1.0, bigram_max=1, title_top_fraction=0.4, titles_require_article=False)):
        assert by_lang(top_unigrams(agg, cfg)) == {lang: sorted(selection.top_unigrams(of("u", lang), cfg)) for lang in ("en", "zh")}
        bigrams = {lang: sorted(selection.top_bigrams(of("b", lang), of("u", lang), cfg, selection.bigram_joiner(lang)))
                   for lang in ("en", "zh")}
        assert by_lang(top_bigrams(agg, cfg, joiners)) == {lang: b for lang, b in bigrams.items() if b}
        got = top_titles(agg, cfg, with_pageviews=True).collect()
        want = {lang: selection.top_titles(of("a", lang), of("l", lang), of("p", lang), cfg) for lang in ("en", "de", "fr")}
        assert {lang: sorted(r["entry"] for r in got if r["lang"] == lang) for lang in want} == {
            lang: sorted(titles) for lang, (titles, _) in want.items()}
        assert {r["lang"]: r["rank_by"] for r in got} == {lang: rank_by for lang, (titles, rank_by) in want.items() if titles}


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
