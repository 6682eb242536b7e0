"""Unigram / bigram / link counts per language, and their aggregation and PMI on Spark.

The per-dump work (`dump_records`) is plain Python: read -> strip -> tokenize -> count, with
partial counts flushed as records when they grow past a bound, so memory per task stays
bounded on full dumps. Records are flat tuples `(kind, lang, a, b, n)`:

    u  unigram a                       n = count
    b  bigram (a, b)                   n = count
    a  article title a                 n = 1
    l  link target a (in-links)        n = count
    s  stat a of input file b          n = count (pages read, skipped by reason, errors)

`spark_*` functions turn them into DataFrames (Spark is imported inside them only).
PMI(x, y) = log2(c(xy) * N / (c(x) * c(y))), N = number of bigrams of the language,
c(x), c(y) unigram counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

from metadata.config import MetadataConfig
from metadata.dump_reader import DumpInfo, dump_language, iter_pages
from metadata.markup import MarkupStripper, normalize_title
from metadata.tokenize import tokenizer_for

Record = tuple[str, str, str, str, int]
MAX_TOKEN_CHARS = 256


def dump_records(path: str, config: MetadataConfig, align_to_lid: bool = True,
                 lang: str | None = None) -> Iterator[Record]:
    """All count records of one dump file (never raises on bad input; problems become stats)."""
    from metadata.alignment import lang_for_wiki

    name = os.path.basename(path)
    stats: Counter = Counter()
    try:
        wiki = dump_language(path)
    except ValueError:
        wiki = ""
    lang = lang or (lang_for_wiki(wiki, align_to_lid) if wiki else "other")
    tok = tokenizer_for(lang, config.segmenters, config.lowercase, config.max_entry_chars)
    info = DumpInfo()
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    links: Counter = Counter()
    flush_at = config.counter_flush_keys
    stripper = None
    pages = iter_pages(path, stats, info, max_page_bytes=4 * config.max_page_chars)
    try:
        for page in pages:
            if stripper is None:
                stripper = MarkupStripper(info.namespace_names(), config.max_nesting)
            if len(page.text) > config.max_page_chars:
                stats["page_too_large"] += 1
                stats["articles"] -= 1
                continue
            if config.max_pages_per_dump and stats["pages_counted"] >= config.max_pages_per_dump:
                stats["articles"] -= 1
                stats["skipped_page_limit"] += 1
                break
            yield ("a", lang, normalize_title(page.title), "", 1)
            try:
                plain = stripper.strip(page.text, links, stats)
                tok.count_into(plain, unigrams, bigrams)
            except Exception as exc:  # noqa: BLE001 - a bug-triggering page is counted, not fatal
                stats["page_error"] += 1
                stats[f"page_error:{type(exc).__name__}"] += 1
                continue
            stats["pages_counted"] += 1
            if len(unigrams) + len(bigrams) + len(links) > flush_at:
                yield from _flush(lang, unigrams, bigrams, links)
    except OSError as exc:  # the file itself cannot be opened
        stats["unreadable_input"] += 1
        stats[f"unreadable_input:{type(exc).__name__}"] += 1
    yield from _flush(lang, unigrams, bigrams, links)
    if tok.fallback_reason:
        stats["segmenter_fallback"] += 1
    stats[f"tokenizer:{tok.name}"] += 1
    for key, n in sorted(stats.items()):
        yield ("s", lang, key, name, int(n))
    if wiki:
        yield ("s", lang, f"wiki:{wiki}", name, 1)


def _flush(lang: str, unigrams: Counter, bigrams: Counter, links: Counter) -> Iterator[Record]:
    for w, n in unigrams.items():
        if len(w) <= MAX_TOKEN_CHARS:  # longer tokens can never become entries
            yield ("u", lang, w, "", n)
    for (a, b), n in bigrams.items():
        if len(a) + len(b) < MAX_TOKEN_CHARS:
            yield ("b", lang, a, b, n)
    for t, n in links.items():
        yield ("l", lang, t, "", n)
    unigrams.clear()
    bigrams.clear()
    links.clear()


# --- Spark side --------------------------------------------------------------------------------

RECORD_DDL = "kind string, lang string, a string, b string, n long"


def spark_records(spark, dump_paths: list[str], config: MetadataConfig, align_to_lid: bool = True):
    """DataFrame of the records of all dumps, one task per dump file (compressed dumps do not split)."""
    sc = spark.sparkContext
    paths = sorted(dump_paths)
    if not paths:
        return spark.createDataFrame([], RECORD_DDL)
    cfg = config

    def run(it):
        for p in it:
            yield from dump_records(p, cfg, align_to_lid)

    rdd = sc.parallelize(paths, len(paths)).mapPartitions(run)
    return spark.createDataFrame(rdd, RECORD_DDL, verifySchema=False)


def aggregate(records_df):
    """Sum n per (kind, lang, a, b): merges partial flushes and dumps of merged variants."""
    from pyspark.sql import functions as F

    return records_df.groupBy("kind", "lang", "a", "b").agg(F.sum("n").alias("n"))


def keep_count(distinct: int, fraction: float, cap: int) -> int:
    """How many of `distinct` ranked candidates a "top fraction, at most cap" rule keeps.

    ceil(distinct * fraction), rounded to 6 decimals first so 30 * 0.1 keeps 3, not 4.
    """
    import math

    return min(math.ceil(round(distinct * fraction, 6)), cap)


def _ceil_fraction(col, fraction: float):
    from pyspark.sql import functions as F

    return F.ceil(F.round(col.cast("double") * F.lit(float(fraction)), 6))


def top_unigrams(agg, config: MetadataConfig):
    """Per language: the most frequent `unigram_top_fraction` of distinct unigrams, <= unigram_max."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    u = agg.where(F.col("kind") == "u").select("lang", F.col("a").alias("entry"), F.col("n").alias("count"))
    w_rank = Window.partitionBy("lang").orderBy(F.col("count").desc(), F.col("entry").asc())
    w_all = Window.partitionBy("lang")
    ranked = u.withColumn("rank", F.row_number().over(w_rank)).withColumn("distinct", F.count("*").over(w_all))
    limit = F.least(_ceil_fraction(F.col("distinct"), config.unigram_top_fraction), F.lit(config.unigram_max))
    return ranked.where(F.col("rank") <= limit).select("lang", "entry", F.col("count").cast("double").alias("score"))


def bigram_pmi(agg, joiners: dict[str, str]):
    """Bigrams with counts and PMI; `joiners[lang]` is '' for no-space languages (default ' ')."""
    from pyspark.sql import functions as F

    b = agg.where(F.col("kind") == "b").select("lang", F.col("a").alias("x"), F.col("b").alias("y"), F.col("n").alias("cxy"))
    u = agg.where(F.col("kind") == "u").select("lang", F.col("a").alias("w"), F.col("n").alias("cw"))
    totals = b.groupBy("lang").agg(F.sum("cxy").alias("N"))
    ux = u.select("lang", F.col("w").alias("x"), F.col("cw").alias("cx"))
    uy = u.select("lang", F.col("w").alias("y"), F.col("cw").alias("cy"))
    j = b.join(totals, "lang").join(ux, ["lang", "x"]).join(uy, ["lang", "y"])
    pmi = F.log2(F.col("cxy").cast("double") * F.col("N").cast("double") / (F.col("cx").cast("double") * F.col("cy").cast("double")))
    no_space = [lang for lang, jn in sorted(joiners.items()) if jn == ""]
    joined = F.when(F.col("lang").isin(no_space), F.concat("x", "y")) if no_space else None
    entry = joined.otherwise(F.concat_ws(" ", "x", "y")) if joined is not None else F.concat_ws(" ", "x", "y")
    return j.select("lang", entry.alias("entry"), F.col("cxy").alias("count"), pmi.alias("pmi"))


def top_bigrams(agg, config: MetadataConfig, joiners: dict[str, str]):
    """Per language: bigrams with PMI > bigram_min_pmi (and count >= bigram_min_count), best PMI first."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    scored = bigram_pmi(agg, joiners).where(
        (F.col("pmi") > F.lit(config.bigram_min_pmi)) & (F.col("count") >= F.lit(config.bigram_min_count))
    )
    w = Window.partitionBy("lang").orderBy(F.col("pmi").desc(), F.col("count").desc(), F.col("entry").asc())
    return (
        scored.withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= F.lit(config.bigram_max))
        .select("lang", "entry", F.col("pmi").alias("score"))
    )


def top_titles(agg, pageviews_df, config: MetadataConfig):
    """Per language: the most viewed `title_top_fraction` of titles, <= title_max.

    Languages with pageviews rank by summed views (restricted to the dump's articles when the
    language has a dump and `titles_require_article`); languages without rank their dump's
    article titles by in-link count. Returns (DataFrame lang, entry, score, rank_by).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    articles = agg.where(F.col("kind") == "a").select("lang", F.col("a").alias("entry")).distinct()
    inlinks = agg.where(F.col("kind") == "l").select("lang", F.col("a").alias("entry"), F.col("n").alias("links"))
    by_links = (
        articles.join(inlinks, ["lang", "entry"], "left")
        .select("lang", "entry", F.coalesce(F.col("links"), F.lit(0)).cast("double").alias("score"), F.lit("inlinks").alias("rank_by"))
    )
    if pageviews_df is not None:
        pv = pageviews_df.groupBy("lang", F.col("title").alias("entry")).agg(F.sum("views").cast("double").alias("score"))
        pv_langs = pv.select("lang").distinct()
        dump_langs = articles.select("lang").distinct()
        if config.titles_require_article:
            with_dump = pv.join(articles, ["lang", "entry"], "inner")
            without_dump = pv.join(dump_langs, "lang", "left_anti")
            pv = with_dump.unionByName(without_dump)
        by_views = pv.withColumn("rank_by", F.lit("pageviews"))
        by_links = by_links.join(pv_langs, "lang", "left_anti")
        candidates = by_views.unionByName(by_links)
    else:
        candidates = by_links
    w_rank = Window.partitionBy("lang").orderBy(F.col("score").desc(), F.col("entry").asc())
    w_all = Window.partitionBy("lang")
    ranked = candidates.withColumn("rank", F.row_number().over(w_rank)).withColumn("distinct", F.count("*").over(w_all))
    limit = F.least(_ceil_fraction(F.col("distinct"), config.title_top_fraction), F.lit(config.title_max))
    return ranked.where(F.col("rank") <= limit).select("lang", "entry", "score", "rank_by")
