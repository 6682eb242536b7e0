"""Word segmenters of km, lo, my, bo/dz on real text of each language (Babel-ImageNet class names
and prompt templates in ../shared/data: no Wikipedia dump of these languages is there), their
fallback with a recorded reason, and what they change in the metadata build's entries."""

from __future__ import annotations

import json
import socket
import unicodedata
from collections import Counter

import pytest
from conftest import shared_file

from metadata.config import MetadataConfig
from metadata.counting import dump_records
from metadata.samples import SamplePage, write_dump
from metadata.selection import UnitCounts, bigram_joiner, unit_candidates
from metadata.tokenize import Tokenizer

# language -> (segmenter, the package that must be importable for it)
SEGMENTERS = {
    "km": ("khmercut", "khmercut"),
    "lo": ("laonlp", "laonlp"),
    "my": ("pyidaungsu", "pyidaungsu"),
    "bo": ("tibetan-syllables", None),
    "dz": ("tibetan-syllables", None),
}
TSHEG = "\u0f0b\u0f0c"


def _texts(lang: str) -> list[str]:
    babel = shared_file("eval/babel-imagenet/babel_imagenet-298.json").parent
    names = json.loads((babel / "babel_imagenet-298.json").read_text(encoding="utf-8"))[lang.upper()][1]
    prompts = json.loads((babel / "nllb_dist13b_prompts.json").read_text(encoding="utf-8")).get(lang.upper(), [])
    return sorted({" ".join(t.replace("{}", " ").split()) for t in list(names) + prompts} - {""})


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: segmenters must not download."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("a segmenter tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _word_only(text: str) -> bool:
    """Text of letters, marks, digits, spaces (and tsheg) only: its tokens must give it back."""
    return all(c.isspace() or c in TSHEG or unicodedata.category(c)[0] in "LMN" for c in text)


@pytest.mark.parametrize("lang", sorted(SEGMENTERS))
def test_segmenter_gives_multi_character_words_of_real_text(lang, no_network):
    name, package = SEGMENTERS[lang]
    if package:
        pytest.importorskip(package)  # installed by `make install` (setup.cfg install_requires)
    tok = Tokenizer(lang, no_space=True, segmenter=name)
    assert tok.fallback_reason is None and tok.name == name
    texts = _texts(lang)
    tokens = [t for text in texts for t in tok.tokens(text)]
    assert len(tokens) > len(texts)  # texts are cut into several words, not kept whole
    assert sum(len(t) > 1 for t in tokens) / len(tokens) > 0.8
    # the character rule on the same texts: one token per character of the script (only the odd
    # Latin word or number in a text is longer)
    fallback = [t for text in texts for t in Tokenizer(lang, no_space=True).tokens(text)]
    assert sum(len(t) == 1 for t in fallback) / len(fallback) > 0.95
    checked = 0
    for text in filter(_word_only, texts):
        assert "".join(tok.tokens(text)) == "".join(text.split()), text
        checked += 1
    assert checked >= len(texts) // 2


def test_tibetan_syllables_keep_tsheg_so_bigrams_occur_in_text():
    tok = Tokenizer("bo", no_space=True, segmenter="tibetan-syllables")
    text = "བོད་ཡིག་ཀློག་པ། ང་ཚོ"
    assert tok.segments(text) == [["བོད་", "ཡིག་", "ཀློག་", "པ"], ["ང་", "ཚོ"]]
    a, b = tok.segments(text)[0][:2]
    assert tok.join(a, b) == "བོད་ཡིག་" and a + bigram_joiner("bo") + b in text


def test_zero_width_space_separates_khmer_words():
    pytest.importorskip("khmercut")
    tok = Tokenizer("km", no_space=True, segmenter="khmercut")
    plain = tok.tokens("រូបថតមិនល្អ")
    assert tok.tokens("រូបថត\u200bមិនល្អ") == plain and not any("\u200b" in t for t in plain)


def test_unknown_segmenter_falls_back_to_characters_with_reason():
    tok = Tokenizer("km", no_space=True, segmenter="no-such-segmenter")
    assert tok.name == "characters" and tok.segmenter_name is None
    assert "unknown segmenter 'no-such-segmenter'" in tok.fallback_reason and "khmercut" in tok.fallback_reason
    assert tok.tokens("ខ្ញុំ") == list("ខ្ញុំ")


def test_botok_without_a_local_dialect_pack_falls_back_without_downloading(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("WORLDCLIP_BOTOK_DIALECT_PACK", str(tmp_path / "general"))
    tok = Tokenizer("bo", no_space=True, segmenter="botok")
    assert tok.name == "characters"
    # botok absent (it is not a dependency) or present without its dialect pack: a reason, no download
    assert "No module named 'botok'" in tok.fallback_reason or "no botok dialect pack" in tok.fallback_reason


def test_mecab_ipadic_option_segments_japanese():
    pytest.importorskip("MeCab")
    pytest.importorskip("ipadic")
    tok = Tokenizer("ja", no_space=True, segmenter="mecab-ipadic")
    assert tok.fallback_reason is None and "東京" in tok.tokens("東京都に住んでいる。")


def _selected_unigrams(tmp_path, config: MetadataConfig, lang: str = "km") -> tuple[list[str], Counter]:
    """The unigram entries the build's rules take from a dump of real km text, and its stats."""
    texts = _texts(lang)
    pages = [SamplePage(f"ទំព័រ {i}", "។ ".join(texts[i:i + 10])) for i in range(0, len(texts), 10)]
    path = write_dump(tmp_path / f"{lang}wiki-sample.xml.bz2", pages, lang=lang)
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    stats: Counter = Counter()
    for kind, _unit, a, b, n in dump_records(path, config):
        if kind == "u":
            unigrams[a] += n
        elif kind == "b":
            bigrams[(a, b)] += n
        elif kind == "s":
            stats[a] += n
    ranked, _ = unit_candidates(lang, UnitCounts(dict(unigrams), dict(bigrams)), config, bigram_joiner(lang))
    r = ranked["wiki_unigram"]
    return r.entries[: r.cap], stats


def test_metadata_build_entries_of_khmer_are_words_not_characters(tmp_path):
    pytest.importorskip("khmercut")
    words, stats = _selected_unigrams(tmp_path, MetadataConfig())
    assert stats["tokenizer:khmercut"] == 1 and not stats["segmenter_fallback"]
    chars, char_stats = _selected_unigrams(tmp_path, MetadataConfig(segmenters={}))
    assert char_stats["tokenizer:characters"] == 1
    assert len(chars) >= 3 and all(len(e) == 1 for e in chars)  # before: every entry one character
    assert len(words) >= 10 and sum(len(e) == 1 for e in words) / len(words) < 0.2
    assert "រូបថត" in words  # "photo", in most prompt templates
