"""Build the per-language metadata directory from Wikipedia dumps, pageviews and WordNet/OMW.

    python jobs/build_metadata.py --output build/metadata
    spark-submit jobs/build_metadata.py --output s3://bucket/metadata/v3 \
        --wikipedia 's3a-synced/dumps/*wiki-*-pages-articles*.xml.bz2' --pageviews '/data/pageviews/*.gz'

Without --wikipedia/--wordnet the real samples beside the repo are used
(../shared/data/wikipedia and ../shared/data/wordnet). Config: paper defaults, a JSON file
(--config, e.g. infra/metadata.json) and flags, applied in that order. Prints a short summary
and writes the JSON report (`--report`, default <output>/_REPORT.json).

The job is the build's Spark half: one task per input file runs a library reader as its body
(metadata.counting.dump_records, metadata.pageviews.pageview_records,
metadata.wordnet.wordnet_records), Spark sums their records per (kind, lang, a, b), ranks every
language's candidates at once with window functions (metadata.selection states the same rules
on plain values; a large language's counts would not fit one Python worker) and streams them to
the driver one language at a time, where metadata.build.publish merges and writes each.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402

from pyspark.sql import Window  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from curation import config_cli, runs  # noqa: E402
from curation.languages import is_no_space_lang  # noqa: E402
from jobs.common import build_spark, user_error  # noqa: E402
from metadata.build import (  # noqa: E402
    BuildInputs,
    build_config,
    check_output,
    collect_stats,
    discover_inputs,
    publish,
    select_dumps,
    summary,
    write_report,
)
from metadata.config import MetadataConfig  # noqa: E402
from metadata.counting import dump_records  # noqa: E402
from metadata.pageviews import pageview_records  # noqa: E402
from metadata.wordnet import wordnet_records  # noqa: E402

log = logging.getLogger(__name__)

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(ROOT, "build", "metadata"), help="metadata directory (local or s3://)")
    p.add_argument("--wikipedia", nargs="*", default=None, help="dump files, dirs or globs (default ../shared/data/wikipedia)")
    p.add_argument("--wordnet", nargs="*", default=None, help="WordNet/OMW files or dirs (default ../shared/data/wordnet)")
    p.add_argument("--pageviews", nargs="*", default=[], help="pageview files, dirs or globs (optional)")
    p.add_argument("--languages", nargs="*", help="only these metadata languages (e.g. en ja other)")
    p.add_argument("--no-align-lid", action="store_true", help="keep every Wikipedia language instead of merging non-LID ones into 'other'")
    p.add_argument("--version", help="metadata version string (default: derived from the content)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", default=None, help="Spark master when not set by spark-submit (default local[*])")
    p.add_argument("--shuffle-partitions", type=int, default=None)
    # --config FILE, --set KEY=VALUE and one flag per MetadataConfig field (--bigram-min-pmi, --lowercase, ...)
    config_cli.add_config_arguments(p, MetadataConfig, section="metadata")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def make_config(args) -> MetadataConfig:
    """Paper defaults, then --config, then --set, then the flags (ValueError on a bad value)."""
    return config_cli.config_from_args(MetadataConfig, args, section="metadata")


def spark_session(master: str | None, shuffle_partitions: int | None):
    """Local runs: no UI, 4g driver, 16 shuffle partitions; under spark-submit its settings stand."""
    conf = {"spark.sql.shuffle.partitions": shuffle_partitions} if shuffle_partitions else {}
    local = {"spark.ui.enabled": "false", "spark.driver.memory": "4g", "spark.sql.shuffle.partitions": 16}
    return build_spark("worldclip-build-metadata", master, conf=conf, local_conf=local)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = make_config(args)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    wikipedia = args.wikipedia if args.wikipedia is not None else [os.path.join(SHARED, "wikipedia")]
    wordnet = args.wordnet if args.wordnet is not None else [os.path.join(SHARED, "wordnet")]
    inputs = discover_inputs(wikipedia, wordnet, args.pageviews)
    if not (inputs.wikipedia or inputs.wordnet or inputs.pageviews):
        return user_error("build_metadata", FileNotFoundError(f"no inputs found in {wikipedia} / {wordnet} / {args.pageviews}"))
    try:
        check_output(args.output, inputs)
    except (ValueError, OSError) as e:
        return user_error("build_metadata", e)
    spark = spark_session(args.master, args.shuffle_partitions)
    try:
        report = build(spark, inputs, args.output, config, languages=args.languages,
                       align_to_lid=not args.no_align_lid, version=args.version, progress=not args.quiet)
    finally:
        spark.stop()
    print(summary(report))
    if args.report:
        runs.write_json(args.report, report)
    return 0


# --- the Spark stages ----------------------------------------------------------------------------

RECORD_DDL = "kind string, lang string, a string, b string, n long"


def build(spark, inputs: BuildInputs, output: str, config: MetadataConfig | None = None,
          languages: list[str] | None = None, align_to_lid: bool = True, version: str | None = None,
          progress: bool = True) -> dict:
    """Build the metadata directory at `output` (local path or s3://); returns the run report."""
    config = config or MetadataConfig()
    check_output(output, inputs)
    t0 = time.time()
    timings: dict[str, float] = {}
    dumps, excluded_dumps = select_dumps(inputs.wikipedia, languages, align_to_lid)
    langs = sorted(languages) if languages else None
    records = (
        file_records(spark, list(dumps), functools.partial(dump_records, config=config, align_to_lid=align_to_lid))
        .unionByName(file_records(spark, inputs.pageviews,
                                  functools.partial(pageview_records, align_to_lid=align_to_lid, languages=langs)))
        .unionByName(file_records(spark, inputs.wordnet,
                                  functools.partial(wordnet_records, align_to_lid=align_to_lid, languages=langs), max_tasks=64))
    )
    agg = aggregate(records).persist()
    try:
        n_agg = agg.count()
        timings["count_s"] = round(time.time() - t0, 3)
        log.info("aggregated %d distinct records in %.1fs", n_agg, timings["count_s"])
        t1 = time.time()
        counts = collect_stats(agg.where(F.col("kind") == "s").select("lang", "a", "b", "n").collect())
        joiners = {lang: ("" if is_no_space_lang(lang) else " ") for lang in sorted(set(dumps.values()))}
        groups = by_language(spark, candidates(agg, config, joiners, with_pageviews=bool(inputs.pageviews)))
        manifest = publish(output, groups, config, counts,
                           build_config(config, inputs, list(dumps), excluded_dumps, counts, align_to_lid, languages),
                           version, progress)
        timings["select_write_s"] = round(time.time() - t1, 3)
    finally:
        agg.unpersist()
    timings["total_s"] = round(time.time() - t0, 3)
    return write_report(output, manifest, counts, timings, n_agg)


def file_records(spark, paths: list[str], records: Callable[[str], Iterable[tuple]], max_tasks: int = 0):
    """DataFrame of `records(path)` of every file, one task per file (compressed files do not split)."""
    paths = sorted(paths)
    if not paths:
        return spark.createDataFrame([], RECORD_DDL)
    tasks = min(len(paths), max_tasks) if max_tasks else len(paths)
    rdd = spark.sparkContext.parallelize(paths, tasks).flatMap(records)
    return spark.createDataFrame(rdd, RECORD_DDL, verifySchema=False)


def aggregate(records_df):
    """Sum n per (kind, lang, a, b): merges partial flushes and dumps of merged variants."""
    return records_df.groupBy("kind", "lang", "a", "b").agg(F.sum("n").alias("n"))


def candidates(agg, config: MetadataConfig, joiners: dict[str, str], with_pageviews: bool):
    """(lang, source, entry, note) of every language's candidates; note = what ranked a title."""
    none = F.lit(None).cast("string")
    return (
        agg.where(F.col("kind") == "w").select("lang", F.lit("wordnet").alias("source"), F.col("a").alias("entry"), none.alias("note"))
        .unionByName(top_unigrams(agg, config).select("lang", F.lit("wiki_unigram").alias("source"), "entry", none.alias("note")))
        .unionByName(top_bigrams(agg, config, joiners).select("lang", F.lit("wiki_bigram").alias("source"), "entry", none.alias("note")))
        .unionByName(top_titles(agg, config, with_pageviews)
                     .select("lang", F.lit("wiki_title").alias("source"), "entry", F.col("rank_by").alias("note")))
        .where(F.col("lang").isNotNull() & (F.col("lang") != ""))
    )


def by_language(spark, candidates_df) -> Iterator[tuple[str, dict[str, list[str]], str | None]]:
    """(lang, {source: [entries]}, titles' rank_by) streamed one language at a time (in partition order)."""
    cur, bucket, rank_by = None, defaultdict(list), None
    # each language lands whole in one partition, contiguous after the sort (no global sort needed)
    parts = max(1, spark.sparkContext.defaultParallelism)
    grouped = candidates_df.repartition(parts, "lang").sortWithinPartitions("lang")
    for row in grouped.toLocalIterator(prefetchPartitions=True):
        if row["lang"] != cur:
            if cur is not None:
                yield cur, bucket, rank_by
            cur, bucket, rank_by = row["lang"], defaultdict(list), None
        bucket[row["source"]].append(row["entry"])
        if row["note"]:
            rank_by = row["note"]
    if cur is not None:
        yield cur, bucket, rank_by


def _ceil_fraction(col, fraction: float):
    """metadata.selection.keep_count's ceil(round(distinct * fraction, 6)) as a column."""
    return F.ceil(F.round(col.cast("double") * F.lit(float(fraction)), 6))


def _top_fraction(scored, fraction: float, cap: int):
    """Rows of `scored` (lang, entry, score) among their language's best keep_count(distinct, fraction, cap)."""
    w_rank = Window.partitionBy("lang").orderBy(F.col("score").desc(), F.col("entry").asc())
    ranked = scored.withColumn("rank", F.row_number().over(w_rank)).withColumn("distinct", F.count("*").over(Window.partitionBy("lang")))
    return ranked.where(F.col("rank") <= F.least(_ceil_fraction(F.col("distinct"), fraction), F.lit(cap)))


def top_unigrams(agg, config: MetadataConfig):
    """metadata.selection.top_unigrams of every language: (lang, entry, score = count)."""
    u = agg.where(F.col("kind") == "u").select("lang", F.col("a").alias("entry"), F.col("n").cast("double").alias("score"))
    return _top_fraction(u, config.unigram_top_fraction, config.unigram_max).select("lang", "entry", "score")


def bigram_pmi(agg, joiners: dict[str, str]):
    """Bigrams with counts and PMI; `joiners[lang]` is '' for no-space languages (default ' ')."""
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
    """metadata.selection.top_bigrams of every language: (lang, entry, score = PMI)."""
    scored = bigram_pmi(agg, joiners).where(
        (F.col("pmi") > F.lit(config.bigram_min_pmi)) & (F.col("count") >= F.lit(config.bigram_min_count))
    )
    w = Window.partitionBy("lang").orderBy(F.col("pmi").desc(), F.col("count").desc(), F.col("entry").asc())
    return (
        scored.withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= F.lit(config.bigram_max))
        .select("lang", "entry", F.col("pmi").alias("score"))
    )


def top_titles(agg, config: MetadataConfig, with_pageviews: bool):
    """metadata.selection.top_titles of every language: (lang, entry, score, rank_by).

    `with_pageviews`: pageview files were read (their summed views are the agg's 'p' records).
    """
    articles = agg.where(F.col("kind") == "a").select("lang", F.col("a").alias("entry")).distinct()
    inlinks = agg.where(F.col("kind") == "l").select("lang", F.col("a").alias("entry"), F.col("n").alias("links"))
    by_links = (
        articles.join(inlinks, ["lang", "entry"], "left")
        .select("lang", "entry", F.coalesce(F.col("links"), F.lit(0)).cast("double").alias("score"), F.lit("inlinks").alias("rank_by"))
    )
    if with_pageviews:
        pv = (agg.where(F.col("kind") == "p").groupBy("lang", F.col("a").alias("entry"))
              .agg(F.sum("n").cast("double").alias("score")))
        pv_langs = pv.select("lang").distinct()
        dump_langs = articles.select("lang").distinct()
        if config.titles_require_article:
            with_dump = pv.join(articles, ["lang", "entry"], "inner")
            without_dump = pv.join(dump_langs, "lang", "left_anti")
            pv = with_dump.unionByName(without_dump)
        by_views = pv.withColumn("rank_by", F.lit("pageviews"))
        by_links = by_links.join(pv_langs, "lang", "left_anti")
        ranked = by_views.unionByName(by_links)
    else:
        ranked = by_links
    return _top_fraction(ranked, config.title_top_fraction, config.title_max).select("lang", "entry", "score", "rank_by")


if __name__ == "__main__":
    from jobs import build_metadata  # task bodies pickle by reference to this module, not to __main__

    sys.exit(build_metadata.main())
