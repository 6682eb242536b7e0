"""Build configuration of the metadata job; the defaults reproduce the paper (MetaCLIP 2, section 3).

A config is a frozen dataclass. It loads from a JSON file (`from_json`) and is then overridden by
CLI flags (curation.config_cli derives one per field, with the help texts below), so a cluster run
is described by one reviewed file plus a few flags. Unknown keys are an error: a typo in a config
must not silently fall back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from curation import config_cli
from curation.config_cli import option
from curation.text import ENTRY_PADDINGS

# Order of sources: entry ids are assigned source by source in this order, so it is also the
# "first source wins" order for duplicates and the order in which caps count "new" entries. It is
# the reference's (MetaCLIP 2 build_metadata.py fills its dict with the numbers first, then
# WordNet, unigrams, bigrams, titles), so a frequent unigram "1" is a number there and here and
# takes no unigram slot. An imported list (a MetaCLIP metadata.json) comes before everything.
SOURCES = ("imported", "number", "wordnet", "wiki_unigram", "wiki_bigram", "wiki_title")
WORD_SPLITS = ("reference", "unicode")
PMI_TOTALS = ("unigrams", "bigrams")


@dataclass(frozen=True)
class MetadataConfig:
    # --- caps (paper; MetaCLIP 2 metadata/build_metadata.py) ---
    # A cap is applied per Wikipedia code (zh, zh_yue, ... each on its own, every code feeding
    # `other` on its own) and counts only entries new after the earlier sources of that code;
    # the codes of a language are unioned after (metadata/merge.py). "Top fraction" rounds down.
    unigram_top_fraction: float = option(0.10, help="keep the most frequent fraction of distinct unigrams (paper: 10%), "
                                                    "rounded down, counting only new entries")
    unigram_max: int = option(251_465, help="at most this many new unigrams per Wikipedia code")
    bigram_min_pmi: float = option(30.0, help="keep bigrams with PMI strictly greater than this")
    bigram_min_count: int = option(1, help="extra guard for small corpora; 1 = paper (no count filter)")
    bigram_max: int = option(100_646, help="at most this many new bigrams per Wikipedia code (and at most its "
                                           "number of distinct bigrams)")
    title_top_fraction: float = option(0.76, help="keep the most viewed fraction of titles (paper: 76%), rounded "
                                                  "down, counting only new entries")
    title_max: int = option(61_235, help="at most this many new titles per Wikipedia code")
    numbers_upto: int = option(99, help='"0".."N" are added to every language')
    max_entry_chars: int = option(256, help="longer entries are dropped")
    # PMI(x, y) = log2(c(xy) * N / (c(x) * c(y))). MetaCLIP 1 scores bigrams with NLTK's
    # BigramCollocationFinder, whose N is the total unigram count (word_fd.N()); MetaCLIP 2 does
    # not publish its PMI code and keeps MetaCLIP 1's threshold of 30, so the same N is the default.
    pmi_total: str = option("unigrams", help="N of the PMI: 'unigrams' (total unigram count, NLTK's and MetaCLIP "
                                             "1's) or 'bigrams' (total bigram count)")
    # --- English: MetaCLIP 1's rules (MetaCLIP 2 reuses MetaCLIP 1's English metadata) ---
    # Languages built from sources with MetaCLIP 1's thresholds (metaclip/build_metadata.py)
    # instead of MetaCLIP 2's caps. Import MetaCLIP 1's metadata.json instead to reuse it as is
    # (jobs/build_metadata.py --import-metadata en=metadata.json).
    metaclip1_languages: tuple[str, ...] = option(("en",), help="languages built with MetaCLIP 1's rules (no caps)")
    metaclip1_unigram_min_count: int = option(100, help="MetaCLIP 1: unigrams seen at least this often")
    metaclip1_bigram_min_pmi: float = option(30.0, help="MetaCLIP 1: bigrams with PMI at least this (>=)")
    metaclip1_title_min_views: int = option(70, help="MetaCLIP 1: titles with at least this many summed views")
    # MetaCLIP 1 sums a title's views only over pageview lines (one title, one hour) of at least
    # 50 views (its `int(count / 50) > 0`), and reads desktop lines only (`en `, not `en.m`).
    metaclip1_title_min_hourly_views: int = option(50, help="MetaCLIP 1: a pageview line counts only with at least "
                                                            "this many views in its hour")
    metaclip1_title_desktop_only: bool = option(True, help="MetaCLIP 1: count desktop pageviews only")
    # --- imports ---
    imported_replaces_build: bool = option(True, help="a language with an imported metadata.json takes only that "
                                                      "list (and the numbers), as MetaCLIP 2 does for English; "
                                                      "false: the list is one more source before the others")
    # --- wordnet ---
    # NLTK's ss.name() keeps only what comes before the first '.' of the name ("st. john's wort"
    # -> "st", ".22 caliber" -> ""), which MetaCLIP uses as is; the project keeps the whole name.
    wordnet_cut_name_at_dot: bool = option(False, help="cut WordNet synset names at their first '.', as "
                                                       "MetaCLIP's name[:name.find('.')] does")
    # --- titles ---
    # Without pageview files titles are ranked by the number of internal links pointing at them
    # in the same dump (a popularity proxy); the manifest says which rank each language used.
    titles_require_article: bool = option(True, help="pageview titles must be ns-0 articles of the dump, if read")
    # --- tokenizing ---
    lowercase: bool = option(False, help="lowercase entries (the paper matches case-sensitively, keeping "
                                         "Wikipedia's casing)")
    # Where space-separated text is cut into words (metadata/tokenize.py): 'reference' is MetaCLIP
    # 2's simple_tokenizer (whitespace, every ASCII punctuation mark including - and ', 26 CJK
    # marks, and each CJK/Thai/Lao/Myanmar/Khmer/Tibetan character on its own); 'unicode' cuts at
    # all Unicode punctuation and symbols but keeps inner hyphens and apostrophes ("well-known").
    word_split: str = option("reference", help="space-language word rule: 'reference' (MetaCLIP 2) or 'unicode'")
    # The reference tokenizes a whole extracted file as one stream, so its bigrams run across line
    # breaks (a heading and the next paragraph, one article's end and the next title); the project
    # ends bigrams at line breaks.
    bigrams_across_lines: bool = option(False, help="let bigrams cross line breaks, as the reference's stream does")
    # metadata/tokenize.py documents each segmenter; bo/dz get tsheg syllables because botok would
    # download its dictionary at run time
    segmenters: dict = option(default_factory=lambda: {
        "zh": "jieba", "ja": "fugashi", "th": "pythainlp", "km": "khmercut", "lo": "laonlp", "my": "pyidaungsu",
        "bo": "tibetan-syllables", "dz": "tibetan-syllables"},
        help="word segmenter per no-space language, LANG=NAME,... or a JSON object")
    # How entries become the automaton's search keys (curation.text.pad_entry): 'project' spaces an
    # entry's interior like a text ("U.S." finds "U.S.") and leaves no space at kana, fullwidth or
    # Unicode-punctuation ends; 'reference' is MetaCLIP 2's get_spaced_metadata, entry as is, ends
    # padded unless Han/Thai/Lao/Burmese/Khmer/Tibetan or ASCII/26-mark punctuation.
    entry_padding: str = option("project", help="entry search keys: 'project' or 'reference' (MetaCLIP 2's "
                                                "get_spaced_metadata)")
    # --- markup ---
    max_nesting: int = option(64, help="deeper template/link nesting is dropped wholesale (counted)")
    max_page_chars: int = option(4_000_000, help="larger page texts are skipped (counted), not parsed")
    max_pages_per_dump: int = option(0, help="0 = all; >0 reads only the first N articles of each dump "
                                             "(samples, tests)")
    # --- per-task memory ---
    counter_flush_keys: int = option(2_000_000, help="per-task partial counts are flushed past this many keys")
    sources: tuple[str, ...] = option(SOURCES, help="entry sources in id order (first source wins on duplicates)")

    def __post_init__(self):
        self.validate()

    def to_dict(self) -> dict:
        return config_cli.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MetadataConfig":
        """Unknown keys and values of the wrong type are errors: a typo must not fall back to a default."""
        return config_cli.from_dict(cls, data)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "MetadataConfig":
        """The fields as a JSON object, or under its "metadata" key; "_comment" style keys are ignored."""
        return config_cli.load_json(cls, path, section="metadata")

    def with_overrides(self, **overrides) -> "MetadataConfig":
        """A copy with the non-None overrides applied (CLI flags default to None)."""
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return type(self).from_dict(d)

    def validate(self) -> None:
        for name in ("unigram_top_fraction", "title_top_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        for name in ("unigram_max", "bigram_max", "title_max", "max_entry_chars", "max_nesting"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.word_split not in WORD_SPLITS:
            raise ValueError(f"word_split must be one of {list(WORD_SPLITS)}, got {self.word_split!r}")
        if self.entry_padding not in ENTRY_PADDINGS:
            raise ValueError(f"entry_padding must be one of {list(ENTRY_PADDINGS)}, got {self.entry_padding!r}")
        if self.pmi_total not in PMI_TOTALS:
            raise ValueError(f"pmi_total must be one of {list(PMI_TOTALS)}, got {self.pmi_total!r}")
        if isinstance(self.metaclip1_languages, list):
            object.__setattr__(self, "metaclip1_languages", tuple(self.metaclip1_languages))
        if self.bigram_min_count < 1:
            raise ValueError("bigram_min_count must be >= 1")
        if isinstance(self.sources, list):
            object.__setattr__(self, "sources", tuple(self.sources))
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown sources {bad}; known: {list(SOURCES)}")
