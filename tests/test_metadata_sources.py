"""WordNet/OMW readers, pageview parsing, selection and merge rules, the write side and the config."""

from __future__ import annotations

import json
import math

import pytest
from conftest import shared_file

from curation.metadata_dir import MetadataDir
from metadata.build import BuildInputs, build_config, collect_stats, publish
from metadata.config import MetadataConfig
from metadata.merge import clean_entry, merge_language
from metadata.pageviews import pageview_records, parse_line
from metadata.samples import write_omw, write_pageviews
from metadata.selection import bigram_joiner, keep_count, pmi, top_bigrams, top_titles, top_unigrams
from metadata.wordnet import omw_lemmas, synset_names, wordnet_records


def test_wordnet30_synset_names_are_first_lemmas():
    names = list(synset_names(shared_file("wordnet/wordnet-3.0-en/data.noun.xz")))
    assert len(names) == 82115  # WordNet 3.0 has 82,115 noun synsets
    assert "dog" in names and "child" in names and "domestic dog" not in names  # 02084071-n: dog, domestic_dog, ...
    assert "small fry" not in names  # 8th lemma of child.n.01
    adj = list(synset_names(shared_file("wordnet/wordnet-3.0-en/data.adj.xz")))
    assert "abounding" in adj and "galore(ip)" not in adj  # position markers stripped
    assert all("_" not in n for n in names[:5000])


def test_omw_lemmas_and_iso_mapping(tmp_path):
    lemmas = list(omw_lemmas(shared_file("wordnet/omw-cldr/wn-cldr-jpn.tab")))
    assert ("jpn", "アフリカーンス語") in lemmas
    path = write_omw(tmp_path / "wn-data-cmn.tab", "cmn", [("02084071-n", "狗"), ("02084071-n", "家_犬")])
    recs = list(wordnet_records(str(path)))
    assert [r for r in recs if r[0] == "w"] == [("w", "zh", "狗", "omw", 1), ("w", "zh", "家 犬", "omw", 1)]
    stats = {r[2]: r[4] for r in recs if r[0] == "s"}
    assert stats["wordnet:lemmas"] == 2


def test_omw_language_without_lid_label_feeds_other(tmp_path):
    path = write_omw(tmp_path / "wn-cldr-aka.tab", "aka", [("1-n", "nsuo")])  # Akan: no lid.176 label
    assert [r[1] for r in wordnet_records(str(path)) if r[0] == "w"] == ["other"]


def test_pageview_line_parsing():
    assert parse_line("en Charles_Darwin 12 0") == ("en", "Charles Darwin", 12, None)
    assert parse_line("en.m charles_darwin 3 0") == ("en", "Charles darwin", 3, None)
    assert parse_line("en.b Some_Book 3 0")[3] == "other_project"
    assert parse_line("en Talk:Foo 3 0")[3] == "namespace_title"
    assert parse_line("en Foo x 0")[3] == "bad_count"
    assert parse_line("garbage")[3] == "bad_line"
    assert parse_line("ja %E6%97%A5%E6%9C%AC 5 0") == ("ja", "日本", 5, None)
    assert parse_line("en.wikipedia Foo_bar 42 desktop 7 A7")[:3] == ("en", "Foo bar", 7)


def test_pageview_file_sums_desktop_and_mobile(tmp_path):
    path = write_pageviews(tmp_path / "pageviews-20240101-000000.gz", [
        ("en", "Charles_Darwin", 10), ("en.m", "Charles_Darwin", 5), ("en", "Special:Search", 99),
        ("de", "Berlin", 7), ("en.d", "word", 1), ("zh-yue", "香港", 4),
    ])
    recs = list(pageview_records(str(path)))
    views = {(r[1], r[2]): r[4] for r in recs if r[0] == "p"}
    assert views == {("en", "Charles Darwin"): 15, ("de", "Berlin"): 7, ("zh", "香港"): 4}
    stats = {r[2]: r[4] for r in recs if r[0] == "s"}
    assert stats["pageviews:lines"] == 6 and stats["pageviews:kept"] == 4
    assert stats["pageviews:namespace_title"] == 1 and stats["pageviews:other_project"] == 1
    # a corrupt gzip is counted, not fatal
    bad = tmp_path / "pageviews-bad.gz"
    bad.write_bytes(open(path, "rb").read()[:-12] + b"\x00garbage!")
    stats = {r[2]: r[4] for r in pageview_records(str(bad)) if r[0] == "s"}
    assert stats.get("pageviews:corrupt_input", 0) + stats.get("pageviews:truncated_input", 0) >= 1


def test_clean_entry_rules():
    assert clean_entry("  New   York ") == ("New York", None)
    assert clean_entry("") == (None, "empty")
    assert clean_entry("—!?") == (None, "punctuation_only")
    assert clean_entry("x" * 257) == (None, "too_long")
    assert clean_entry("x" * 256)[0] == "x" * 256
    assert clean_entry("e\u0301")[0] == "\u00e9"  # NFC


def test_merge_order_first_source_wins_and_numbers():
    cfg = MetadataConfig()
    entries, sources, stats = merge_language(
        {"wiki_unigram": ["zeta", "alpha", "Dog", "7"], "wordnet": ["dog", "Dog", "cat"], "wiki_title": ["alpha", "!!"]}, cfg)
    # wordnet first (sorted by code point), then unigrams not seen before, titles, then numbers
    assert entries[:5] == ["Dog", "cat", "dog", "7", "alpha"]
    assert sources[:5] == ["wordnet"] * 3 + ["wiki_unigram"] * 2
    assert entries[5] == "zeta" and sources[5] == "wiki_unigram"
    assert entries[6:] == sorted(str(i) for i in range(100) if i != 7)  # code point order
    assert set(sources[6:]) == {"number"}
    assert stats["wiki_title"] == {"candidates": 2, "dropped_duplicate": 1, "dropped_punctuation_only": 1}
    assert len(set(entries)) == len(entries)


def test_keep_count_rounding_and_caps():
    assert keep_count(30, 0.10, 251_465) == 3  # not 4 from 30 * 0.1 = 3.0000000000000004
    assert keep_count(31, 0.10, 251_465) == 4
    assert keep_count(10_000_000, 0.10, 251_465) == 251_465
    assert keep_count(100, 0.76, 61_235) == 76


def test_top_unigrams_fraction_cap_and_code_point_ties():
    counts = {"b": 5, "a": 5, "c": 9, "d": 1, "e": 1, "f": 1, "g": 1, "h": 1, "i": 1, "j": 1}
    cfg = MetadataConfig(unigram_top_fraction=0.3, unigram_max=100)
    assert top_unigrams(counts, cfg) == ["c", "a", "b"]  # ceil(10 * 0.3) = 3; equal counts by code point
    assert top_unigrams(counts, MetadataConfig(unigram_top_fraction=0.3, unigram_max=2)) == ["c", "a"]
    assert top_unigrams({}, cfg) == []


def test_top_bigrams_pmi_thresholds_and_joiner():
    unigrams = {"new": 4, "york": 2, "city": 6}
    bigrams = {("new", "york"): 2, ("new", "city"): 2, ("york", "city"): 4, ("new", "gone"): 9}
    n = 17  # every bigram of the language counts in N, also one whose word is not counted
    assert pmi(2, n, 4, 2) == pytest.approx(math.log2(2 * n / (4 * 2)))
    cfg = MetadataConfig(bigram_min_pmi=1.0, bigram_min_count=1, bigram_max=10)
    # york city: log2(4*17/12) = 2.50, new york: log2(34/8) = 2.09, new city: log2(34/24) = 0.50
    assert top_bigrams(bigrams, unigrams, cfg) == ["york city", "new york"]
    assert top_bigrams(bigrams, unigrams, MetadataConfig(bigram_min_pmi=1.0, bigram_min_count=3)) == ["york city"]
    assert top_bigrams(bigrams, unigrams, MetadataConfig(bigram_min_pmi=1.0, bigram_max=1)) == ["york city"]
    assert bigram_joiner("zh") == "" and bigram_joiner("en") == " "
    assert top_bigrams({("北京", "大学"): 1, ("大学", "生"): 1}, {"北京": 1, "大学": 1, "生": 1},
                       MetadataConfig(bigram_min_pmi=0.5), bigram_joiner("zh")) == ["北京大学", "大学生"]


def test_top_titles_by_pageviews_else_inlinks():
    articles = ["Berlin", "Hamburg", "Köln", "Bonn"]
    inlinks = {"Berlin": 3, "Bonn": 3, "Köln": 1, "Nowhere": 50}
    cfg = MetadataConfig(title_top_fraction=0.76, title_max=100)
    # ceil(4 * 0.76) = 4 articles by in-links (a link target that is no article is no title)
    assert top_titles(articles, inlinks, None, cfg) == (["Berlin", "Bonn", "Köln", "Hamburg"], "inlinks")
    assert top_titles(articles, inlinks, None, MetadataConfig(title_top_fraction=0.5))[0] == ["Berlin", "Bonn"]
    views = {"Hamburg": 50, "Berlin": 70, "Kein Artikel": 999}
    assert top_titles(articles, inlinks, views, cfg) == (["Berlin", "Hamburg"], "pageviews")  # only the dump's articles
    loose = MetadataConfig(title_top_fraction=0.76, title_max=100, titles_require_article=False)
    assert top_titles(articles, inlinks, views, loose) == (["Kein Artikel", "Berlin", "Hamburg"], "pageviews")
    assert top_titles([], {}, views, cfg) == (["Kein Artikel", "Berlin", "Hamburg"], "pageviews")  # no dump: all views
    assert top_titles(articles, inlinks, {}, cfg)[1] == "inlinks"


def test_publish_writes_languages_other_and_the_manifest_without_spark(tmp_path):
    rows = [{"lang": "en", "a": "pages", "b": "enwiki-x.xml", "n": 3}, {"lang": "en", "a": "tokenizer:space", "b": "enwiki-x.xml", "n": 1},
            {"lang": "", "a": "pageviews:kept", "b": "pageviews-1.gz", "n": 2}]
    counts = collect_stats(rows)
    assert counts["languages"]["en"]["wikipedia"] == {"pages": 3} and counts["totals"]["pageviews"] == {"kept": 2}
    cfg = MetadataConfig(numbers_upto=2)
    bc = build_config(cfg, BuildInputs(wikipedia=["/in/enwiki-x.xml"]), ["/in/enwiki-x.xml"], [], counts)
    out = tmp_path / "m"
    groups = [("en", {"wordnet": ["dog"], "wiki_title": ["Dog"]}, "inlinks")]
    manifest = publish(str(out), iter(groups), cfg, counts, bc, progress=False)
    md = MetadataDir(out)
    assert md.languages() == ["en", "other"] and md.entries("en") == ["dog", "Dog", "0", "1", "2"]
    assert manifest["languages"]["en"]["titles_ranked_by"] == "inlinks" and manifest["languages"]["en"]["tokenizer"] == "space"
    assert manifest["build_config"]["inputs"]["wikipedia"] == ["enwiki-x.xml"]  # names, no absolute paths
    again = publish(str(tmp_path / "m2"), iter(groups), cfg, counts, bc, progress=False)
    assert again["version"] == manifest["version"]  # the version comes from the content
    with pytest.raises(RuntimeError, match="two groups"):
        publish(str(tmp_path / "m3"), iter(groups * 2), cfg, counts, bc, progress=False)


def test_publish_shows_languages_written_of_a_total_in_logs(tmp_path, caplog):
    counts = collect_stats([{"lang": lang, "a": "pages", "b": f"{lang}wiki-x.xml", "n": 1} for lang in ("de", "en")])
    cfg = MetadataConfig(numbers_upto=2)
    bc = build_config(cfg, BuildInputs(wikipedia=["/in/enwiki-x.xml"]), ["/in/enwiki-x.xml"], [], counts)
    groups = [("de", {"wordnet": ["Hund"]}, None), ("en", {"wordnet": ["dog"]}, None)]
    with caplog.at_level("INFO", logger="metadata.build"):
        publish(str(tmp_path / "m"), iter(groups), cfg, counts, bc, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "metadata.build"]
    assert lines[:2] == ["metadata: 1/3 languages written", "metadata: 2/3 languages written"]  # de, en of de, en, other
    assert lines[-1] == "metadata: 3 languages written"


def test_config_json_and_overrides(tmp_path):
    cfg = MetadataConfig()
    assert (cfg.unigram_max, cfg.bigram_min_pmi, cfg.bigram_max, cfg.title_top_fraction, cfg.title_max) == (
        251_465, 30.0, 100_646, 0.76, 61_235)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"metadata": {"bigram_min_pmi": 5.0, "title_max": 10}}))
    loaded = MetadataConfig.from_json(path).with_overrides(title_max=None, unigram_max=7)
    assert (loaded.bigram_min_pmi, loaded.title_max, loaded.unigram_max) == (5.0, 10, 7)
    with pytest.raises(ValueError, match="unknown"):
        MetadataConfig.from_dict({"bigram_pmi": 3})
    with pytest.raises(ValueError):
        MetadataConfig.from_dict({"title_top_fraction": 2})
    assert MetadataConfig.from_dict(cfg.to_dict()) == cfg


def test_example_config_file_loads():
    from pathlib import Path

    cfg = MetadataConfig.from_json(Path(__file__).resolve().parents[1] / "infra" / "metadata.json")
    assert cfg.unigram_max == 251_465




def test_config_rejects_bad_values_at_construction():
    with pytest.raises(ValueError, match="unknown sources"):
        MetadataConfig(sources=("wordnet", "wiktionary"))
    with pytest.raises(ValueError, match="expected int"):
        MetadataConfig.from_dict({"unigram_max": "10"})
    assert MetadataConfig.from_dict({"sources": ["number"]}).sources == ("number",)


def test_job_flags_file_and_set_build_the_config(tmp_path, capsys):
    from pathlib import Path

    from jobs import build_metadata

    infra = str(Path(__file__).resolve().parents[1] / "infra" / "metadata.json")
    args = build_metadata.parse_args(
        ["--output", str(tmp_path / "m"), "--config", infra, "--bigram-min-pmi", "5", "--lowercase",
         "--unigram-top-fraction", "0.2", "--title-max", "9", "--set", "title_max=3", "--set", "max_pages_per_dump=30",
         "--segmenters", "zh=jieba", "--sources", "wordnet,number"])
    cfg = build_metadata.make_config(args)
    assert cfg == MetadataConfig(bigram_min_pmi=5.0, lowercase=True, unigram_top_fraction=0.2, title_max=9,
                                 max_pages_per_dump=30, segmenters={"zh": "jieba"}, sources=("wordnet", "number"))
    with pytest.raises(SystemExit):  # invalid values are usage errors, before Spark starts
        build_metadata.main(["--output", str(tmp_path / "m"), "--title-top-fraction", "2"])
    assert "title_top_fraction must be in [0, 1]" in capsys.readouterr().err
