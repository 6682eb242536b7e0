"""The Spark metadata build end to end: real dumps/WordNet facts, determinism, bad input, PMI."""

from __future__ import annotations

import bz2
import math
from pathlib import Path

import pytest
from conftest import shared_file

from curation.matcher import load_automaton, match_ids
from curation.metadata_dir import MetadataDir
from metadata.build import BuildInputs, build, discover_inputs
from metadata.config import MetadataConfig
from metadata.dump_reader import iter_pages
from metadata.samples import SamplePage, dump_xml, write_dump, write_omw, write_pageviews

pytestmark = pytest.mark.spark

ZH_TEXT = "北京是中华人民共和国的首都。我来到北京清华大学。上海是中国的城市，北京也是中国的城市。"


def _entries(root, lang) -> dict[str, str]:
    t = MetadataDir(root).entries_table(lang)
    return dict(zip(t.column("entry").to_pylist(), t.column("source").to_pylist(), strict=True))


# --- real data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_build(spark, tmp_path_factory):
    """One build from real dumps (en, ja), WordNet 3.0 nouns, CLDR/OMW lemmas and a generated zh dump."""
    tmp = tmp_path_factory.mktemp("real")
    zh = write_dump(tmp / "zhwiki-sample.xml.bz2", [SamplePage(f"北京{i}", ZH_TEXT) for i in range(5)], lang="zh")
    inputs = BuildInputs(
        wikipedia=[str(shared_file("wikipedia/enwiki-pages-articles-shortened.xml.bz2")),
                   str(shared_file("wikipedia/jawiki-truncated-100k.xml.xz")), zh],
        wordnet=[str(shared_file("wordnet/wordnet-3.0-en/data.noun.xz")),
                 str(shared_file("wordnet/omw-cldr/wn-cldr-jpn.tab")), str(shared_file("wordnet/omw-cldr/wn-cldr-cmn.tab"))],
    )
    out = tmp / "metadata"
    report = build(spark, inputs, str(out), MetadataConfig(max_pages_per_dump=60), progress=False)
    return out, report


def test_real_english_titles_and_wordnet(real_build):
    out, report = real_build
    en = _entries(out, "en")
    assert en["dog"] == "wordnet" and en["child"] == "wordnet"  # WordNet 3.0 synset names
    assert "domestic dog" not in en  # a later lemma of dog.n.01, not its name
    titles = [p.title for p, _ in zip(iter_pages(shared_file("wikipedia/enwiki-pages-articles-shortened.xml.bz2")), range(60), strict=False)]
    found = [t for t in titles if t in en]
    assert "Anarchism" in en
    assert len(found) >= 0.76 * len(titles)  # top 76% of titles, or already present from an earlier source
    manifest = MetadataDir(out).manifest["languages"]["en"]
    assert manifest["titles_ranked_by"] == "inlinks"  # no pageview files given
    assert manifest["wikipedia"]["skipped_redirect"] > 0 and manifest["wikipedia"]["pages_counted"] == 60
    assert manifest["by_source"]["number"] >= 1 and manifest["entries"] == len(en)
    assert report["entries_by_language"]["en"] == len(en)


def test_real_japanese_entries_are_words(real_build):
    out, _ = real_build
    ja = _entries(out, "ja")
    unigrams = [e for e, s in ja.items() if s == "wiki_unigram"]
    assert "日本" in ja and "アンパサンド" in ja  # a word, and the first article's title
    cjk = [e for e in unigrams if all("\u3040" <= c <= "\u9fff" for c in e)]
    assert sum(len(e) > 1 for e in cjk) >= 0.5 * len(cjk)  # segmented words, not single characters
    assert MetadataDir(out).manifest["languages"]["ja"]["tokenizer"] == "fugashi"
    assert "アフリカーンス語" in ja  # CLDR wordnet lemma (jpn -> ja)


def test_real_chinese_entries_are_words(real_build):
    out, _ = real_build
    zh = _entries(out, "zh")
    unigrams = [e for e, s in zh.items() if s == "wiki_unigram"]
    assert zh.get("北京") == "wiki_unigram" and "京" not in unigrams  # jieba words, not characters
    assert MetadataDir(out).manifest["languages"]["zh"]["tokenizer"] == "jieba"


def test_automata_load_and_match_their_language(real_build):
    out, _ = real_build
    md = MetadataDir(out)
    for lang, text, expect in [("en", "A photo of my dog, in 1984.", {"dog", "1984"}),
                               ("ja", "日本の写真", {"日本"}), ("zh", "我在北京的照片", {"北京"})]:
        automaton = load_automaton(out / "automata" / f"{lang}.ac")
        entries = md.entries(lang)
        found = {entries[i] for i in match_ids(automaton, text)}
        assert expect <= found, (lang, found)
    assert md.languages() == ["en", "ja", "other", "zh"]


# --- generated data: determinism, language independence, bad input, pageviews, PMI ----------------


@pytest.fixture(scope="module")
def gen_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    en_pages = [SamplePage("Charles Darwin", "[[Charles Darwin]] was a [[naturalist]]. New York is a city. " * 3),
                SamplePage("New York", "New York is a city in [[United States|the United States]]. Darwin visited New York."),
                SamplePage("Naturalist", "A naturalist studies nature. {{" * 500 + "deep" + "}}" * 500),
                SamplePage("Redirected", "#REDIRECT [[New York]]", redirect="New York")]
    en = write_dump(tmp / "enwiki-sample.xml.bz2", en_pages)
    de = write_dump(tmp / "dewiki-sample.xml.xz", [SamplePage("Berlin", "Berlin ist eine Stadt.")], lang="de", kind="xz")
    bad_utf8 = tmp / "frwiki-sample.xml"
    bad_utf8.write_bytes(dump_xml([SamplePage("Paris", "Paris est une ville."), SamplePage("Lyon", "Lyon \x01")], lang="fr")
                         .replace(b"\x01", b"\xff\xfe"))
    corrupt = bytearray(bz2.compress(dump_xml([SamplePage(f"S{i}", f"texte {i} " * 400) for i in range(50)], lang="es")))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 32] = bytes(32)
    (tmp / "eswiki-corrupt.xml.bz2").write_bytes(bytes(corrupt))
    (tmp / "itwiki-empty.xml.bz2").write_bytes(b"")
    wn = write_omw(tmp / "wn-data-fra.tab", "fra", [("1-n", "chien"), ("2-n", "ville")])
    pv = write_pageviews(tmp / "pageviews-20240101-000000.gz",
                         [("en", "New_York", 50), ("en.m", "Charles_Darwin", 70), ("en", "Not_an_article", 999)])
    return tmp, en, de, wn, pv


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("_REPORT.json", "_SUCCESS")}


def test_build_is_deterministic_and_languages_are_independent(spark, gen_inputs):
    tmp, en, de, wn, pv = gen_inputs
    inputs = discover_inputs([str(tmp)], [str(tmp)], [str(tmp)])
    assert len(inputs.wikipedia) == 5 and inputs.wordnet == [wn] and inputs.pageviews == [pv]
    cfg = MetadataConfig(bigram_min_pmi=1.0)
    r1 = build(spark, inputs, str(tmp / "out1"), cfg, progress=False)
    # a second run without German: every other language's entries and automata are byte-identical
    # (so the build is deterministic and adding/removing a language changes no other ids)
    fewer = BuildInputs([p for p in inputs.wikipedia if p != de], inputs.wordnet, inputs.pageviews)
    build(spark, fewer, str(tmp / "out2"), cfg, progress=False)
    f1, f2 = _files(tmp / "out1"), _files(tmp / "out2")
    assert "entries/de.parquet" in f1 and "entries/de.parquet" not in f2
    for name in ("entries/en.parquet", "automata/en.ac", "entries/fr.parquet", "automata/fr.ac", "entries/other.parquet"):
        assert f2[name] == f1[name], name
    assert r1["version"] == MetadataDir(tmp / "out1").version

    md = MetadataDir(tmp / "out1")
    m = md.manifest
    counts = m["build_config"]["counts"]["wikipedia"]
    assert counts["corrupt_input"] == 1 and counts["empty_input"] == 1 and counts["invalid_utf8"] == 1
    assert counts["skipped_redirect"] == 1 and counts["deep_nesting"] == 1
    assert m["languages"]["fr"]["wikipedia"]["articles"] == 1  # Paris read, Lyon (bad UTF-8) skipped
    en_entries = _entries(tmp / "out1", "en")
    # pageviews rank English titles; only dump articles count, and 76% of 2 keeps 2
    assert m["languages"]["en"]["titles_ranked_by"] == "pageviews"
    assert "Not an article" not in en_entries
    assert en_entries.get("New York") in ("wiki_bigram", "wiki_title")
    assert "chien" in _entries(tmp / "out1", "fr")
    assert r1["inputs"]["pageviews"]["kept"] == 3


def test_bigram_pmi_matches_hand_computation(spark):
    from metadata.counting import bigram_pmi

    rows = [("u", "en", "new", "", 4), ("u", "en", "york", "", 2), ("u", "en", "city", "", 6),
            ("b", "en", "new", "york", 2), ("b", "en", "new", "city", 2), ("b", "en", "york", "city", 4),
            ("u", "zh", "北京", "", 1), ("u", "zh", "大学", "", 1), ("b", "zh", "北京", "大学", 1)]
    agg = spark.createDataFrame(rows, "kind string, lang string, a string, b string, n long")
    got = {(r["lang"], r["entry"]): r["pmi"] for r in bigram_pmi(agg, {"en": " ", "zh": ""}).collect()}
    n = 8  # bigrams in en
    assert got[("en", "new york")] == pytest.approx(math.log2(2 * n / (4 * 2)))
    assert got[("en", "york city")] == pytest.approx(math.log2(4 * n / (2 * 6)))
    assert got[("zh", "北京大学")] == pytest.approx(0.0)  # joined without a space


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
