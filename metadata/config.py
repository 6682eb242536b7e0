"""Build configuration of the metadata job; the defaults reproduce the paper (MetaCLIP 2, section 3).

A config is a frozen dataclass. It loads from a JSON file (`from_json`) and is then overridden by
CLI flags (`with_overrides`), so a cluster run is described by one reviewed file plus a few flags.
Unknown keys are an error: a typo in a config must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

# Order of sources: entry ids are assigned source by source in this order, so it is also the
# "first source wins" order for duplicates.
SOURCES = ("wordnet", "wiki_unigram", "wiki_bigram", "wiki_title", "number")


@dataclass(frozen=True)
class MetadataConfig:
    # --- caps (paper) ---
    unigram_top_fraction: float = 0.10  # keep the most frequent 10% of distinct unigrams
    unigram_max: int = 251_465
    bigram_min_pmi: float = 30.0  # keep bigrams with PMI strictly greater than this
    bigram_min_count: int = 1  # extra guard for small corpora; 1 = paper (no count filter)
    bigram_max: int = 100_646
    title_top_fraction: float = 0.76  # keep the most viewed 76% of titles
    title_max: int = 61_235
    numbers_upto: int = 99  # "0".."99" are added to every language
    max_entry_chars: int = 256
    # --- titles ---
    # Without pageview files titles are ranked by the number of internal links pointing at them
    # in the same dump (a popularity proxy); the manifest says which rank each language used.
    titles_require_article: bool = True  # pageview titles must be ns-0 articles of the dump, if read
    # --- tokenizing ---
    lowercase: bool = False  # the paper matches case-sensitively; entries keep Wikipedia's casing
    segmenters: dict = field(default_factory=lambda: {"zh": "jieba", "ja": "fugashi", "th": "pythainlp"})
    # --- markup ---
    max_nesting: int = 64  # deeper template/link nesting is dropped wholesale (counted)
    max_page_chars: int = 4_000_000  # larger page texts are skipped (counted), not parsed
    max_pages_per_dump: int = 0  # 0 = all; >0 reads only the first N articles of each dump (samples, tests)
    # --- Spark ---
    counter_flush_keys: int = 2_000_000  # per-task partial counts are flushed past this many keys
    sources: tuple = SOURCES

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sources"] = list(self.sources)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "MetadataConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown metadata config keys: {unknown}")
        data = dict(data)
        if "sources" in data:
            data["sources"] = tuple(data["sources"])
            bad = [s for s in data["sources"] if s not in SOURCES]
            if bad:
                raise ValueError(f"unknown sources {bad}; known: {list(SOURCES)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "MetadataConfig":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a metadata config is a JSON object")
        data = data.get("metadata", data)
        return cls.from_dict({k: v for k, v in data.items() if not k.startswith("_")})  # "_comment" keys

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
