"""WordNet/OMW readers, pageview parsing, selection and merge rules, the write side and the config."""

from __future__ import annotations

import json
import math

import pytest
from conftest import shared_file

from curation.metadata_dir import MetadataDir
from metadata.alignment import lang_for_unit
from metadata.build import BuildInputs, build_config, caps_table, collect_stats, publish
from metadata.config import MetadataConfig
from metadata.imported import parse_import_specs, read_metadata_json, with_imports
from metadata.merge import LanguageCandidates, Ranked, clean_entry, merge_language
from metadata.pageviews import pageview_records, parse_line
from metadata.samples import write_omw, write_pageviews
from metadata.selection import (
    UnitCounts,
    bigram_joiner,
    candidate_limits,
    keep_count,
    plan_unit,
    pmi,
    pmi_total,
    ranked_bigrams,
    ranked_titles,
    ranked_unigrams,
    unit_candidates,
)
from metadata.wordnet import omw_lemmas, synset_names, wordnet_records

WN30 = "wordnet/wordnet-3.0-en"


def _wn30_names(**kw) -> list[str]:
    return [n for pos in ("noun", "verb", "adj", "adv") for n in synset_names(shared_file(f"{WN30}/data.{pos}.xz"), **kw)]


def test_wordnet30_synset_names_are_nltk_names():
    names = list(synset_names(shared_file(f"{WN30}/data.noun.xz")))
    assert len(names) == 82115  # WordNet 3.0 has 82,115 noun synsets
    assert "dog" in names and "child" in names and "domestic dog" not in names  # 02084071-n: dog, domestic_dog, ...
    assert "small fry" not in names  # 8th lemma of child.n.01
    adj = list(synset_names(shared_file(f"{WN30}/data.adj.xz")))
    assert "abounding" in adj and "galore(ip)" not in adj  # position markers stripped
    assert all("_" not in n for n in names[:5000])


def test_wordnet30_names_are_lowercased_as_nltk_names_them():
    """NLTK's ss.name() is the first lemma lower-cased (einstein.n.01), which is what MetaCLIP's
    English WordNet source holds; 17,952 of the 87,379 distinct first lemmas have capitals, and
    as entries they could never match the lower-case text MetaCLIP's entries match."""
    names = set(_wn30_names())
    assert len(names) == 86_571  # the 87,379 case-sensitive first lemmas, lower-cased
    assert not [n for n in names if n != n.lower()]
    assert "einstein" in names and "Einstein" not in names and "united states" in names
    assert "st. andrew's cross" in names  # the whole name, by default
    cut = set(_wn30_names(cut_at_dot=True))  # MetaCLIP's name[:name.find(".")]
    assert "st" in cut and "st. andrew's cross" not in cut and ".22 caliber" not in cut and len(cut) == 86_554


def test_omw_lemmas_lose_plus_markers_on_real_chinese_wordnet():
    """OMW marks morpheme joints with '+' ("50周年+的"); no text contains them, so the reference
    (MetaCLIP 2 build_multilingual_wordnet.py) removes them: 17,960 of the 79,797 cmn lemma rows."""
    from collections import Counter

    stats: Counter = Counter()
    lemmas = [lemma for _, lemma in omw_lemmas(shared_file("wordnet/omw/wn-data-cmn.tab.xz"), stats)]
    assert len(lemmas) == 79_797 and stats["plus_markers_removed"] == 17_960
    assert not [x for x in lemmas if "+" in x]
    assert "50周年的" in lemmas and "S形曲线的" in lemmas


def test_omw_files_with_bare_lemma_columns_are_read():
    """DanNet and the Norwegian wordnet write `offset<TAB>lemma<TAB>word` (no `dan:` prefix); every
    row of them used to be a bad line, so Danish and Norwegian got no WordNet lemmas at all."""
    from collections import Counter

    for name, iso, n, word in (("wn-data-dan.tab.xz", "dan", 5_859, "kloster"), ("wn-data-nob.tab.xz", "nob", 5_586, "evne")):
        stats: Counter = Counter()
        lemmas = list(omw_lemmas(shared_file(f"wordnet/omw/{name}"), stats))
        assert len(lemmas) == n and stats["bad_line"] == 0 and (iso, word) in lemmas
    stats = Counter()
    list(omw_lemmas(shared_file("wordnet/omw/wn-data-arb.tab.xz"), stats))  # arb:lemma:root rows are no lemmas
    assert stats["lemmas"] == 37_335 and stats["bad_line"] == 0


def test_omw_lemmas_and_iso_mapping(tmp_path):
    lemmas = list(omw_lemmas(shared_file("wordnet/omw-cldr/wn-cldr-jpn.tab")))
    assert ("jpn", "アフリカーンス語") in lemmas
    path = write_omw(tmp_path / "wn-data-cmn.tab", "cmn", [("02084071-n", "狗"), ("02084071-n", "家_犬"), ("3-a", "红+的")])
    recs = list(wordnet_records(str(path)))
    assert [r for r in recs if r[0] == "w"] == [("w", "zh", "狗", "omw", 1), ("w", "zh", "家 犬", "omw", 1),
                                                ("w", "zh", "红的", "omw", 1)]
    stats = {r[2]: r[4] for r in recs if r[0] == "s"}
    assert stats["wordnet:lemmas"] == 3 and stats["wordnet:plus_markers_removed"] == 1


def test_omw_language_without_lid_label_feeds_other(tmp_path):
    path = write_omw(tmp_path / "wn-cldr-aka.tab", "aka", [("1-n", "nsuo")])  # Akan: no lid.176 label
    recs = list(wordnet_records(str(path)))
    # the unit is the language's own Wikipedia code (Twi), which feeds `other`
    assert [r[1] for r in recs if r[0] == "w"] == ["tw"] and lang_for_unit("tw") == "other"
    assert {r[1] for r in recs if r[0] == "s"} == {"other"}


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
    # views by Wikipedia code: zh_yue is ranked and capped apart from zh
    assert views == {("en", "Charles Darwin"): 15, ("de", "Berlin"): 7, ("zh_yue", "香港"): 4}
    stats = {r[2]: r[4] for r in recs if r[0] == "s"}
    assert stats["pageviews:lines"] == 6 and stats["pageviews:kept"] == 4
    assert stats["pageviews:namespace_title"] == 1 and stats["pageviews:other_project"] == 1
    # a corrupt gzip is counted, not fatal
    bad = tmp_path / "pageviews-bad.gz"
    bad.write_bytes(open(path, "rb").read()[:-12] + b"\x00garbage!")
    stats = {r[2]: r[4] for r in pageview_records(str(bad)) if r[0] == "s"}
    assert stats.get("pageviews:corrupt_input", 0) + stats.get("pageviews:truncated_input", 0) >= 1


def test_pageviews_keep_metaclip1_sums_for_english(tmp_path):
    """MetaCLIP 1 adds a line's views only when the line (one title, one hour) holds >= 50, and
    reads desktop lines only; that is what its >= 70 views rule for English titles counts."""
    import gzip

    path = write_pageviews(tmp_path / "pageviews-20240101-000000.gz", [
        ("en", "Charles_Darwin", 60), ("en.m", "Charles_Darwin", 500), ("en", "Quiet_page", 49), ("de", "Berlin", 900)])
    recs = list(pageview_records(str(path)))
    assert {(r[1], r[2]): r[4] for r in recs if r[0] == "q"} == {("en", "Charles Darwin"): 60}
    assert {(r[1], r[2]): r[4] for r in recs if r[0] == "p"}[("en", "Charles Darwin")] == 560
    daily = tmp_path / "pageviews-20240101-user.bz2"  # the daily format: hours in its last field
    lines = "en.wikipedia Foo_bar 1 desktop 140 A60B10C70\nen.m.wikipedia Foo_bar 1 mobile-web 100 A100\n"
    daily.write_bytes(gzip.compress(lines.encode(), mtime=0))
    recs = list(pageview_records(str(daily)))
    assert {r[2]: r[4] for r in recs if r[0] == "q"} == {"Foo bar": 130}  # hours 0 and 2, desktop only
    assert {r[2]: r[4] for r in recs if r[0] == "p"} == {"Foo bar": 240}
    loose = MetadataConfig(metaclip1_title_desktop_only=False, metaclip1_title_min_hourly_views=1)
    assert {r[2]: r[4] for r in pageview_records(str(daily), config=loose) if r[0] == "q"} == {"Foo bar": 240}


def test_clean_entry_rules():
    assert clean_entry("  New   York ") == ("New York", None)
    assert clean_entry("") == (None, "empty")
    assert clean_entry("—!?") == (None, "punctuation_only")
    assert clean_entry("x" * 257) == (None, "too_long")
    assert clean_entry("x" * 256)[0] == "x" * 256
    assert clean_entry("e\u0301")[0] == "\u00e9"  # NFC


def test_merge_order_first_source_wins_and_numbers():
    cfg = MetadataConfig()
    entries, sources, stats, _ = merge_language({"en": {
        "wiki_unigram": ["zeta", "alpha", "Dog", "7"], "wordnet": ["dog", "Dog", "cat"], "wiki_title": ["alpha", "!!"]}}, cfg)
    # numbers first (code point order), then wordnet, unigrams not seen before, titles: the reference's order
    assert entries[:100] == sorted(str(i) for i in range(100)) and set(sources[:100]) == {"number"}
    assert entries[100:] == ["Dog", "cat", "dog", "alpha", "zeta"]
    assert sources[100:] == ["wordnet"] * 3 + ["wiki_unigram"] * 2
    assert stats["wiki_unigram"]["dropped_duplicate"] == 2  # "Dog" (wordnet) and "7" (a number)
    assert stats["wiki_title"] == {"candidates": 2, "dropped_duplicate": 1, "dropped_punctuation_only": 1,
                                   "entries": 0, "selected": 0}
    assert len(set(entries)) == len(entries)


def test_caps_count_only_entries_new_after_earlier_sources():
    """MetaCLIP 2 build_metadata.py walks a source best first and stops after `cap` entries new
    to the language; before, the top `cap` were cut first and the duplicates then dropped, so a
    unigram that was a WordNet lemma or a number took a slot and fewer unigrams came in."""
    cfg = MetadataConfig(numbers_upto=9)
    ranked = Ranked(["the", "1", "dog", "of", "2", "cat", "and", "in"], cap=3, available=80)
    entries, sources, stats, _ = merge_language({"en": {"wordnet": ["dog", "cat"], "wiki_unigram": ranked}}, cfg)
    assert [e for e, s in zip(entries, sources, strict=True) if s == "wiki_unigram"] == ["and", "of", "the"]
    # the, of, and are new; 1, dog, 2, cat are not and take no slot (cutting the top 3 first kept only "the")
    assert stats["wiki_unigram"] == {"candidates": 80, "cap": 3, "dropped_duplicate": 4, "entries": 3,
                                     "over_cap": 73, "selected": 3}
    # a list that ends before the cap is filled while more candidates exist is reported, not hidden
    short = Ranked(["the", "1"], cap=2, available=80)
    _, _, stats, _ = merge_language({"en": {"wiki_unigram": short}}, cfg)
    assert stats["wiki_unigram"]["cap_unfilled_truncated"] == 1


def test_variants_and_other_codes_are_capped_each_on_its_own_then_unioned():
    """Per Wikipedia code, as MetaCLIP 2 builds one list per code and align_lid_to_wiki.py unions
    them: zh_yue's unigram cap is zh_yue's, not a share of zh + zh_yue summed."""
    cfg = MetadataConfig(numbers_upto=0)
    units = {"zh": {"wordnet": ["狗"], "wiki_unigram": Ranked(["狗", "北京", "上海", "大学"], cap=2)},
             "zh_yue": {"wiki_unigram": Ranked(["香港", "北京", "佢哋"], cap=2), "wiki_title": Ranked(["狗"], cap=1)}}
    entries, sources, stats, by_unit = merge_language(units, cfg)
    assert dict(zip(entries, sources, strict=True)) == {"0": "number", "狗": "wordnet", "上海": "wiki_unigram",
                                                        "北京": "wiki_unigram", "香港": "wiki_unigram"}
    assert by_unit["zh_yue"]["wiki_title"]["selected"] == 1  # new in zh_yue; the union keeps zh's wordnet label
    assert stats["wiki_unigram"]["selected"] == 4 and stats["wiki_unigram"]["entries"] == 3  # 北京 in both


def test_keep_count_rounds_down_like_the_reference():
    assert keep_count(30, 0.10, 251_465) == 3  # not 4 from 30 * 0.1 = 3.0000000000000004
    assert keep_count(39, 0.10, 251_465) == 3  # int(3.9): the reference rounds down
    assert keep_count(99, 0.76, 61_235) == 75  # int(75.24); rounding up kept 76
    assert keep_count(100, 0.29, 1000) == 29  # 28.999999999999996 in doubles
    assert keep_count(10_000_000, 0.10, 251_465) == 251_465
    assert keep_count(9, 0.10, 251_465) == 0


def test_ranked_unigrams_code_point_ties_and_metaclip1_threshold():
    counts = {"b": 5, "a": 5, "c": 9, "d": 1, "e": 100, "f": 99}
    assert ranked_unigrams(counts, False, MetadataConfig()) == ["e", "f", "c", "a", "b", "d"]
    assert ranked_unigrams(counts, True, MetadataConfig()) == ["e"]  # MetaCLIP 1: count >= 100
    assert ranked_unigrams({}, False, MetadataConfig()) == []


def test_pmi_denominator_is_the_total_unigram_count():
    """N of the PMI is NLTK's BigramCollocationFinder N (word_fd.N(), the total unigram count),
    what MetaCLIP 1 scores bigrams with; `pmi_total='bigrams'` is the total bigram count."""
    unigrams = {"new": 4, "york": 2, "city": 6}  # 12 tokens
    bigrams = {("new", "york"): 2, ("new", "city"): 2, ("york", "city"): 4, ("new", "gone"): 9}  # 17 bigrams
    cfg = MetadataConfig(bigram_min_pmi=1.0, bigram_min_count=1, bigram_max=10)
    assert pmi_total(unigrams, bigrams, cfg) == 12
    assert pmi_total(unigrams, bigrams, MetadataConfig(pmi_total="bigrams")) == 17
    assert pmi(2, 12, 4, 2) == pytest.approx(math.log2(2 * 12 / (4 * 2)))
    # N = 12: york city log2(4*12/12) = 2.0, new york log2(24/8) = 1.58, new city log2(24/24) = 0
    assert ranked_bigrams(bigrams, unigrams, False, cfg) == ["york city", "new york"]
    # N = 17: new city log2(34/24) = 0.50 stays out, but new york 2.09 and york city 2.50 pass a 1.9 threshold
    assert ranked_bigrams(bigrams, unigrams, False, MetadataConfig(bigram_min_pmi=1.9)) == ["york city"]
    assert ranked_bigrams(bigrams, unigrams, False, MetadataConfig(bigram_min_pmi=1.9, pmi_total="bigrams")) == [
        "york city", "new york"]
    assert ranked_bigrams(bigrams, unigrams, False, MetadataConfig(bigram_min_pmi=1.0, bigram_min_count=3)) == ["york city"]
    # MetaCLIP 1: PMI >= its threshold (inclusive): york city is exactly 2.0
    assert ranked_bigrams(bigrams, unigrams, True, MetadataConfig(metaclip1_bigram_min_pmi=2.0)) == ["york city"]
    assert bigram_joiner("zh") == "" and bigram_joiner("en") == " "
    # a joined entry two pairs give is offered once, at its best PMI
    zh = ranked_bigrams({("北京", "大学"): 1, ("北", "京大学"): 1, ("大学", "生"): 1},
                        {"北京": 1, "大学": 1, "生": 1, "北": 2, "京大学": 1}, False, MetadataConfig(bigram_min_pmi=0.5), "")
    assert zh == ["北京大学", "大学生"]


def test_ranked_titles_by_pageviews_else_inlinks_and_metaclip1_views():
    articles = ["Berlin", "Hamburg", "Köln", "Bonn"]
    inlinks = {"Berlin": 3, "Bonn": 3, "Köln": 1, "Nowhere": 50}
    cfg = MetadataConfig()
    # every article by in-links (a link target that is no article is no title)
    assert ranked_titles(articles, inlinks, None, False, cfg) == (["Berlin", "Bonn", "Köln", "Hamburg"], "inlinks")
    views = {"Hamburg": 50, "Berlin": 70, "Kein Artikel": 999}
    assert ranked_titles(articles, inlinks, views, False, cfg) == (["Berlin", "Hamburg"], "pageviews")  # the dump's articles
    loose = MetadataConfig(titles_require_article=False)
    assert ranked_titles(articles, inlinks, views, False, loose) == (["Kein Artikel", "Berlin", "Hamburg"], "pageviews")
    assert ranked_titles([], {}, views, False, cfg) == (["Kein Artikel", "Berlin", "Hamburg"], "pageviews")  # no dump
    assert ranked_titles(articles, inlinks, {}, False, cfg)[1] == "inlinks"
    # MetaCLIP 1 ranks by its own sums ('q' records) and keeps those with >= 70 views
    mc1 = {"Berlin": 70, "Hamburg": 69, "Bonn": 500}
    assert ranked_titles(articles, inlinks, views, True, cfg, mc1) == (["Bonn", "Berlin"], "pageviews")


def test_unit_caps_and_limits_follow_the_reference():
    cfg = MetadataConfig()
    stats = {"unigrams": 1_000, "unigrams_passing": 1_000, "bigrams": 5_000, "bigrams_passing": 40, "titles": 99,
             "wordnet": 7}
    plan = plan_unit("de", stats, "pageviews", cfg)
    # floor(10% of the distinct unigrams); bigrams: min(100,646, distinct bigrams); floor(76% of the titles)
    assert plan.caps == {"wiki_unigram": 100, "wiki_bigram": 5_000, "wiki_title": 75} and plan.rules == "metaclip2"
    # the head to send: cap + what numbers (100), WordNet (7) and the earlier capped sources can have taken
    assert plan.limits == {"wiki_unigram": 100 + 107, "wiki_bigram": 5_000 + 207, "wiki_title": 75 + 5_207}
    en = plan_unit("en", {**stats, "unigrams_passing": 30, "bigrams_passing": 4}, "inlinks", cfg)
    # MetaCLIP 1: no caps but on titles ranked by in-links (no pageview files), after every passing candidate
    assert en.caps == {"wiki_unigram": None, "wiki_bigram": None, "wiki_title": 75} and en.rules == "metaclip1"
    assert en.limits["wiki_title"] == 75 + 107 + 30 + 4
    assert candidate_limits({"wiki_unigram": 1}, {"imported": 5, "number": 3}, {}, cfg)["wiki_unigram"] == 9


def test_unit_candidates_merge_to_what_the_rules_say():
    counts = UnitCounts(unigrams={"der": 9, "Hund": 4, "die": 8, "Katze": 1, "1": 7, "Berlin": 2, **{f"w{i}": 1 for i in range(24)}},
                        bigrams={("der", "Hund"): 3}, articles=["Berlin", "Hund"], inlinks={"Hund": 2},
                        wordnet=["Hund"])
    ranked, rank_by = unit_candidates("de", counts, MetadataConfig(numbers_upto=9, bigram_min_pmi=1.0))
    assert rank_by == "inlinks" and ranked["wiki_unigram"].cap == 3  # floor(30 * 0.1)
    entries, sources, _, _ = merge_language({"de": ranked}, MetadataConfig(numbers_upto=9, bigram_min_pmi=1.0))
    got = dict(zip(entries, sources, strict=True))
    # "1" is a number and "Hund" a WordNet lemma: the 3 unigram slots go to der, die, Berlin
    assert [e for e, s in got.items() if s == "wiki_unigram"] == ["Berlin", "der", "die"]
    assert got["der Hund"] == "wiki_bigram" and got["Hund"] == "wordnet" and "Katze" not in got


def test_publish_writes_languages_other_and_the_manifest_without_spark(tmp_path):
    rows = [{"lang": "en", "a": "pages", "b": "enwiki-x.xml", "n": 3}, {"lang": "en", "a": "tokenizer:space", "b": "enwiki-x.xml", "n": 1},
            {"lang": "", "a": "pageviews:kept", "b": "pageviews-1.gz", "n": 2}]
    counts = collect_stats(rows)
    assert counts["languages"]["en"]["wikipedia"] == {"pages": 3} and counts["totals"]["pageviews"] == {"kept": 2}
    cfg = MetadataConfig(numbers_upto=2)
    bc = build_config(cfg, BuildInputs(wikipedia=["/in/enwiki-x.xml"]), ["/in/enwiki-x.xml"], [], counts)
    out = tmp_path / "m"
    groups = [LanguageCandidates("en", {"en": {"wordnet": ["dog"], "wiki_title": Ranked(["Dog", "Cat", "dog"], cap=1)}},
                                 {"en": "inlinks"}, {"en": "metaclip2"})]
    manifest = publish(str(out), iter(groups), cfg, counts, bc, progress=False)
    md = MetadataDir(out)
    assert md.languages() == ["en", "other"] and md.entries("en") == ["0", "1", "2", "dog", "Dog"]
    en = manifest["languages"]["en"]
    assert en["titles_ranked_by"] == "inlinks" and en["tokenizer"] == "space"
    assert en["units"]["en"]["rules"] == "metaclip2" and en["units"]["en"]["sources"]["wiki_title"]["over_cap"] == 2
    # the report's table: candidates before the caps, the caps, what the caps let in, what the list holds
    assert caps_table(en)["wiki_title"] == {"before_caps": 3, "cap": 1, "after_caps": 1, "entries": 1}
    assert caps_table(en)["number"] == {"before_caps": 3, "cap": None, "after_caps": 3, "entries": 3}
    assert manifest["build_config"]["inputs"]["wikipedia"] == ["enwiki-x.xml"]  # names, no absolute paths
    again = publish(str(tmp_path / "m2"), iter(groups), cfg, counts, bc, progress=False)
    assert again["version"] == manifest["version"]  # the version comes from the content
    with pytest.raises(RuntimeError, match="two groups"):
        publish(str(tmp_path / "m3"), iter(groups * 2), cfg, counts, bc, progress=False)


def test_publish_shows_languages_written_of_a_total_in_logs(tmp_path, caplog):
    counts = collect_stats([{"lang": lang, "a": "pages", "b": f"{lang}wiki-x.xml", "n": 1} for lang in ("de", "en")])
    cfg = MetadataConfig(numbers_upto=2)
    bc = build_config(cfg, BuildInputs(wikipedia=["/in/enwiki-x.xml"]), ["/in/enwiki-x.xml"], [], counts)
    groups = [LanguageCandidates("de", {"de": {"wordnet": ["Hund"]}}), LanguageCandidates("en", {"en": {"wordnet": ["dog"]}})]
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


def test_imported_metadata_json_is_a_source_that_replaces_or_precedes_the_build(tmp_path):
    """MetaCLIP 2 takes English from MetaCLIP 1's metadata.json (a JSON list) instead of building it."""
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(["0", "dog", "New York", "Dog", "dog"]), encoding="utf-8")
    assert read_metadata_json(str(path)) == ["0", "dog", "New York", "Dog", "dog"]
    obj = tmp_path / "per_lang.json"  # MetaCLIP 2's metadata_per_lang/<lang>.json: entry -> source letter
    obj.write_text(json.dumps({"犬": "w", "東京": "t"}, ensure_ascii=False), encoding="utf-8")
    assert read_metadata_json(str(obj)) == ["犬", "東京"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["x", 3]))
    with pytest.raises(ValueError, match="entry 1 is int"):
        read_metadata_json(str(bad))
    assert parse_import_specs([f"en={path}"]) == {"en": str(path)}
    with pytest.raises(ValueError, match="LANG=PATH"):
        parse_import_specs([str(path)])
    cfg = MetadataConfig(numbers_upto=1)
    built = [LanguageCandidates("de", {"de": {"wordnet": ["Hund"]}}),
             LanguageCandidates("en", {"en": {"wordnet": ["cat"], "wiki_unigram": Ranked(["the", "dog", "of"], cap=1)}},
                                {"en": "inlinks"}, {"en": "metaclip1"})]
    imported = {"en": read_metadata_json(str(path)), "ja": ["犬"]}
    replaced = {g.lang: g for g in with_imports(iter(built), imported, replace=True)}
    assert list(replaced) == ["de", "en", "ja"]
    entries, sources, stats, _ = merge_language(replaced["en"].units, cfg)
    assert entries == ["0", "Dog", "New York", "dog", "1"] and sources == ["imported"] * 4 + ["number"]
    assert stats["imported"]["dropped_duplicate_in_source"] == 1 and replaced["en"].rank_by == {}
    # without replacing, the list comes first and the unigram cap counts only entries new after it
    kept = {g.lang: g for g in with_imports(iter(built), imported, replace=False)}
    entries, sources, _, _ = merge_language(kept["en"].units, cfg)
    got = dict(zip(entries, sources, strict=True))
    assert got["dog"] == "imported" and got["cat"] == "wordnet" and got["the"] == "wiki_unigram" and "of" not in got


def test_example_config_file_loads():
    from pathlib import Path

    cfg = MetadataConfig.from_json(Path(__file__).resolve().parents[1] / "infra" / "metadata.json")
    assert cfg == MetadataConfig()  # the example file states the defaults, which are the paper's




def test_config_rejects_bad_values_at_construction():
    with pytest.raises(ValueError, match="unknown sources"):
        MetadataConfig(sources=("wordnet", "wiktionary"))
    with pytest.raises(ValueError, match="expected int"):
        MetadataConfig.from_dict({"unigram_max": "10"})
    assert MetadataConfig.from_dict({"sources": ["number"]}).sources == ("number",)
    with pytest.raises(ValueError, match="word_split"):
        MetadataConfig(word_split="nltk")
    with pytest.raises(ValueError, match="pmi_total"):
        MetadataConfig(pmi_total="tokens")
    assert MetadataConfig.from_dict({"metaclip1_languages": []}).metaclip1_languages == ()


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


def test_job_import_flag_errors_come_before_spark(tmp_path, capsys):
    from jobs import build_metadata

    out = str(tmp_path / "m")
    bad = tmp_path / "metadata.json"
    bad.write_text('["dog", ')
    assert build_metadata.main(["--output", out, "--wikipedia", "--wordnet", "--import-metadata", f"en={bad}"]) == 2
    assert "not a JSON metadata file" in capsys.readouterr().err
    assert build_metadata.main(["--output", out, "--wikipedia", "--wordnet", "--import-metadata",
                                f"en={tmp_path / 'absent.json'}"]) == 2
    assert "imported metadata for en not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_metadata.main(["--output", out, "--import-metadata", str(bad)])
    assert "LANG=PATH" in capsys.readouterr().err
