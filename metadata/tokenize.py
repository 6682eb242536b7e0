"""Word tokens of plain article text, per language, for unigram/bigram counting.

Space-separated languages have two word rules (`MetadataConfig.word_split`):

- 'reference' (default): MetaCLIP 2's `simple_tokenizer` + `count_ngrams` (metadata/build_ngram.py).
  Whitespace separates words; every ASCII punctuation mark (`string.punctuation`, `-` and `'`
  included) and the reference's 26 extra marks (fullwidth/CJK punctuation, curly quotes, `¿`,
  `—`) stand alone, are never counted and end a bigram run; each character of the reference's
  CJK, Thai, Lao, Myanmar, Khmer and Tibetan ranges is a word of its own. Everything else
  (letters, digits, marks, symbols, other punctuation such as « » – …) stays inside words:
  "well-known" -> "well", "known"; "don't" -> "don", "t"; "«Paris»" -> "«Paris»".
- 'unicode': text is cut into segments at every Unicode punctuation mark and split at
  whitespace and symbols; a word keeps inner hyphens/apostrophes ("well-known", "don't") and
  its combining marks; characters of no-space scripts (CJK, Thai, ...) become single tokens.

Under both rules a line break ends a bigram run unless `bigrams_across_lines` (the reference
tokenizes a whole extracted file as one stream, so its bigrams join a heading to the next
paragraph and one article to the next).

No-space languages are cut into segments at every Unicode punctuation mark (the rule above is
for space-separated text; the reference has a tokenizer of its own per no-space language), then
each segment goes through a real segmenter whose dictionary or model ships in its wheel, and none
downloads anything at run time:

- zh -> jieba; ja -> fugashi + unidic-lite (or 'mecab-ipadic': mecab-python3 + ipadic, the
  reference's tagger, when both are installed); th -> pythainlp (newmm);
- km -> khmercut: the CRF over Khmer character clusters (model `crf_ner_10000`) that the
  reference's own km tokenizer uses, run by python-crfsuite;
- lo -> laonlp (dictionary maximal matching), as the reference;
- my -> pyidaungsu: its word CRF (`model/tokenizer.crfsuite`, the character features of the
  reference's mmCRFseg tokenizer), run on each space-separated piece;
- bo, dz -> 'tibetan-syllables': syllables cut after each tsheg (U+0F0B/U+0F0C), each keeping its
  tsheg as written, so a bigram joins into text as it appears. Tsheg does not end a segment under
  it. The reference uses botok for bo, but botok's wheel has no dictionary: `botok.Config`
  downloads the dialect pack from GitHub on first use. 'botok' is known here only with a dialect
  pack already on disk (`$WORLDCLIP_BOTOK_DIALECT_PACK`, or botok's default folder); without one
  it falls back with that reason instead of downloading.

Segmenters are imported lazily; when one is missing or fails to start, the language falls back to
the character rule and `Tokenizer.fallback_reason` says why (the build report shows it). Other
no-space languages (shn, mnw, blk, ...) use the character rule. Zero-width spaces (U+200B, Khmer's
optional word separator) separate tokens and never stay inside one. Bigrams of no-space languages
are joined without a space, like the words they form.
"""

from __future__ import annotations

import logging
import os
import re
import string
import unicodedata
from collections import _count_elements  # C helper behind Counter.update, without its overhead
from functools import lru_cache

from curation.text import NO_SPACE_RANGES

log = logging.getLogger(__name__)

_JOINERS = "-'\u2019"  # kept inside words
_TSHEG = "\u0f0b\u0f0c"  # Tibetan syllable marks: inside words, never the end of a segment
_ZWSP = "\u200b"
# segmenters whose words run across tsheg, so it must not end a segment before them
_TSHEG_SEGMENTERS = frozenset({"tibetan-syllables", "botok"})
KNOWN_SEGMENTERS = ("jieba", "fugashi", "mecab-ipadic", "pythainlp", "khmercut", "laonlp", "pyidaungsu",
                    "tibetan-syllables", "botok")


@lru_cache(maxsize=1)
def _classes() -> tuple[str, str]:
    """Regex classes (BMP only: large classes with supplementary ranges are scanned linearly by
    `re`, BMP-only ones are a constant-time bitmap): (segment-ending punctuation, marks)."""
    punct, marks = [], []
    for cp in range(0x10000):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "P" and chr(cp) not in _JOINERS:
            punct.append(cp)
        elif cat[0] == "M":
            marks.append(cp)
    return _ranges(punct), _ranges(marks)


@lru_cache(maxsize=2)
def _segment_regex_keeping(keep: str, across_lines: bool) -> re.Pattern:
    """The Unicode segment splitter with the characters of `keep` taken out of its punctuation."""
    punct = [cp for cp in range(0x10000) if unicodedata.category(chr(cp))[0] == "P"
             and chr(cp) not in _JOINERS and chr(cp) not in keep]
    newline = "" if across_lines else "\\n"
    return re.compile(f"[{newline}{_ranges(punct)}]+")


def _ranges(cps: list[int]) -> str:
    out = []
    start = prev = cps[0]
    for cp in cps[1:] + [-2]:
        if cp == prev + 1:
            prev = cp
            continue
        out.append(re.escape(chr(start)) if start == prev else f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
        start = prev = cp
    return "".join(out)


# The reference's word boundaries (metadata/build_ngram.py: is_punctuation, is_cjk_or_similar):
# ASCII punctuation plus these 26 marks, and the code point ranges whose characters are words
# of their own. Kana and Hangul are not among the ranges, so they form words like Latin letters.
REFERENCE_PUNCTUATION = string.punctuation + "，。、；：？¿！“”‘’（）【】《》〈〉「」『』～—"
REFERENCE_CHAR_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBEF), (0xF900, 0xFAFF), (0x2E80, 0x2EFF), (0x2F00, 0x2FDF),
    (0x2FF0, 0x2FFF),  # CJK ideographs, compatibility ideographs, radicals, description characters
    (0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x0F00, 0x0FFF),  # Thai ... Tibetan
)


@lru_cache(maxsize=4)
def _regexes(word_split: str = "reference", across_lines: bool = False
             ) -> tuple[re.Pattern, re.Pattern, re.Pattern, re.Pattern]:
    """(segment splitter, word token, word-or-no-space-char token, no-space-char search).

    Under the reference rule the two token patterns are the same and the search never matters.
    """
    newline = "" if across_lines else "\\n"
    if word_split == "reference":
        chars = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in REFERENCE_CHAR_RANGES)
        segment = re.compile(f"[{newline}{re.escape(REFERENCE_PUNCTUATION)}]+")
        token = re.compile(f"[{chars}]|[^\\s{chars}]+")
        return segment, token, token, re.compile("(?!)")
    punct, marks = _classes()
    ns = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in NO_SPACE_RANGES)
    segment = re.compile(f"[{newline}{punct}]+")
    cont = f"[\\w{marks}]"
    word = re.compile(f"[^\\W_]{cont}*(?:[{_JOINERS}]{cont}+)*")
    cont_ns = f"(?:[^\\W{ns}]|[{marks}])"
    mixed = re.compile(f"[{ns}]|[^\\W_{ns}]{cont_ns}*(?:[{_JOINERS}]{cont_ns}+)*")
    return segment, word, mixed, re.compile(f"[{ns}]")


def _has_word_char(tok: str) -> bool:
    return any(unicodedata.category(c)[0] in "LNM" for c in tok)


class Tokenizer:
    """Tokenizer of one metadata language: `segments(text)` -> list of token lists."""

    def __init__(self, lang: str, no_space: bool = False, segmenter: str | None = None, lowercase: bool = False,
                 max_token_chars: int = 256, word_split: str = "reference", bigrams_across_lines: bool = False):
        self.lang = lang
        self.no_space = no_space
        self.lowercase = lowercase
        self.max_token_chars = max_token_chars
        # the word rule is for space-separated text: the reference segments no-space languages with
        # their own tokenizers, so they keep the Unicode segment rule before the segmenter (or the
        # character rule when there is none)
        self.word_split = "unicode" if no_space else word_split
        self.joiner = "" if no_space else " "
        self.segmenter_name = None
        self.fallback_reason: str | None = None
        self._segment_re, self._word_re, self._mixed_re, self._ns_search = _regexes(self.word_split,
                                                                                    bigrams_across_lines)
        self._segment = None
        if no_space and segmenter:
            try:
                self._segment = _load_segmenter(segmenter)
                self.segmenter_name = segmenter
                if segmenter in _TSHEG_SEGMENTERS:
                    self._segment_re = _segment_regex_keeping(_TSHEG, bigrams_across_lines)
            except Exception as exc:  # noqa: BLE001 - any failure to start means: use the fallback
                self.fallback_reason = f"{segmenter}: {type(exc).__name__}: {exc}"
                log.warning("metadata tokenizer for %s: segmenter %s unavailable (%s); using characters",
                            lang, segmenter, self.fallback_reason)

    @property
    def name(self) -> str:
        if self.segmenter_name:
            return self.segmenter_name
        if self.no_space:
            return "characters"
        return "spaces" if self.word_split == "reference" else "spaces-unicode"

    def segments(self, text: str) -> list[list[str]]:
        if self.lowercase:
            text = text.lower()
        out = []
        maxlen = self.max_token_chars
        if self._segment is None:
            # words by \w (+ marks); only texts with no-space characters need the slower pattern
            findall = (self._mixed_re if self._ns_search.search(text) else self._word_re).findall
            for seg in self._segment_re.split(text):
                toks = findall(seg)
                if toks:
                    out.append(toks)
            return out
        for seg in self._segment_re.split(text.replace(_ZWSP, " ") if _ZWSP in text else text):
            seg = seg.strip()
            if not seg:
                continue
            toks = [t for t in (w.strip() for w in self._segment(seg)) if t and len(t) <= maxlen and _has_word_char(t)]
            if toks:
                out.append(toks)
        return out

    def count_into(self, text: str, unigrams: dict, bigrams: dict) -> None:
        """Add the text's unigram and bigram counts to two dicts (the hot loop of the build)."""
        if self._segment is not None or self.lowercase:
            for seg in self.segments(text):
                _count_elements(unigrams, seg)
                if len(seg) > 1:
                    _count_elements(bigrams, zip(seg, seg[1:], strict=False))
            return
        findall = (self._mixed_re if self._ns_search.search(text) else self._word_re).findall
        for seg in self._segment_re.split(text):
            toks = findall(seg)
            if toks:
                _count_elements(unigrams, toks)
                if len(toks) > 1:
                    _count_elements(bigrams, zip(toks, toks[1:], strict=False))

    def tokens(self, text: str) -> list[str]:
        return [t for seg in self.segments(text) for t in seg]

    def bigrams(self, segments: list[list[str]]) -> list[tuple[str, str]]:
        return [(seg[i], seg[i + 1]) for seg in segments for i in range(len(seg) - 1)]

    def join(self, a: str, b: str) -> str:
        return f"{a}{self.joiner}{b}"


def _load_segmenter(name: str):
    """A function str -> list[str] for a named segmenter (imports happen here, lazily)."""
    if name == "jieba":
        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        return lambda s: jieba.lcut(s, HMM=True)
    if name == "fugashi":
        import fugashi
        import unidic_lite

        tagger = fugashi.Tagger(f'-d "{unidic_lite.DICDIR}"')
        return lambda s: [w.surface for w in tagger(s)]
    if name == "pythainlp":
        from pythainlp.tokenize import word_tokenize

        return lambda s: word_tokenize(s, engine="newmm", keep_whitespace=False)
    if name == "mecab-ipadic":
        import ipadic
        import MeCab

        mecab = MeCab.Tagger(f"{ipadic.MECAB_ARGS} -Owakati")
        return lambda s: mecab.parse(s).split()
    if name == "khmercut":
        import khmercut

        khmercut.load()  # opens the CRF model shipped in the wheel
        # the reference's km tokenizer also splits the CRF's words at whitespace
        return lambda s: [w for t in khmercut.tokenize(s) for w in t.split()]
    if name == "laonlp":
        from laonlp.tokenize import word_tokenize as lao_words

        lao_words("ພາສາລາວ")  # builds its dictionary trie now, not on the first page
        return lao_words
    if name == "pyidaungsu":
        return _pyidaungsu_words()
    if name == "tibetan-syllables":
        syllable = re.compile(f"[^\\s{_TSHEG}]+[{_TSHEG}]*")
        return syllable.findall
    if name == "botok":
        return _botok_words()
    if name in ("characters", "none", ""):
        raise ValueError("no segmenter configured")
    raise ValueError(f"unknown segmenter {name!r} (known: {', '.join(KNOWN_SEGMENTERS)})")


def _pyidaungsu_words():
    """Burmese words by pyidaungsu's word CRF, with one tagger for the process (its own
    `tokenize(form='word')` opens the model file on every call)."""
    import pycrfsuite
    import pyidaungsu
    from pyidaungsu.tokenize import Tokenize

    tagger = pycrfsuite.Tagger()
    tagger.open(os.path.join(os.path.dirname(pyidaungsu.__file__), "model", "tokenizer.crfsuite"))
    crf = Tokenize()

    # the CRF drops spaces before tagging; cutting at them first keeps Latin words and numbers apart
    return lambda s: [w for piece in s.split() for w in crf.segment_sentence(tagger, piece).split()]


def _botok_words():
    """botok over a dialect pack already on disk; botok itself would download one from GitHub."""
    from botok import WordTokenizer
    from botok.config import DEFAULT_BASE_PATH, DEFAULT_DIALECT_PACK, Config

    pack = os.environ.get("WORLDCLIP_BOTOK_DIALECT_PACK") or os.path.join(DEFAULT_BASE_PATH, DEFAULT_DIALECT_PACK)
    if not os.path.isdir(os.path.join(pack, "dictionary")):
        raise FileNotFoundError(f"no botok dialect pack at {pack} (botok downloads it from GitHub at run time, "
                                "which the build never does; set WORLDCLIP_BOTOK_DIALECT_PACK)")
    wt = WordTokenizer(config=Config.from_path(pack))
    return lambda s: [t["text"] for t in wt.tokenize(s, split_affixes=False)]


_CACHE: dict[tuple, Tokenizer] = {}


def tokenizer_for(lang: str, segmenters: dict | None = None, lowercase: bool = False,
                  max_token_chars: int = 256, word_split: str = "reference",
                  bigrams_across_lines: bool = False) -> Tokenizer:
    """The (cached, per process) tokenizer of a metadata language (or of a Wikipedia code)."""
    from curation.languages import is_no_space_lang

    segmenters = segmenters or {}
    key = (lang, tuple(sorted(segmenters.items())), lowercase, max_token_chars, word_split, bigrams_across_lines)
    tok = _CACHE.get(key)
    if tok is None:
        tok = Tokenizer(lang, no_space=is_no_space_lang(lang), segmenter=segmenters.get(lang),
                        lowercase=lowercase, max_token_chars=max_token_chars, word_split=word_split,
                        bigrams_across_lines=bigrams_across_lines)
        _CACHE[key] = tok
    return tok


def tokenizer_of(lang: str, config) -> Tokenizer:
    """`tokenizer_for` with a MetadataConfig's tokenizing settings."""
    return tokenizer_for(lang, config.segmenters, config.lowercase, config.max_entry_chars,
                         config.word_split, config.bigrams_across_lines)
