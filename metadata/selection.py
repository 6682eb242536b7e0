"""Which counted candidates of a unit (one Wikipedia code) are offered to the merge, ranked, with their caps.

The reference's rules (MetaCLIP 2 metadata/build_metadata.py; for English MetaCLIP 1's
metaclip/build_metadata.py), for one unit, on plain Python values:

- MetaCLIP 2 (every language not in `metaclip1_languages`):
  - unigrams: all, most frequent first; cap = floor(distinct * `unigram_top_fraction`), at most
    `unigram_max`, where distinct counts every unigram of the unit;
  - bigrams: PMI > `bigram_min_pmi` and c(xy) >= `bigram_min_count`, best PMI first (then
    count, then entry); cap = min(`bigram_max`, distinct bigrams of the unit); the two words are
    joined with '' in no-space languages and ' ' elsewhere, and a joined entry that two pairs
    give ("北京"+"大学", "北"+"京大学") is offered once, at its best PMI;
  - titles: by summed pageviews where pageview files cover the unit (restricted to the dump's
    articles when the unit has a dump and `titles_require_article`), else the dump's articles
    by in-link count; cap = floor(candidates * `title_top_fraction`), at most `title_max`.
- MetaCLIP 1 (`metaclip1_languages`, English): no caps; unigrams seen at least
  `metaclip1_unigram_min_count` times, bigrams with PMI >= `metaclip1_bigram_min_pmi`, titles
  with at least `metaclip1_title_min_views` views as MetaCLIP 1 sums them (pageviews.py 'q'
  records); without pageview files the titles fall back to MetaCLIP 2's in-link rule and cap.

PMI(x, y) = log2(c(xy) * N / (c(x) * c(y))) with c(x), c(y) unigram counts and N the unit's
total unigram count (NLTK's BigramCollocationFinder, what MetaCLIP 1 scores with) or, with
`pmi_total='bigrams'`, its total bigram count. Equal scores rank in code point order.

A cap counts only entries new after the earlier sources (metadata/merge.py applies it), so a
capped source must offer more than `cap` candidates: `candidate_limits` bounds how many of its
best are enough. The metadata job (jobs/build_metadata.py) applies the same rules to every
unit at once as DataFrame window ranks, because a large language's counts do not fit one Python
worker; these functions are the rules' statement on plain values, and the tests check that the
job agrees with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from curation.languages import is_no_space_lang
from metadata.config import MetadataConfig
from metadata.merge import Ranked

WIKI_SOURCES = ("wiki_unigram", "wiki_bigram", "wiki_title")


def keep_count(distinct: int, fraction: float, cap: int) -> int:
    """How many of `distinct` ranked candidates a "top fraction, at most cap" rule keeps.

    floor(distinct * fraction), as the reference's int(); rounded to 6 decimals first so a product
    that is an integer in decimal (100 * 0.29 = 28.999999999999996) keeps that integer.
    """
    return min(math.floor(round(distinct * fraction, 6)), cap)


def uses_metaclip1(lang: str, config: MetadataConfig) -> bool:
    """True when the language is built with MetaCLIP 1's rules (English by default)."""
    return lang in config.metaclip1_languages


def bigram_joiner(lang: str) -> str:
    """What joins a bigram's two words into one entry: '' in no-space languages, else ' '."""
    return "" if is_no_space_lang(lang) else " "


def pmi(cxy: int, n: int, cx: int, cy: int) -> float:
    """log2(c(xy) * N / (c(x) * c(y))) in doubles, as the job's Spark expression computes it."""
    return math.log(float(cxy) * float(n) / (float(cx) * float(cy))) / math.log(2)


def pmi_total(unigrams: Mapping[str, int], bigrams: Mapping[tuple[str, str], int], config: MetadataConfig) -> int:
    """N of the PMI: the unit's total unigram count (default) or total bigram count."""
    return sum(unigrams.values()) if config.pmi_total == "unigrams" else sum(bigrams.values())


def passes_bigram_rule(score: float, cxy: int, metaclip1: bool, config: MetadataConfig) -> bool:
    if metaclip1:
        return score >= config.metaclip1_bigram_min_pmi
    return score > config.bigram_min_pmi and cxy >= config.bigram_min_count


def _ranked(scores: Mapping[str, float]) -> list[str]:
    """Keys of `scores`, highest score first, equal scores in code point order."""
    return [e for e, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def ranked_unigrams(counts: Mapping[str, int], metaclip1: bool, config: MetadataConfig) -> list[str]:
    """The unit's unigram candidates, best first."""
    if metaclip1:
        counts = {w: n for w, n in counts.items() if n >= config.metaclip1_unigram_min_count}
    return _ranked(counts)


def ranked_bigrams(bigrams: Mapping[tuple[str, str], int], unigrams: Mapping[str, int], metaclip1: bool,
                   config: MetadataConfig, joiner: str = " ") -> list[str]:
    """The unit's bigram candidates (joined entries), best PMI first; pairs with an uncounted word are skipped."""
    n = pmi_total(unigrams, bigrams, config)
    best: dict[str, tuple[float, int]] = {}
    for (x, y), cxy in bigrams.items():
        if x not in unigrams or y not in unigrams:
            continue
        score = pmi(cxy, n, unigrams[x], unigrams[y])
        if passes_bigram_rule(score, cxy, metaclip1, config):
            entry = x + joiner + y
            if entry not in best or (-score, -cxy) < (-best[entry][0], -best[entry][1]):
                best[entry] = (score, cxy)
    return [e for _, _, e in sorted((-s, -c, e) for e, (s, c) in best.items())]


def ranked_titles(articles: Iterable[str], inlinks: Mapping[str, int], pageviews: Mapping[str, int] | None,
                  metaclip1: bool, config: MetadataConfig, metaclip1_views: Mapping[str, int] | None = None
                  ) -> tuple[list[str], str]:
    """(the unit's title candidates best first, what ranked them: 'pageviews' or 'inlinks').

    `pageviews` holds the unit's summed views by title (empty or None when no pageview file
    covers it); `metaclip1_views` the views as MetaCLIP 1 sums them (pageviews.py 'q' records).
    """
    articles = set(articles)
    if pageviews:
        restrict = config.titles_require_article and bool(articles)
        views = (metaclip1_views or {}) if metaclip1 else pageviews
        scores = {t: v for t, v in views.items() if not restrict or t in articles}
        if metaclip1:
            scores = {t: v for t, v in scores.items() if v >= config.metaclip1_title_min_views}
        return _ranked(scores), "pageviews"
    return _ranked({t: inlinks.get(t, 0) for t in articles}), "inlinks"


def unit_caps(metaclip1: bool, distinct: Mapping[str, int], rank_by: str, config: MetadataConfig
              ) -> dict[str, int | None]:
    """Cap per wiki source of a unit (None: no cap). `distinct`: distinct unigrams, distinct bigram
    pairs and title candidates of the unit, by source name."""
    title_cap = keep_count(distinct.get("wiki_title", 0), config.title_top_fraction, config.title_max)
    if metaclip1:
        return {"wiki_unigram": None, "wiki_bigram": None, "wiki_title": None if rank_by == "pageviews" else title_cap}
    return {
        "wiki_unigram": keep_count(distinct.get("wiki_unigram", 0), config.unigram_top_fraction, config.unigram_max),
        "wiki_bigram": min(config.bigram_max, distinct.get("wiki_bigram", 0)),
        "wiki_title": title_cap,
    }


def candidate_limits(caps: Mapping[str, int | None], before: Mapping[str, int], passing: Mapping[str, int],
                     config: MetadataConfig) -> dict[str, int | None]:
    """How many of its best candidates each wiki source of a unit must offer (None: all that pass).

    A capped source takes its first `cap` new entries; at most as many candidates as earlier
    sources took can be duplicates of them, and those took at most: `before` (imported, numbers,
    WordNet lemmas: all of them), `cap` of a capped source, every passing candidate of an
    uncapped one. So cap + that sum is always enough; only cleaning (an NFC duplicate, a
    punctuation-only title) can drop more, which the merge reports as `cap_unfilled_truncated`.
    """
    prior = 0
    limits: dict[str, int | None] = {}
    for source in config.sources:
        if source not in WIKI_SOURCES:
            prior += before.get(source, 0)
            continue
        cap = caps.get(source)
        if cap is None:
            limits[source] = None
            prior += passing.get(source, 0)
        else:
            limits[source] = cap + prior
            prior += cap
    return limits


@dataclass
class UnitCounts:
    """Everything the build counted for one unit: the plain-value form of the job's records."""

    unigrams: dict[str, int] = field(default_factory=dict)
    bigrams: dict[tuple[str, str], int] = field(default_factory=dict)
    articles: list[str] = field(default_factory=list)
    inlinks: dict[str, int] = field(default_factory=dict)
    pageviews: dict[str, int] = field(default_factory=dict)
    metaclip1_views: dict[str, int] = field(default_factory=dict)
    wordnet: list[str] = field(default_factory=list)


def unit_candidates(lang: str, counts: UnitCounts, config: MetadataConfig, joiner: str = " "
                    ) -> tuple[dict[str, Ranked], str]:
    """({source: ranked candidates with their cap}, what ranked the titles) of one unit feeding `lang`."""
    mc1 = uses_metaclip1(lang, config)
    titles, rank_by = ranked_titles(counts.articles, counts.inlinks, counts.pageviews, mc1, config,
                                    counts.metaclip1_views)
    ranked = {
        "wiki_unigram": ranked_unigrams(counts.unigrams, mc1, config),
        "wiki_bigram": ranked_bigrams(counts.bigrams, counts.unigrams, mc1, config, joiner),
        "wiki_title": titles,
    }
    distinct = {"wiki_unigram": len(counts.unigrams), "wiki_bigram": len(counts.bigrams), "wiki_title": len(titles)}
    caps = unit_caps(mc1, distinct, rank_by, config)
    out: dict[str, Ranked] = {"wordnet": Ranked(list(counts.wordnet))} if counts.wordnet else {}
    for source in WIKI_SOURCES:
        if ranked[source]:
            out[source] = Ranked(ranked[source], caps[source], len(ranked[source]))
    return out, rank_by


@dataclass(frozen=True)
class UnitPlan:
    """What the job needs to know of one unit before it ranks: rules, caps, how many of each
    source's best to send, how many each source offers (the report's "before caps")."""

    lang: str
    rules: str  # 'metaclip1' or 'metaclip2'
    rank_by: str
    caps: dict[str, int | None]
    limits: dict[str, int | None]
    available: dict[str, int]


def plan_unit(lang: str, stats: Mapping[str, int], rank_by: str, config: MetadataConfig, imported: int = 0
              ) -> UnitPlan:
    """The plan of one unit from its counts: `stats` holds 'unigrams' / 'bigrams' (distinct),
    'unigrams_passing' / 'bigrams_passing' (candidates that pass the unit's rule), 'titles'
    (title candidates) and 'wordnet' (lemma rows); `imported`: entries imported into the unit."""
    mc1 = uses_metaclip1(lang, config)
    distinct = {"wiki_unigram": stats.get("unigrams", 0), "wiki_bigram": stats.get("bigrams", 0),
                "wiki_title": stats.get("titles", 0)}
    available = {"wiki_unigram": stats.get("unigrams_passing", 0), "wiki_bigram": stats.get("bigrams_passing", 0),
                 "wiki_title": stats.get("titles", 0)}
    caps = unit_caps(mc1, distinct, rank_by, config)
    before = {"imported": imported, "number": config.numbers_upto + 1, "wordnet": stats.get("wordnet", 0)}
    return UnitPlan(lang, "metaclip1" if mc1 else "metaclip2", rank_by, caps,
                    candidate_limits(caps, before, available, config), available)
