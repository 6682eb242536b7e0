"""Word tokens of plain article text, per language, for unigram/bigram counting.

Space-separated languages use the paper's simple rule: text is cut into segments at
punctuation and line breaks (bigrams never cross a segment), each segment is split at
whitespace and symbols; a word keeps inner hyphens/apostrophes ("well-known", "don't") and
its combining marks (Indic vowel signs are part of words, unlike in regex `\\w`); characters
of no-space scripts (CJK, Thai, ...) become single tokens.

No-space languages go through a real segmenter whose dictionary ships in its wheel:
zh -> jieba, ja -> fugashi + unidic-lite, th -> pythainlp (newmm). Segmenters are imported
lazily; when one is missing or fails to start, the language falls back to the character rule
and `Tokenizer.fallback_reason` says why (the build report shows it). Other no-space languages
(km, lo, my, bo, ...) use the character rule. Bigrams of no-space languages are joined without
a space, like the words they form.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import _count_elements  # C helper behind Counter.update, without its overhead
from functools import lru_cache

from curation.text import NO_SPACE_RANGES

log = logging.getLogger(__name__)

_JOINERS = "-'\u2019"  # kept inside words


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


@lru_cache(maxsize=1)
def _regexes() -> tuple[re.Pattern, re.Pattern, re.Pattern, re.Pattern]:
    """(segment splitter, word token, word-or-no-space-char token, no-space-char search)."""
    punct, marks = _classes()
    ns = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in NO_SPACE_RANGES)
    segment = re.compile(f"[\\n{punct}]+")
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
                 max_token_chars: int = 256):
        self.lang = lang
        self.no_space = no_space
        self.lowercase = lowercase
        self.max_token_chars = max_token_chars
        self.joiner = "" if no_space else " "
        self.segmenter_name = None
        self.fallback_reason: str | None = None
        self._segment_re, self._word_re, self._mixed_re, self._ns_search = _regexes()
        self._segment = None
        if no_space and segmenter:
            try:
                self._segment = _load_segmenter(segmenter)
                self.segmenter_name = segmenter
            except Exception as exc:  # noqa: BLE001 - any failure to start means: use the fallback
                self.fallback_reason = f"{segmenter}: {type(exc).__name__}: {exc}"
                log.warning("metadata tokenizer for %s: segmenter %s unavailable (%s); using characters",
                            lang, segmenter, self.fallback_reason)

    @property
    def name(self) -> str:
        if self.segmenter_name:
            return self.segmenter_name
        return "characters" if self.no_space else "spaces"

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
        for seg in self._segment_re.split(text):
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
    if name in ("characters", "none", ""):
        raise ValueError("no segmenter configured")
    raise ValueError(f"unknown segmenter {name!r} (known: jieba, fugashi, pythainlp)")


_CACHE: dict[tuple, Tokenizer] = {}


def tokenizer_for(lang: str, segmenters: dict | None = None, lowercase: bool = False,
                  max_token_chars: int = 256) -> Tokenizer:
    """The (cached, per process) tokenizer of a metadata language."""
    from curation.languages import is_no_space_lang

    segmenters = segmenters or {}
    key = (lang, tuple(sorted(segmenters.items())), lowercase, max_token_chars)
    tok = _CACHE.get(key)
    if tok is None:
        tok = Tokenizer(lang, no_space=is_no_space_lang(lang), segmenter=segmenters.get(lang),
                        lowercase=lowercase, max_token_chars=max_token_chars)
        _CACHE[key] = tok
    return tok
