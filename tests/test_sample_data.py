"""The built-in sample: determinism, multilingual coverage, texts that match their metadata."""

from __future__ import annotations

import glob
import gzip
import json
import os
import unicodedata
from collections import Counter, defaultdict

import pytest

from curation.inputs import EventCounter, iter_wat_events
from curation.matcher import Matcher, match_ids
from curation.metadata_dir import MetadataDir
from curation.samples.alt_texts import (
    CONCEPTS,
    JUNK_ALTS,
    LANGUAGE_CODES,
    LANGUAGES,
    generate_alt_texts,
    generate_alt_texts_with_concepts,
    metadata_entries,
    write_sample,
    write_sample_metadata,
)
from jobs import make_sample


def script_of(text: str) -> str:
    for ch in text:
        if ch.isalpha():
            return unicodedata.name(ch).split()[0]
    return "?"


def test_languages_and_scripts():
    assert len(LANGUAGE_CODES) >= 20 and LANGUAGE_CODES[0] == "en"
    scripts = {script_of(metadata_entries(lang)[0][0]) for lang in LANGUAGE_CODES}
    assert len(scripts) >= 8, scripts  # LATIN, CYRILLIC, GREEK, CJK, HANGUL, THAI, ARABIC, DEVANAGARI, HEBREW
    for lang in LANGUAGE_CODES:
        entries, sources = metadata_entries(lang)
        assert len(entries) == len(set(entries)), f"{lang}: duplicate entries"
        assert len(entries) == len(CONCEPTS) + 1 + 100
        assert entries[-100:] == [str(i) for i in range(100)] and set(sources[-100:]) == {"number"}


def test_generate_alt_texts_deterministic():
    a = generate_alt_texts(3000, seed=7)
    assert a == generate_alt_texts(3000, seed=7)
    assert a != generate_alt_texts(3000, seed=8)
    assert len(a) == 3000
    langs = Counter(lang for _, _, lang in a)
    assert len(langs) >= 20 and langs.most_common(1)[0][0] == "en"
    # long tail over languages: the rarest still present, far below English
    assert langs["en"] > 5 * min(langs.values())
    urls = Counter(url for url, _, _ in a)
    assert sum(1 for c in urls.values() if c > 1) > 100  # images with several texts
    subset = generate_alt_texts(500, seed=1, languages=["en", "th", "ar"])
    assert {lang for _, _, lang in subset} == {"en", "th", "ar"}
    with pytest.raises(ValueError, match="no sample words"):
        generate_alt_texts(10, seed=1, languages=["en", "xx"])


def test_every_text_matches_its_language_metadata(tmp_path):
    rows = generate_alt_texts_with_concepts(4000, seed=3)
    write_sample_metadata(tmp_path, LANGUAGE_CODES)
    md = MetadataDir(tmp_path)
    assert md.languages() == sorted(LANGUAGE_CODES)
    by_lang = defaultdict(list)
    for _, text, lang, concept in rows:
        by_lang[lang].append((text, concept))
    assert set(by_lang) == set(LANGUAGE_CODES)
    concept_hits = Counter()
    for lang, items in by_lang.items():
        automaton = md.automaton(lang)
        matcher = Matcher(md.entries(lang))
        for (text, concept), ids in zip(items, matcher.match([t for t, _ in items]), strict=True):
            assert len(ids) > 0, f"{lang}: {text!r} matches nothing"
            assert concept in ids.tolist(), f"{lang}: {text!r} lacks concept {CONCEPTS[concept]}"
            assert match_ids(automaton, text).tolist() == ids.tolist()  # saved automaton == fresh one
            concept_hits[concept] += 1
    # Zipf over concepts: a heavy head and a long tail that is still present
    counts = [concept_hits[i] for i in range(len(CONCEPTS))]
    assert counts[0] > 10 * counts[-1] > 0
    assert sorted(counts, reverse=True)[:3] == sorted(counts[:5], reverse=True)[:3]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    write_sample(out, seed=0, files=2, pages_per_file=80)
    return out


def test_write_sample_idempotent(sample_dir, tmp_path):
    # same arguments in another place: identical WAT and entry bytes; a rerun in place changes nothing
    summary = write_sample(tmp_path, seed=0, files=2, pages_per_file=80)
    for name in ("wat/sample-00.wat.gz", "wat/sample-01.wat.gz", "metadata/entries/en.parquet", "metadata/entries/zh.parquet"):
        assert (tmp_path / name).read_bytes() == (sample_dir / name).read_bytes(), name
    assert summary["records"] == json.loads((sample_dir / "sample.json").read_text())["records"]
    # fewer files on a rerun: the stale ones go, so a glob sees exactly this sample
    write_sample(tmp_path, seed=0, files=1, pages_per_file=80)
    assert sorted(os.listdir(tmp_path / "wat")) == ["sample-00.wat.gz"]
    other = tmp_path / "other"
    write_sample(other, seed=1, files=1, pages_per_file=80)
    assert (other / "wat/sample-00.wat.gz").read_bytes() != (tmp_path / "wat/sample-00.wat.gz").read_bytes()
    with pytest.raises(ValueError, match="English"):
        write_sample(tmp_path / "x", languages=["de", "fr"])


def test_sample_wat_content(sample_dir):
    counter = EventCounter()
    pairs = []
    for path in sorted(glob.glob(str(sample_dir / "wat" / "*.wat.gz"))):
        for event in iter_wat_events(path, path):
            counter.add(event)
            if event[0] == "pair":
                pairs.append(event[1])
    d = counter.as_dict()
    assert d["records"] == json.loads((sample_dir / "sample.json").read_text())["records"]
    assert d["records"] == d["records_with_image_links"] + sum(d["skipped"].values()) + sum(d["record_rejects"].values())
    assert d["record_rejects"] == {}
    assert {"not_metadata", "not_response", "not_html", "no_image_links"} <= set(d["skipped"])
    # the junk a real crawl has
    assert {"data_uri", "unsupported_scheme", "no_text"} <= set(d["link_rejects"])
    assert {"empty_text", "text_too_long"} <= set(d["text_rejects"])
    assert {p["source"] for p in pairs} == {"alt", "title", "data-image-title"}
    assert len(pairs) > 1000
    # images reused across pages, with identical and with different texts
    texts_by_uuid = defaultdict(list)
    for p in pairs:
        texts_by_uuid[p["uuid"]].append(p["text"])
    assert any(len(set(t)) > 1 for t in texts_by_uuid.values())
    assert any(len(t) > len(set(t)) for t in texts_by_uuid.values())
    # relative URLs in the raw WAT, all resolved in the pairs
    raw = gzip.decompress((sample_dir / "wat" / "sample-00.wat.gz").read_bytes()).decode()
    assert '"url":"/images/' in raw and '"url":"//' in raw and '"url":"../' in raw
    assert all(p["url"].startswith("https://") for p in pairs)
    # every text is either deliberate junk or matches the metadata of some language
    md = MetadataDir(sample_dir / "metadata")
    assert "en" in md.languages() and len(md.languages()) >= 8
    matchers = {lang: md.automaton(lang) for lang in md.languages()}
    page_lang_hits = Counter()
    for p in pairs:
        if p["text"] in JUNK_ALTS:
            continue
        page_lang = p["page_url"].split("/")[3]
        if len(match_ids(matchers[page_lang], p["text"])):
            page_lang_hits[page_lang] += 1
        else:  # a shared stock image keeps the text of its first page, in another language
            assert p["url"].startswith("https://static.photostock.example/"), p
            assert any(len(match_ids(a, p["text"])) for a in matchers.values()), p
    assert len(page_lang_hits) >= 8


def test_make_sample_cli(tmp_path, capsys):
    summary = make_sample.main(["--out", str(tmp_path), "--files", "1", "--pages", "20", "--languages", "en,de,ja"])
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "1 WAT files" in out
    assert f"{summary['records']} records" in out and json.loads((tmp_path / "sample.json").read_text())["records"] == summary["records"]
    assert MetadataDir(tmp_path / "metadata").languages() == ["de", "en", "ja"]
    with pytest.raises(SystemExit):
        make_sample.main(["--out", str(tmp_path), "--languages", "de"])
    assert set(LANGUAGES) >= {"en", "de", "ja"}
