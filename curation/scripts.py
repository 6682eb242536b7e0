"""Writing systems: the script of each character, the scripts each LID language is written in.

The LID's script check (curation.lid) uses both: lid.176 labels a tenth of short Chinese
captions `ja` (and some `ru`, `ko`, `sr`...), which no Japanese, Russian or Korean text looks
like. A label is kept when enough of the text's letters are in a script its language is
written in; otherwise the best label of the model that fits replaces it.

Scripts are ISO 15924 codes. `Hrkt` is kana (hiragana + katakana together); `Hani` is Han
ideographs in any form (simplified, traditional, kanji, hanja). Japanese and Korean are
"mixed" scripts: `ja` is Han + kana and needs at least one kana (Han without kana is never
Japanese), `ko` is Hangul + Han and needs at least one Hangul letter.

Character -> script is a table over code points (one numpy lookup per character, no Python per
character), built once per process from the Unicode block ranges below. Only letters and marks
(general categories L*, M*, Nl) count: digits, punctuation, symbols, emoji and spaces belong to
every script. Blocks not listed (rare historic scripts, private use) count as no script, so a
text written only in them is never "corrected" (unknown -> accept).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

# Index 0 is "no script" (non-letters, unlisted blocks); the rest are ISO 15924 codes.
SCRIPTS: tuple[str, ...] = (
    "", "Latn", "Cyrl", "Grek", "Armn", "Geor", "Hebr", "Arab", "Syrc", "Thaa", "Nkoo",
    "Deva", "Beng", "Guru", "Gujr", "Orya", "Taml", "Telu", "Knda", "Mlym", "Sinh",
    "Thai", "Laoo", "Tibt", "Mymr", "Khmr", "Mong", "Ethi", "Cher", "Cans", "Tfng", "Olck",
    "Java", "Sund", "Bali", "Hang", "Hani", "Hrkt", "Bopo",
)
SCRIPT_INDEX: dict[str, int] = {s: i for i, s in enumerate(SCRIPTS)}

# Unicode blocks (inclusive code point ranges) -> script. Combining diacritics (U+0300..036F)
# are Unicode's "Inherited": they take the script of their base letter, which is counted.
_RANGES: tuple[tuple[int, int, str], ...] = (
    # Latin: ASCII, Latin-1, Extended-A/B, IPA, Extended Additional (Vietnamese), -C/-D/-E,
    # ligatures, fullwidth (common in CJK text)
    (0x0041, 0x005A, "Latn"), (0x0061, 0x007A, "Latn"), (0x00C0, 0x024F, "Latn"),
    (0x0250, 0x02AF, "Latn"), (0x1E00, 0x1EFF, "Latn"), (0x2C60, 0x2C7F, "Latn"),
    (0xA720, 0xA7FF, "Latn"), (0xAB30, 0xAB6F, "Latn"), (0xFB00, 0xFB06, "Latn"),
    (0xFF21, 0xFF3A, "Latn"), (0xFF41, 0xFF5A, "Latn"),
    (0x0370, 0x03FF, "Grek"), (0x1F00, 0x1FFF, "Grek"),
    (0x0400, 0x052F, "Cyrl"), (0x1C80, 0x1C8F, "Cyrl"), (0x2DE0, 0x2DFF, "Cyrl"), (0xA640, 0xA69F, "Cyrl"),
    (0x0531, 0x058F, "Armn"), (0xFB13, 0xFB17, "Armn"),
    (0x0591, 0x05FF, "Hebr"), (0xFB1D, 0xFB4F, "Hebr"),
    (0x0600, 0x06FF, "Arab"), (0x0750, 0x077F, "Arab"), (0x0870, 0x08FF, "Arab"),
    (0xFB50, 0xFDFF, "Arab"), (0xFE70, 0xFEFF, "Arab"),
    (0x0700, 0x074F, "Syrc"), (0x0860, 0x086F, "Syrc"),
    (0x0780, 0x07BF, "Thaa"), (0x07C0, 0x07FF, "Nkoo"),
    (0x0900, 0x097F, "Deva"), (0xA8E0, 0xA8FF, "Deva"),
    (0x0980, 0x09FF, "Beng"), (0x0A00, 0x0A7F, "Guru"), (0x0A80, 0x0AFF, "Gujr"),
    (0x0B00, 0x0B7F, "Orya"), (0x0B80, 0x0BFF, "Taml"), (0x0C00, 0x0C7F, "Telu"),
    (0x0C80, 0x0CFF, "Knda"), (0x0D00, 0x0D7F, "Mlym"), (0x0D80, 0x0DFF, "Sinh"),
    (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Laoo"), (0x0F00, 0x0FFF, "Tibt"),
    (0x1000, 0x109F, "Mymr"), (0xA9E0, 0xA9FF, "Mymr"), (0xAA60, 0xAA7F, "Mymr"),
    (0x10A0, 0x10FF, "Geor"), (0x1C90, 0x1CBF, "Geor"), (0x2D00, 0x2D2F, "Geor"),
    (0x1100, 0x11FF, "Hang"), (0x3131, 0x318E, "Hang"), (0xA960, 0xA97F, "Hang"),
    (0xAC00, 0xD7A3, "Hang"), (0xD7B0, 0xD7FF, "Hang"), (0xFFA0, 0xFFDC, "Hang"),
    (0x1200, 0x139F, "Ethi"), (0x2D80, 0x2DDF, "Ethi"), (0xAB00, 0xAB2F, "Ethi"),
    (0x13A0, 0x13FF, "Cher"), (0xAB70, 0xABBF, "Cher"),
    (0x1400, 0x167F, "Cans"), (0x18B0, 0x18FF, "Cans"),
    (0x1780, 0x17FF, "Khmr"), (0x19E0, 0x19FF, "Khmr"),
    (0x1800, 0x18AF, "Mong"),
    (0x1B00, 0x1B7F, "Bali"), (0x1B80, 0x1BBF, "Sund"), (0x1CC0, 0x1CCF, "Sund"),
    (0x1C50, 0x1C7F, "Olck"), (0x2D30, 0x2D7F, "Tfng"), (0xA980, 0xA9DF, "Java"),
    # Han: iteration mark 々, ideographic zero 〇, Hangzhou numerals, CJK Unified Ideographs
    # with extension A, compatibility ideographs, extensions B..H (planes 2 and 3)
    (0x3005, 0x3005, "Hani"), (0x3007, 0x3007, "Hani"), (0x3021, 0x3029, "Hani"),
    (0x3038, 0x303B, "Hani"), (0x3400, 0x4DBF, "Hani"), (0x4E00, 0x9FFF, "Hani"),
    (0xF900, 0xFAFF, "Hani"), (0x20000, 0x2FA1F, "Hani"), (0x30000, 0x323AF, "Hani"),
    # kana: hiragana, katakana (with the prolonged sound mark ー), phonetic extensions,
    # halfwidth katakana, kana supplement/extended
    (0x3041, 0x309F, "Hrkt"), (0x30A0, 0x30FF, "Hrkt"), (0x31F0, 0x31FF, "Hrkt"),
    (0xFF66, 0xFF9F, "Hrkt"), (0x1B000, 0x1B16F, "Hrkt"),
    (0x3105, 0x312F, "Bopo"), (0x31A0, 0x31BF, "Bopo"),
)
# ranges at least this long hold only letters (CJK ideographs, Hangul syllables)
_WHOLE_BLOCK = 4096
# one slot per code point (1.1 MB): a direct look-up, no clipping pass over the characters
TABLE_SIZE = 0x110000

# The scripts every lid.176 language is written in today. A language written in several lists
# all that a real text of it may use (Serbian in Cyrillic and Latin); historical scripts are
# left out where allowing them would defeat the check. Why some entries:
# - `bs`, `hr`: Latin. Bosnian Cyrillic is official but rare; Cyrillic Serbo-Croatian text is
#   Serbian (`sr`, `sh` allow both), and the `bs`/`hr` metadata is Latin anyway.
# - `zh`, `wuu`, `yue`: Han and bopomofo. Kana or Hangul in them is borrowed: a Chinese text
#   with a Japanese の still fits `zh` (Han is most of its letters).
# - `tt`, `kk`, `uz`, `az`, `tk`, `ug`, `ku`, `ky`, `mn`...: the Cyrillic, Latin and Arabic
#   alphabets of the Soviet, post-Soviet and Chinese periods that are in use.
# - `sa`: Devanagari only; Sanskrit in another Indic script is best matched as that language.
_WRITTEN_IN: dict[str, str] = {
    "Latn": (
        "en de fr it es ceb tr pt eo pl sv nl hu ca fi cs vi no ro id da hr sh lt gl sk eu sl et az "
        "ms sq la bs nn lv tt af oc nds ast tl is ia br uz vo als cy jbo fy lb sco jv min io ga mg "
        "an sw bar lmo su pms ilo ku ie li mwl kw hsb scn gd pam vec mt wa qu eml cbk tk rm vls yo "
        "so diq dsb frr ht gn sc nah bcl nap gv pfl hif co vep war sr kk ug ckb gom tg"
    ),
    "Cyrl": (
        "ru uk sr bg be mk kk tt ky ba uz tg mn ce cv sah mhr mrj myv kv os lez av krc xal tyv bxr "
        "rue sh az tk ug ku"
    ),
    "Grek": "el",
    "Armn": "hy",
    "Geor": "ka xmf",
    "Hebr": "he yi",
    "Arab": "ar arz fa lrc mzn azb ps ur pnb sd ckb ku ug kk ky ms",
    "Thaa": "dv",
    "Deva": "hi mr ne sa new mai bh dty gom hif sd",
    "Beng": "bn as bpy",
    "Guru": "pa",
    "Gujr": "gu",
    "Orya": "or",
    "Taml": "ta",
    "Telu": "te",
    "Knda": "kn gom",
    "Mlym": "ml",
    "Sinh": "si",
    "Thai": "th",
    "Laoo": "lo",
    "Tibt": "bo",
    "Mymr": "my",
    "Khmr": "km",
    "Mong": "mn",
    "Ethi": "am",
    "Java": "jv",
    "Sund": "su",
    "Hang": "ko",
    "Hani": "zh wuu yue ja ko",
    "Hrkt": "ja",
    "Bopo": "zh wuu yue",
}
LANG_SCRIPTS: dict[str, frozenset[str]] = {}
for _script, _langs in _WRITTEN_IN.items():
    for _lang in _langs.split():
        LANG_SCRIPTS[_lang] = LANG_SCRIPTS.get(_lang, frozenset()) | {_script}

# Scripts a text must contain at least one letter of (besides the share test) to be in that
# language: Japanese is told from Chinese by kana, Korean by Hangul.
REQUIRED_SCRIPT: dict[str, str] = {"ja": "Hrkt", "ko": "Hang"}

# GlotLID / NLLB LID-218 labels carry their script (`rus_Cyrl`, `zho_Hans`, `jpn_Jpan`): the
# composite and variant codes they use -> the scripts above (others are taken as they are).
_LABEL_SCRIPT_ALIASES: dict[str, tuple[frozenset[str], str | None]] = {
    "Hans": (frozenset({"Hani", "Bopo"}), None),
    "Hant": (frozenset({"Hani", "Bopo"}), None),
    "Jpan": (frozenset({"Hani", "Hrkt"}), "Hrkt"),
    "Kore": (frozenset({"Hang", "Hani"}), "Hang"),
    "Hira": (frozenset({"Hrkt"}), None),
    "Kana": (frozenset({"Hrkt"}), None),
}

# When no label of the model fits a text's script (a Chinese caption whose every candidate is
# European: the model saw none of its n-grams), the script's main language takes it.
SCRIPT_DEFAULT_LANG: dict[str, str] = {
    "Latn": "en", "Cyrl": "ru", "Grek": "el", "Armn": "hy", "Geor": "ka", "Hebr": "he", "Arab": "ar",
    "Thaa": "dv", "Deva": "hi", "Beng": "bn", "Guru": "pa", "Gujr": "gu", "Orya": "or", "Taml": "ta",
    "Telu": "te", "Knda": "kn", "Mlym": "ml", "Sinh": "si", "Thai": "th", "Laoo": "lo", "Tibt": "bo",
    "Mymr": "my", "Khmr": "km", "Mong": "mn", "Ethi": "am", "Java": "jv", "Sund": "su",
    "Hang": "ko", "Hani": "zh", "Hrkt": "ja", "Bopo": "zh",
}


def label_scripts(label: str) -> tuple[frozenset[str], str | None] | None:
    """(scripts, required script or None) of an LID label without '__label__'; None = unknown
    (the check accepts any text for it). lid.176 codes go through LANG_SCRIPTS, `xxx_Scrp`
    labels (GlotLID, NLLB) through their script suffix."""
    if "_" in label:
        code = label.rsplit("_", 1)[1]
        if code in _LABEL_SCRIPT_ALIASES:
            return _LABEL_SCRIPT_ALIASES[code]
        return (frozenset({code}), None) if code in SCRIPT_INDEX and code else None
    scripts = LANG_SCRIPTS.get(label)
    if scripts is None:
        return None
    return scripts, REQUIRED_SCRIPT.get(label)


@functools.lru_cache(maxsize=1)
def script_table() -> np.ndarray:
    """uint8 script index per code point below TABLE_SIZE (0 for non-letters and unlisted blocks)."""
    table = np.zeros(TABLE_SIZE, dtype=np.uint8)
    for start, end, script in _RANGES:
        sid = SCRIPT_INDEX[script]
        if end - start >= _WHOLE_BLOCK:
            # ideographs and Hangul syllables: letters throughout (its unassigned code points do
            # not occur in text), and a per-code-point look-up would take most of a second
            table[start:end + 1] = sid
            continue
        for cp in range(start, end + 1):
            cat = unicodedata.category(chr(cp))
            if cat[0] in "LM" or cat == "Nl":
                table[cp] = sid
    return table


def script_counts(texts: list[str]) -> np.ndarray:
    """Letters per script: an int64 array (len(texts), len(SCRIPTS)); column 0 counts the
    characters of no script (digits, punctuation, spaces...).

    All texts are looked up in one go: joined, encoded to UTF-32 (one uint32 per code point),
    mapped through script_table and counted per (text, script) with one bincount, a few
    nanoseconds per character.
    """
    n = len(texts)
    width = len(SCRIPTS)
    if not n:
        return np.zeros((0, width), dtype=np.int64)
    # 'surrogatepass': a lone surrogate (invalid UTF-8 in the input) is a code point like any other
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    key = np.repeat(np.arange(0, n * width, width, dtype=np.int64), lengths)
    key += script_table()[cps]
    return np.bincount(key, minlength=n * width).reshape(n, width)


def dominant_scripts(counts: np.ndarray) -> list[str]:
    """The script with most letters per row of script_counts ('' where a text has none)."""
    best = counts[:, 1:].argmax(axis=1) + 1
    return [SCRIPTS[int(b)] if counts[i, b] else "" for i, b in enumerate(best.tolist())]


__all__ = [
    "LANG_SCRIPTS",
    "REQUIRED_SCRIPT",
    "SCRIPTS",
    "SCRIPT_DEFAULT_LANG",
    "label_scripts",
    "script_counts",
    "script_table",
]
