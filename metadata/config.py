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

# Order of sources: entry ids are assigned source by source in this order, so it is also the
# "first source wins" order for duplicates.
SOURCES = ("wordnet", "wiki_unigram", "wiki_bigram", "wiki_title", "number")


@dataclass(frozen=True)
class MetadataConfig:
    # --- caps (paper) ---
    unigram_top_fraction: float = option(0.10, help="keep the most frequent fraction of distinct unigrams (paper: 10%)")
    unigram_max: int = option(251_465, help="at most this many unigrams per language")
    bigram_min_pmi: float = option(30.0, help="keep bigrams with PMI strictly greater than this")
    bigram_min_count: int = option(1, help="extra guard for small corpora; 1 = paper (no count filter)")
    bigram_max: int = option(100_646, help="at most this many bigrams per language")
    title_top_fraction: float = option(0.76, help="keep the most viewed fraction of titles (paper: 76%)")
    title_max: int = option(61_235, help="at most this many titles per language")
    numbers_upto: int = option(99, help='"0".."N" are added to every language')
    max_entry_chars: int = option(256, help="longer entries are dropped")
    # --- titles ---
    # Without pageview files titles are ranked by the number of internal links pointing at them
    # in the same dump (a popularity proxy); the manifest says which rank each language used.
    titles_require_article: bool = option(True, help="pageview titles must be ns-0 articles of the dump, if read")
    # --- tokenizing ---
    lowercase: bool = option(False, help="lowercase entries (the paper matches case-sensitively, keeping "
                                         "Wikipedia's casing)")
    segmenters: dict = option(default_factory=lambda: {"zh": "jieba", "ja": "fugashi", "th": "pythainlp"},
                              help="word segmenter per no-space language, LANG=NAME,... or a JSON object")
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
        if self.bigram_min_count < 1:
            raise ValueError("bigram_min_count must be >= 1")
        if isinstance(self.sources, list):
            object.__setattr__(self, "sources", tuple(self.sources))
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown sources {bad}; known: {list(SOURCES)}")
