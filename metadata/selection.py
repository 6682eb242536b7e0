"""Which counted candidates of a language become entries: top unigrams, PMI bigrams, titles.

The paper's selection rules (DESIGN section 5), for one language, on plain Python values:

- unigrams: the most frequent `unigram_top_fraction` of distinct unigrams, at most
  `unigram_max`; equal counts in code point order;
- bigrams: PMI(x, y) = log2(c(xy) * N / (c(x) * c(y))), N the language's number of bigrams,
  c(x), c(y) unigram counts; kept when PMI > `bigram_min_pmi` and c(xy) >= `bigram_min_count`,
  best PMI first (then count, then entry), at most `bigram_max`; the two words are joined with
  '' in no-space languages and ' ' elsewhere;
- titles: the best `title_top_fraction` of titles, at most `title_max`, by summed pageviews
  where pageview files cover the language (restricted to the dump's articles when the language
  has a dump and `titles_require_article`), else the dump's articles by in-link count.

A "top fraction" keeps ceil(distinct * fraction) candidates (`keep_count`). The metadata job
(jobs/build_metadata.py) applies the same rules to every language at once as DataFrame window
ranks, because a large language's counts do not fit one Python worker; these functions are the
rules' statement on plain values, and the tests check that the job agrees with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from curation.languages import is_no_space_lang
from metadata.config import MetadataConfig


def keep_count(distinct: int, fraction: float, cap: int) -> int:
    """How many of `distinct` ranked candidates a "top fraction, at most cap" rule keeps.

    ceil(distinct * fraction), rounded to 6 decimals first so 30 * 0.1 keeps 3, not 4.
    """
    return min(math.ceil(round(distinct * fraction, 6)), cap)


def bigram_joiner(lang: str) -> str:
    """What joins a bigram's two words into one entry: '' in no-space languages, else ' '."""
    return "" if is_no_space_lang(lang) else " "


def pmi(cxy: int, n: int, cx: int, cy: int) -> float:
    """log2(c(xy) * N / (c(x) * c(y))) in doubles, as the job's Spark expression computes it."""
    return math.log(float(cxy) * float(n) / (float(cx) * float(cy))) / math.log(2)


def _ranked(scores: Mapping[str, float], keep: int) -> list[str]:
    """The `keep` best of `scores`: highest score first, equal scores in code point order."""
    return [e for e, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]]


def top_unigrams(counts: Mapping[str, int], config: MetadataConfig) -> list[str]:
    """The language's kept unigrams, best first."""
    return _ranked(counts, keep_count(len(counts), config.unigram_top_fraction, config.unigram_max))


def top_bigrams(bigrams: Mapping[tuple[str, str], int], unigrams: Mapping[str, int], config: MetadataConfig,
                joiner: str = " ") -> list[str]:
    """The language's kept bigram entries, best PMI first; pairs with an uncounted word are skipped."""
    n = sum(bigrams.values())
    scored = []
    for (x, y), cxy in bigrams.items():
        if x not in unigrams or y not in unigrams:
            continue
        score = pmi(cxy, n, unigrams[x], unigrams[y])
        if score > config.bigram_min_pmi and cxy >= config.bigram_min_count:
            scored.append((-score, -cxy, x + joiner + y))
    return [entry for _, _, entry in sorted(scored)[:config.bigram_max]]


def top_titles(articles: Iterable[str], inlinks: Mapping[str, int], pageviews: Mapping[str, int] | None,
               config: MetadataConfig) -> tuple[list[str], str]:
    """(kept titles best first, what ranked them: 'pageviews' or 'inlinks') of one language.

    `pageviews` holds the language's summed views by title; empty or None when no pageview file
    covers the language.
    """
    articles = set(articles)
    if pageviews:
        restrict = config.titles_require_article and bool(articles)
        scores = {t: v for t, v in pageviews.items() if not restrict or t in articles}
        rank_by = "pageviews"
    else:
        scores = {t: inlinks.get(t, 0) for t in articles}
        rank_by = "inlinks"
    return _ranked(scores, keep_count(len(scores), config.title_top_fraction, config.title_max)), rank_by
