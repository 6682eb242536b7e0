"""Dump reader, markup stripper and tokenizers: real dumps from ../shared/data and generated bad input."""

from __future__ import annotations

import bz2
import io
import time
from collections import Counter

import pytest
from conftest import shared_file

from metadata.dump_reader import DumpInfo, dump_language, iter_pages
from metadata.markup import MarkupStripper, normalize_title
from metadata.samples import SamplePage, dump_xml, write_dump
from metadata.tokenize import Tokenizer, tokenizer_for

PAGES = [
    SamplePage("Alpha", "'''Alpha''' is the first [[Greek alphabet|letter]] of the [[Greek alphabet]]."),
    SamplePage("Talk:Alpha", "a talk page", ns=1),
    SamplePage("Alfa", "#REDIRECT [[Alpha]]", redirect="Alpha"),
    SamplePage("Beta", "Beta is the second letter. {{Infobox|x=1}}"),
]


def _accounted(stats: Counter) -> int:
    keys = ("articles", "skipped_namespace", "skipped_redirect", "skipped_empty", "invalid_utf8",
            "page_too_large", "truncated_page")
    return sum(stats[k] for k in keys)


# --- real dumps --------------------------------------------------------------------------------


def test_real_truncated_xz_dump_reads_articles_and_counts_cut_page():
    path = shared_file("wikipedia/jawiki-truncated-100k.xml.xz")
    stats, info = Counter(), DumpInfo()
    titles = [p.title for p in iter_pages(path, stats, info)]
    assert info.dbname == "jawiki" and info.lang == "ja"
    assert info.namespaces[6] == "ファイル"  # localized File namespace from <siteinfo>
    assert titles[0] == "アンパサンド"
    assert all(":" not in t or not t.startswith("Wikipedia:") for t in titles)  # ns 4 pages were skipped
    assert stats["truncated_page"] == 1  # the sample is cut inside its last page
    assert stats["skipped_namespace"] > 0 and stats["skipped_redirect"] > 0
    assert stats["articles"] == len(titles) == 189
    assert _accounted(stats) == stats["pages"]


def test_real_utf16_dump_with_bom():
    path = shared_file("wikipedia/bgwiki-pages-articles-shortened-utf16.xml.bz2")
    stats = Counter()
    pages = list(iter_pages(path, stats))
    assert [p.title for p in pages] == ["Григориански календар"]
    assert "календар" in pages[0].text
    assert stats["pages"] == 3 and stats["skipped_namespace"] == 2


def test_dump_read_from_s3(s3_bucket):
    from curation import storage
    from metadata.build import discover_inputs

    storage.write_bytes(f"s3://{s3_bucket}/dumps/enwiki-x.xml.bz2", bz2.compress(dump_xml(PAGES)))
    (uri,) = discover_inputs([f"s3://{s3_bucket}/dumps"], []).wikipedia
    assert uri == f"s3://{s3_bucket}/dumps/enwiki-x.xml.bz2"
    assert [p.title for p in iter_pages(uri)] == ["Alpha", "Beta"]


def test_dump_language_from_file_name():
    assert dump_language("/x/enwiki-20240101-pages-articles.xml.bz2") == "en"
    assert dump_language("zh_yuewiki-latest-pages-articles.xml.bz2") == "zh-yue"
    with pytest.raises(ValueError):
        dump_language("pages-articles.xml")


# --- generated inputs: formats and defects ----------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "bz2", "xz", "gzip"])
def test_compression_by_magic_bytes_not_name(tmp_path, kind):
    path = write_dump(tmp_path / "enwiki-x.xml", PAGES, kind=kind)  # same name whatever the format
    stats = Counter()
    assert [p.title for p in iter_pages(path, stats)] == ["Alpha", "Beta"]
    assert stats["skipped_namespace"] == 1 and stats["skipped_redirect"] == 1
    assert _accounted(stats) == stats["pages"] == 4


def test_invalid_utf8_page_is_counted_and_the_rest_is_read():
    data = dump_xml(PAGES).replace(b"first", b"fi\xff\xfest")
    stats = Counter()
    titles = [p.title for p in iter_pages(io.BytesIO(data), stats)]
    assert titles == ["Beta"]
    assert stats["invalid_utf8"] == 1


def test_corrupt_bz2_block_is_reported_not_fatal():
    # varied text, so each stream spans several compressed chunks
    pages = [SamplePage(f"Page {i}", " ".join(str((i * 7919 + j * 104729) % 99991) for j in range(300)))
             for i in range(300)]
    good = bz2.compress(dump_xml(pages), compresslevel=1)
    bad = bytearray(good + good)  # multistream, like Wikimedia's
    mid = len(good) + len(good) // 2
    bad[mid : mid + 64] = bytes(64)  # wipe bytes inside a block of the second stream
    stats = Counter()
    titles = [p.title for p in iter_pages(io.BytesIO(bytes(bad)), stats)]
    assert stats["corrupt_input"] == 1
    assert len(titles) == 300  # the first stream was read whole before the corrupt block
    stats = Counter()
    assert len(list(iter_pages(io.BytesIO(good + b"trailing garbage"), stats))) == 300
    assert stats["corrupt_input"] == 1  # not silently ignored, as the stdlib file objects do
    stats = Counter()
    assert 0 < len(list(iter_pages(io.BytesIO(good[:-100]), stats))) < 300
    assert stats["truncated_input"] == 1


def test_empty_and_non_xml_inputs_are_counted():
    stats = Counter()
    assert list(iter_pages(io.BytesIO(b""), stats)) == []
    assert stats["empty_input"] == 1
    stats = Counter()
    assert list(iter_pages(io.BytesIO(bz2.compress(b"hello, not a dump\n" * 10)), stats)) == []
    assert stats["not_mediawiki_xml"] == 1


def test_truncated_generated_dump():
    stats = Counter()
    titles = [p.title for p in iter_pages(io.BytesIO(dump_xml(PAGES, truncate_last=True)), stats)]
    assert titles == ["Alpha"]
    assert stats["truncated_page"] == 1


def test_oversized_page_is_skipped(tmp_path):
    pages = [SamplePage("Big", "x" * 50_000), SamplePage("Small", "small text")]
    stats = Counter()
    titles = [p.title for p in iter_pages(io.BytesIO(dump_xml(pages)), stats, max_page_bytes=10_000)]
    assert titles == ["Small"] and stats["page_too_large"] == 1


# --- markup ------------------------------------------------------------------------------------


def test_markup_stripping_keeps_prose_and_anchors():
    links = Counter()
    text = (
        "{{Infobox person|name={{nowrap|X}}|born=[[1809]]}}'''Charles Darwin''' was an English "
        "[[naturalist]] and [[Biology|biologist]]<ref name=a>{{cite book|title=T}}</ref>. "
        "[[File:Darwin.jpg|thumb|A [[portrait]] of him]]\n== Early life ==\n"
        "{| class=\"wikitable\"\n|-\n| cell text\n|}\n* [http://example.org The site] &amp; more&nbsp;text\n"
        "<!-- hidden comment -->[[Category:Naturalists]] [[de:Charles Darwin]] [[Finch]]es"
    )
    out = MarkupStripper().strip(text, links)
    assert "Charles Darwin was an English naturalist and biologist." in out
    assert "Early life" in out and "The site & more text" in out and "Finches" in out
    for gone in ("Infobox", "cite", "thumb", "portrait", "cell text", "hidden", "Naturalists", "{{", "[[", "'''"):
        assert gone not in out
    assert links["Naturalist"] == 1 and links["Biology"] == 1 and links["Finch"] == 1
    assert "Naturalists" not in links  # category links are not article links


def test_localized_namespaces_from_the_dump_are_dropped():
    out = MarkupStripper({"Категория", "Файл"}).strip("Текст [[Файл:X.png|мини|подпись]] [[Категория:Y]] конец")  # noqa: B005
    assert out == "Текст конец"


def test_absurd_nesting_is_linear_and_bounded():
    stripper = MarkupStripper(max_nesting=64)
    stats = Counter()
    for text in ("{{" * 100_000 + "x" + "}}" * 100_000 + " tail", "[[" * 100_000 + "x" + "]]" * 100_000 + " tail",
                 "<ref>" * 50_000 + " tail", "{{" * 100_000 + " tail"):
        t0 = time.process_time()
        out = stripper.strip(text, None, stats)
        assert out.endswith("tail")
        assert time.process_time() - t0 < 20  # generous: quadratic behaviour would take hours
    assert stats["deep_nesting"] >= 1


def test_unclosed_template_does_not_swallow_the_page():
    assert MarkupStripper().strip("{{broken template\nText after [[it]].") == "broken template\nText after it."  # noqa: B005


def test_normalize_title():
    assert normalize_title("  charles_Darwin ") == "Charles Darwin"


# --- tokenizers --------------------------------------------------------------------------------


def test_reference_space_rule_splits_at_every_ascii_punctuation_mark():
    """MetaCLIP 2's simple_tokenizer: '-' and "'" split like every ASCII mark (and end bigrams);
    other marks (« » –, symbols) stay inside words; CJK characters are words of their own."""
    tok = Tokenizer("en")
    segs = tok.segments("A well-known don't, বাংলা ভাষা (x+y) 東京. «Paris» €100 1990–2000 ¿Qué?")
    assert segs == [["A", "well"], ["known", "don"], ["t"], ["বাংলা", "ভাষা"], ["x"], ["y"], ["東", "京"],
                    ["«Paris»", "€100", "1990–2000"], ["Qué"]]
    uni, bi = Counter(), Counter()
    tok.count_into("a b a b. a-b", uni, bi)
    assert uni == {"a": 3, "b": 3} and bi == {("a", "b"): 2, ("b", "a"): 1}
    assert tok.name == "spaces"


def test_unicode_space_rule_keeps_marks_and_joiners_and_splits_cjk():
    tok = Tokenizer("en", word_split="unicode")
    segs = tok.segments("A well-known don't, বাংলা ভাষা (x+y) 東京.")
    assert segs == [["A", "well-known", "don't"], ["বাংলা", "ভাষা"], ["x", "y"], ["東", "京"]]
    uni, bi = Counter(), Counter()
    tok.count_into("a b a b. a", uni, bi)
    assert uni == {"a": 3, "b": 2} and bi == {("a", "b"): 2, ("b", "a"): 1}


def test_bigrams_end_at_line_breaks_unless_asked_to_cross():
    uni, bi = Counter(), Counter()
    Tokenizer("en").count_into("History\nThe city", uni, bi)
    assert bi == {("The", "city"): 1}
    uni, bi = Counter(), Counter()
    Tokenizer("en", bigrams_across_lines=True).count_into("History\nThe city", uni, bi)  # the reference's stream
    assert bi == {("History", "The"): 1, ("The", "city"): 1}


def test_reference_rule_on_a_real_dump_leaves_no_ascii_punctuation_in_words():
    """On real Ukrainian and Vietnamese articles the reference rule never keeps a '-' or "'"
    inside a word, which the Unicode rule does (e.g. Ukrainian apostrophes, Vietnamese hyphens)."""
    import string

    for name in ("ukwiki-truncated-100k.xml.xz", "viwiki-truncated-100k.xml.xz"):
        path = shared_file(f"wikipedia/{name}")
        stats, info = Counter(), DumpInfo()
        ref, uni = Counter(), Counter()
        stripper = None
        for page, _ in zip(iter_pages(path, stats, info), range(60), strict=False):
            stripper = stripper or MarkupStripper(info.namespace_names())
            plain = stripper.strip(page.text)
            Tokenizer("uk").count_into(plain, ref, Counter())
            Tokenizer("uk", word_split="unicode").count_into(plain, uni, Counter())
        assert ref and not [w for w in ref if any(c in string.punctuation for c in w)]
        assert [w for w in uni if "-" in w or "'" in w]
        # a hyphenated word of the Unicode rule is two words of the reference rule
        joined = next(w for w in uni if "-" in w)
        assert all(part in ref for part in joined.split("-") if part)


def test_japanese_and_chinese_segmenters_give_words():
    ja = tokenizer_for("ja", {"ja": "fugashi", "zh": "jieba"})
    zh = tokenizer_for("zh", {"ja": "fugashi", "zh": "jieba"})
    if ja.fallback_reason or zh.fallback_reason:
        pytest.skip(f"segmenter not installed: {ja.fallback_reason or zh.fallback_reason}")
    assert ja.name == "fugashi" and zh.name == "jieba"
    assert "東京" in ja.tokens("東京都に住んでいる。") and "日本" in ja.tokens("日本の文章です")
    zh_tokens = zh.tokens("我来到北京清华大学")
    assert "北京" in zh_tokens and "清华大学" in zh_tokens
    assert ja.join("東京", "都") == "東京都" and tokenizer_for("en").join("New", "York") == "New York"


def test_missing_segmenter_falls_back_to_characters_with_reason():
    tok = Tokenizer("th", no_space=True, segmenter="no-such-segmenter")
    assert tok.name == "characters" and "no-such-segmenter" in tok.fallback_reason
    assert tok.tokens("กข") == ["ก", "ข"]


def test_thai_segmenter_gives_words():
    th = tokenizer_for("th", {"th": "pythainlp"})
    if th.fallback_reason:
        pytest.skip(f"segmenter not installed: {th.fallback_reason}")
    tokens = th.tokens("ภาษาไทยเป็นภาษาที่มีระดับเสียง")
    assert "ภาษาไทย" in tokens and th.join("ภาษา", "ไทย") == "ภาษาไทย"
