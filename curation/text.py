"""Text rules of the recipe: the paper's spacing, character classes, entry padding, alt-text cleaning.

Matching is substring search of a padded entry inside a spaced text. Spacing makes word
boundaries explicit for space-separated languages while no-space scripts (CJK, Thai, Lao,
Burmese, Khmer, Tibetan) and punctuation-ended entries match inside words.
"""

from __future__ import annotations

import re
import string
import unicodedata

import numpy as np

# MetaCLIP's `spacing`: these are surrounded by spaces; tab/CR/LF become spaces.
PUNCTS_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARS_TO_SPACE = ("\t", "\n", "\r")

# Scripts written without spaces between words; an entry end in one of them is not padded.
NO_SPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0xA9E0, 0xA9FF),  # Myanmar Extended-B
    (0xAA60, 0xAA7F),  # Myanmar Extended-A
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x31A0, 0x31FF),  # Bopomofo ext, CJK strokes, Katakana phonetic ext
    (0x3200, 0x33FF),  # enclosed CJK, CJK compatibility
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # half/fullwidth forms
    (0x20000, 0x323AF),  # CJK Extensions B..H
)

_NO_SPACE_RE = re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in NO_SPACE_RANGES) + "]")

# Hard cap on a cleaned alt-text; longer ones are rejected (`text_too_long`), not truncated:
# real alt-text is short, multi-kilobyte "alt" is boilerplate or injected page text.
MAX_TEXT_CHARS = 4096

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_WS_RE = re.compile(r"\s+")


def is_no_space_char(ch: str) -> bool:
    """True for characters of scripts written without spaces between words."""
    return bool(ch) and _NO_SPACE_RE.match(ch) is not None


def is_punctuation(ch: str) -> bool:
    """True for Unicode punctuation (categories P*) and the ASCII symbols MetaCLIP wraps."""
    return bool(ch) and (unicodedata.category(ch).startswith("P") or ch in PUNCTS_TO_WRAP)


def contains_no_space_script(text: str) -> bool:
    return _NO_SPACE_RE.search(text) is not None


_WRAP_TABLE = {ord(p): f" {p} " for p in PUNCTS_TO_WRAP}
_WRAP_TABLE.update({ord(c): " " for c in CHARS_TO_SPACE})


# The same mapping as (from, to) pairs: chained str.replace is ~4x faster than str.translate
# with multi-character replacements, and equal to it because no replacement introduces a
# character that a later pair rewrites.
_WRAP_PAIRS = tuple((p, f" {p} ") for p in PUNCTS_TO_WRAP) + tuple((c, " ") for c in CHARS_TO_SPACE)


def spacing(text: str) -> str:
    """The paper's spacing of a text: one space of padding, wrapped punctuation, no tabs/newlines."""
    text = f" {text} "
    for char, repl in _WRAP_PAIRS:
        if char in text:
            text = text.replace(char, repl)
    return text


# The pairs that spacing_joined applies to the joined string: all but "\n", the separator.
_JOINED_PAIRS = tuple(pair for pair in _WRAP_PAIRS if pair[0] != "\n")


def spacing_joined(texts: list[str]) -> str | None:
    """spacing() of every text, joined by "\n", in one pass over one string (batch matching).

    Equal to "\n".join(map(spacing, texts)) because every rule of spacing rewrites single
    characters and none of them touches the separators (" " and "\n"). Returns None when
    that does not hold (a text that is not a str or contains "\n") or `texts` is empty.
    """
    if not texts:
        return None
    try:
        joined = " \n ".join(texts)
    except TypeError:  # a text that is not a str
        return None
    if joined.count("\n") != len(texts) - 1:
        return None
    joined = f" {joined} "
    for char, repl in _JOINED_PAIRS:
        if char in joined:
            joined = joined.replace(char, repl)
    return joined


def needs_pad(ch: str) -> bool:
    """Whether an entry end character gets a space: not for no-space scripts or punctuation."""
    return not (is_no_space_char(ch) or is_punctuation(ch))


# How entries become search keys: 'project' (pad_entry below) or 'reference', MetaCLIP 2's
# get_spaced_metadata (metaclip/curation/substr_matching.py), kept to reproduce its matches.
ENTRY_PADDINGS = ("project", "reference")

# The reference's punctuation at entry ends: ASCII punctuation and 26 CJK/fullwidth marks
# (its `additional_punctuation`), not Unicode's P* categories ("«", "¿", "–" get a space there).
REFERENCE_END_PUNCTUATION = frozenset(string.punctuation + "，。、；：？！“”‘’（）【】《》〈〉「」『』～—")

# The reference's "CJK or similar" ranges: Han (no kana, no fullwidth forms, no CJK symbols),
# Thai, Lao, Burmese (no extensions), Khmer, Tibetan.
_REFERENCE_NO_PAD_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBEF), (0xF900, 0xFAFF), (0x2E80, 0x2EFF), (0x2F00, 0x2FDF),
    (0x2FF0, 0x2FFF), (0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF),
    (0x0F00, 0x0FFF),
)


def reference_needs_pad(ch: str) -> bool:
    """The reference's end rule: a space unless the character is in its CJK-or-similar ranges
    or its punctuation. Kana, Hangul compatibility forms and fullwidth letters do get a space
    there, so a Japanese entry ending in kana matches only where the text has a space."""
    cp = ord(ch)
    return not (ch in REFERENCE_END_PUNCTUATION or any(lo <= cp <= hi for lo, hi in _REFERENCE_NO_PAD_RANGES))


def pad_entry(entry: str, padding: str = "project") -> str:
    """The search key of a metadata entry.

    'project': its interior is spaced like a text (so "U.S." becomes "U . S .", which is how the
    text "U.S." reads after spacing), then each end gets one space unless that end character is
    punctuation (Unicode P*) or of a no-space script (NO_SPACE_RANGES, kana included). Returns ""
    for an entry with nothing left after spacing.

    'reference': the entry as it is (the reference does not space an entry's interior, so an
    entry with ".,;:?!`" inside never matches a spaced text), each end padded by
    reference_needs_pad.
    """
    if padding == "reference":
        if not entry:
            return ""
        left = " " if reference_needs_pad(entry[0]) else ""
        right = " " if reference_needs_pad(entry[-1]) else ""
        return f"{left}{entry}{right}"
    if padding != "project":
        raise ValueError(f"entry padding must be one of {ENTRY_PADDINGS}, got {padding!r}")
    core = entry.translate(_WRAP_TABLE).strip(" ")
    if not core:
        return ""
    left = " " if needs_pad(core[0]) else ""
    right = " " if needs_pad(core[-1]) else ""
    return f"{left}{core}{right}"


def _already_clean(text: str) -> bool:
    """True when cleaning would return `text` unchanged: the common case, decided in C calls.

    isprintable() is False for every control, format, surrogate and separator character
    except the ASCII space, which covers what the control and whitespace rules would touch.
    """
    return (
        bool(text)
        and text.isprintable()
        and text[0] != " "
        and text[-1] != " "
        and "  " not in text
        and (text.isascii() or ("\ufffd" not in text and unicodedata.is_normalized("NFC", text)))
    )


# An ASCII text that clean_alt_text returns unchanged: printable, no leading/trailing/double space.
_ASCII_CLEAN_RE2 = r"^[!-~]( ?[!-~])*$"


def already_clean_mask(texts, as_list: list) -> np.ndarray:
    """Per text of an Arrow string array: True where clean_alt_text(text) is (text, None).

    ASCII texts are decided in C for the whole column (_ASCII_CLEAN_RE2 and the length cap),
    the others by _already_clean on runs of `as_list` (the same texts as Python objects) joined
    by single spaces (_mark_clean). False means "call clean_alt_text" (nulls included).
    """
    import pyarrow.compute as pc

    ascii_ = pc.fill_null(pc.string_is_ascii(texts), False).to_numpy(zero_copy_only=False)
    ok = pc.and_kleene(pc.match_substring_regex(texts, _ASCII_CLEAN_RE2),
                       pc.less_equal(pc.binary_length(texts), MAX_TEXT_CHARS))
    mask = pc.fill_null(ok, False).to_numpy(zero_copy_only=False) & ascii_
    other = np.flatnonzero(~ascii_ & pc.fill_null(pc.less_equal(pc.utf8_length(texts), MAX_TEXT_CHARS), False)
                           .to_numpy(zero_copy_only=False))
    if other.size:
        picked = list(map(as_list.__getitem__, other.tolist()))
        flags = np.zeros(len(picked), dtype=bool)
        _mark_clean(picked, 0, len(picked), flags)
        mask[other] = flags
    return mask


def _mark_clean(texts: list[str], lo: int, hi: int, out: np.ndarray) -> None:
    """out[i] = _already_clean(texts[i]) for lo <= i < hi, deciding whole runs at once.

    _already_clean(" ".join(run)) holds exactly when it holds for every text of the run: the
    separator is one printable space (an empty, space-edged or double-spaced text makes "  " or
    a space at an end), and a space is a starter that composes with nothing, so the join is NFC
    exactly when every text is. A run that fails is split in two, down to single texts.
    """
    if hi - lo <= 4:
        for i in range(lo, hi):
            out[i] = _already_clean(texts[i])
    elif _already_clean(" ".join(texts[lo:hi])):
        out[lo:hi] = True
    else:
        mid = (lo + hi) // 2
        _mark_clean(texts, lo, mid, out)
        _mark_clean(texts, mid, hi, out)


def clean_alt_text(raw: object, max_chars: int = MAX_TEXT_CHARS) -> tuple[str | None, str | None]:
    """Normalise raw alt-text: NFC, control/zero-width characters dropped, whitespace runs collapsed.

    Returns (text, None) or (None, reason) with reason one of `not_text`, `empty_text`,
    `text_too_long`.
    """
    if raw is None:
        return None, "empty_text"
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return None, "not_text"
    if len(raw) > 4 * max_chars + 1024:  # cheap early exit before normalising megabytes
        return None, "text_too_long"
    if _already_clean(raw):
        return (raw, None) if len(raw) <= max_chars else (None, "text_too_long")
    text = unicodedata.normalize("NFC", raw)
    text = text.replace("\ufffd", " ")
    text = _CONTROL_RE.sub(" ", text)
    text = _WS_RE.sub(" ", text).strip()
    if not text:
        return None, "empty_text"
    if len(text) > max_chars:
        return None, "text_too_long"
    return text, None


def is_punctuation_only(text: str) -> bool:
    """True when a text has no letter, digit or mark (used to drop useless metadata entries)."""
    return not any(unicodedata.category(c)[0] in "LNM" for c in text)
