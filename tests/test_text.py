"""curation.text: the paper's spacing rule, entry padding and alt-text cleaning."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curation.text import (
    CHARS_TO_SPACE,
    MAX_TEXT_CHARS,
    PUNCTS_TO_WRAP,
    clean_alt_text,
    is_no_space_char,
    is_punctuation,
    is_punctuation_only,
    pad_entry,
    spacing,
)

PROPS = settings(derandomize=True, max_examples=300, deadline=None)

# Small alphabets per script so generated texts collide and repeat often.
SCRIPTS = "abcXY" + "абвЖ" + "αβγΩ" + "中文字東京" + "かなカナ" + "กขคไท" + "ລາວ" + "မြန်" + "ខ្មែ" + "བོད"
PUNCT = ",.;:?!`-'()\"«»、。・…"
SPACES = " \t\n\r"
ALPHABET = SCRIPTS + PUNCT + SPACES + "0123"

texts = st.text(alphabet=ALPHABET, max_size=40)


def reference_spacing(text: str) -> str:
    """The paper's rule written out character by character."""
    out = []
    for ch in text:
        if ch in PUNCTS_TO_WRAP:
            out.append(f" {ch} ")
        elif ch in CHARS_TO_SPACE:
            out.append(" ")
        else:
            out.append(ch)
    return " " + "".join(out) + " "


# --- spacing ----------------------------------------------------------------------------------


def test_spacing_examples():
    assert spacing("a cat") == " a cat "
    assert spacing("U.S.A, 2024!") == " U . S . A ,  2024 !  "
    assert spacing("tab\there\nand\rthere") == " tab here and there "
    assert spacing("`quoted`") == "  ` quoted `  "
    assert spacing("") == "  "
    # Only the listed ASCII punctuation is wrapped; other punctuation and CJK stay inline.
    assert spacing("東京、タワー。(x)") == " 東京、タワー。(x) "


@PROPS
@given(texts)
def test_spacing_equals_reference(text):
    s = spacing(text)
    assert s == reference_spacing(text)
    assert s.startswith(" ") and s.endswith(" ")
    assert not any(c in s for c in CHARS_TO_SPACE)


# --- pad_entry --------------------------------------------------------------------------------


def test_pad_entry_examples():
    assert pad_entry("cat") == " cat "
    assert pad_entry("  cat  ") == " cat "
    assert pad_entry("U.S.") == " U . S ."
    assert pad_entry("中文") == "中文"  # CJK ends: matches inside words
    assert pad_entry("東京 tower") == "東京 tower "  # each end decided on its own
    assert pad_entry("tower 東京") == " tower 東京"
    assert pad_entry("ภาษาไทย") == "ภาษาไทย"  # Thai
    assert pad_entry("ພາສາລາວ") == "ພາສາລາວ"  # Lao
    assert pad_entry("ひらがな") == "ひらがな"
    assert pad_entry("カタカナ") == "カタカナ"
    assert pad_entry("(hello)") == "(hello)"  # punctuation ends are not padded
    assert pad_entry("«мир»") == "«мир»"
    assert pad_entry("hello!") == " hello !"
    assert pad_entry("Ωμέγα") == " Ωμέγα "
    assert pad_entry("한국어") == " 한국어 "  # Korean is written with spaces
    assert pad_entry("") == ""
    assert pad_entry(" \t\n") == ""
    assert pad_entry("...") == ".  .  ."  # like the text "...": each dot wrapped


@PROPS
@given(st.text(alphabet=ALPHABET, min_size=0, max_size=12))
def test_pad_entry_rule(entry):
    key = pad_entry(entry)
    core = reference_spacing(entry)[1:-1].strip(" ")
    if not core:
        assert key == ""
        return
    assert key.strip(" ") == core
    assert key.startswith(" ") == (not (is_no_space_char(core[0]) or is_punctuation(core[0])))
    assert key.endswith(" ") == (not (is_no_space_char(core[-1]) or is_punctuation(core[-1])))
    # An entry always matches its own text, alone or between other words.
    assert key in spacing(entry)
    assert key in spacing(f"x {entry} y")


def test_character_classes():
    for ch in "中文かカกລབမខ、。ｱ":
        assert is_no_space_char(ch), ch
    for ch in "aЖΩ한1 ":
        assert not is_no_space_char(ch), ch
    assert not is_no_space_char("")
    for ch in ",.;:?!`-'()«»、。\"":
        assert is_punctuation(ch), ch
    for ch in "aЖ中1 ":
        assert not is_punctuation(ch), ch
    assert is_punctuation_only("...!? -")
    assert not is_punctuation_only("... a")
    assert not is_punctuation_only("中")
    assert not is_punctuation_only("1")


# --- clean_alt_text ------------------------------------------------------------------------------


def test_clean_examples():
    assert clean_alt_text("  a\tphoto\n\nof  a  cat ") == ("a photo of a cat", None)
    assert clean_alt_text("ctrl\x00\x07chars\x7f\x85here\u200bzw\ufeff") == ("ctrl chars here zw", None)
    assert clean_alt_text("e\u0301te\u0301") == ("été", None)  # NFC
    assert clean_alt_text("caf\xc3\xa9".encode("latin-1")) == ("café", None)  # bytes are UTF-8
    assert clean_alt_text(b"bad \xff\xfe bytes") == ("bad bytes", None)  # undecodable bytes dropped
    assert clean_alt_text("東京タワー") == ("東京タワー", None)
    assert clean_alt_text(None) == (None, "empty_text")
    assert clean_alt_text("") == (None, "empty_text")
    assert clean_alt_text(" \t\n\x00\u200b ") == (None, "empty_text")
    assert clean_alt_text(b"") == (None, "empty_text")
    assert clean_alt_text(42) == (None, "not_text")
    assert clean_alt_text(["a"]) == (None, "not_text")


def test_clean_length_cap():
    assert clean_alt_text("a" * MAX_TEXT_CHARS) == ("a" * MAX_TEXT_CHARS, None)
    assert clean_alt_text("a" * (MAX_TEXT_CHARS + 1)) == (None, "text_too_long")
    assert clean_alt_text("x" * 10_000_000) == (None, "text_too_long")
    assert clean_alt_text("abcdef", max_chars=5) == (None, "text_too_long")
    # The cap applies after whitespace is collapsed.
    assert clean_alt_text("a" + " " * 50 + "b", max_chars=5) == ("a b", None)


@PROPS
@given(st.one_of(st.text(max_size=60), st.text(alphabet=ALPHABET + "\x00\x1f\x7f\u200b\ufeff\u00a0\u3000\u0301", max_size=60)))
def test_clean_properties(raw):
    text, reason = clean_alt_text(raw, max_chars=40)
    assert (text is None) != (reason is None)
    if text is None:
        assert reason in ("empty_text", "text_too_long")
        return
    assert text == text.strip()
    assert "  " not in text
    assert not any(unicodedata.category(c) == "Cc" for c in text)
    assert not any(c.isspace() and c != " " for c in text)
    assert len(text) <= 40
    assert clean_alt_text(text, max_chars=40) == (text, None)  # idempotent
    assert unicodedata.is_normalized("NFC", text)


def _clean_reference(raw: str, max_chars: int = MAX_TEXT_CHARS):
    """The cleaning rules spelled out step by step, without the fast path."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFC", raw).replace("\ufffd", " ")
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return None, "empty_text"
    if len(text) > max_chars:
        return None, "text_too_long"
    return text, None


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab Z.,\t\n\r\x00\x7f\x85\u00a0\u200b\u2028\ufeff\ufffdé\u0301e東ไ  ")), max_size=30))
def test_clean_alt_text_fast_path_equals_the_rules(raw):
    assert clean_alt_text(raw) == _clean_reference(raw)
    assert clean_alt_text(raw, max_chars=5) == _clean_reference(raw, max_chars=5)
