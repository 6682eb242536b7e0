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
metadata.wordnet.wordnet_records), Spark sums their records per (kind, unit, a, b) (a unit is one
Wikipedia code), collects a few counts per unit from which the driver plans each unit's caps
(metadata.selection.plan_unit), ranks every unit's candidates at once with window functions
(metadata.selection states the same rules on plain values; a large language's counts would not
fit one Python worker), keeps of each capped source only the head the plan needs and streams
them to the driver one language at a time, where metadata.build.publish caps, unions and writes
each. `--import-metadata en=metadata.json` takes a language's entries from a MetaCLIP-style
list instead (metadata.imported), as MetaCLIP 2 reuses MetaCLIP 1's English metadata.
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
from jobs.common import build_spark, user_error  # noqa: E402
from metadata.alignment import lang_for_unit, tokenizer_lang  # noqa: E402
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
from metadata.imported import parse_import_specs, read_metadata_json, with_imports  # noqa: E402
from metadata.merge import LanguageCandidates, Ranked  # noqa: E402
from metadata.pageviews import pageview_records  # noqa: E402
from metadata.selection import WIKI_SOURCES, UnitPlan, bigram_joiner, plan_unit, uses_metaclip1  # noqa: E402
from metadata.wordnet import wordnet_records  # noqa: E402

log = logging.getLogger(__name__)

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(ROOT, "build", "metadata"), help="metadata directory (local or s3://)")
    p.add_argument("--wikipedia", nargs="*", default=None, help="dump files, dirs or globs (default ../shared/data/wikipedia)")
    p.add_argument("--wordnet", nargs="*", default=None, help="WordNet/OMW files or dirs (default ../shared/data/wordnet)")
    p.add_argument("--pageviews", nargs="*", default=[], help="pageview files, dirs or globs (optional)")
    p.add_argument("--import-metadata", action="append", default=[], metavar="LANG=PATH",
                   help="take LANG's entries from a MetaCLIP-style metadata.json (a JSON list), e.g. "
                        "en=metadata.json for MetaCLIP 1's English list; repeatable")
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
    try:
        imported = parse_import_specs(args.import_metadata)
    except ValueError as e:
        parser.error(str(e))
    try:
        inputs = discover_inputs(wikipedia, wordnet, args.pageviews, imported)
        for path in inputs.imported.values():  # a bad list is a user error, before Spark starts
            read_metadata_json(path)
    except (ValueError, OSError) as e:
        return user_error("build_metadata", e)
    if not (inputs.wikipedia or inputs.wordnet or inputs.pageviews or inputs.imported):
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
    wanted = set(languages) if languages else None
    imported = {lang: read_metadata_json(path) for lang, path in inputs.imported.items() if wanted is None or lang in wanted}
    replaced = sorted(imported) if config.imported_replaces_build else []
    dumps, excluded_dumps = select_dumps(inputs.wikipedia, languages, align_to_lid, skip=replaced)
    langs = sorted(languages) if languages else None
    records = (
        file_records(spark, list(dumps), functools.partial(dump_records, config=config, align_to_lid=align_to_lid))
        .unionByName(file_records(spark, inputs.pageviews, functools.partial(
            pageview_records, align_to_lid=align_to_lid, languages=langs, config=config)))
        .unionByName(file_records(spark, inputs.wordnet, functools.partial(
            wordnet_records, align_to_lid=align_to_lid, languages=langs, config=config), max_tasks=64))
    )
    agg = aggregate(records).persist()
    cached = [agg]
    try:
        n_agg = agg.count()
        timings["count_s"] = round(time.time() - t0, 3)
        log.info("aggregated %d distinct records in %.1fs", n_agg, timings["count_s"])
        t1 = time.time()
        counts = collect_stats(agg.where(F.col("kind") == "s").select("lang", "a", "b", "n").collect())
        units = unit_languages(agg, align_to_lid, skip=replaced)
        mc1_units = sorted(u for u, lang in units.items() if uses_metaclip1(lang, config))
        unigrams = unigram_candidates(agg, config, mc1_units)
        bigrams = bigram_candidates(agg, config, units).persist()
        titles = title_candidates(agg, config, mc1_units, with_pageviews=bool(inputs.pageviews)).persist()
        cached += [bigrams, titles]
        # an import that does not replace a language is the earliest source of its own code
        sizes = {} if config.imported_replaces_build else {lang: len(set(e)) for lang, e in imported.items()}
        plans = plan_units(unit_stats(agg, unigrams, bigrams, titles), units, config, sizes)
        groups = by_language(spark, candidates(spark, agg, unigrams, bigrams, titles, plans), plans, config)
        manifest = publish(output, with_imports(groups, imported, config.imported_replaces_build), config, counts,
                           build_config(config, inputs, list(dumps), excluded_dumps, counts, align_to_lid, languages),
                           version, progress)
        timings["select_write_s"] = round(time.time() - t1, 3)
    finally:
        for df in cached:
            df.unpersist()
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
    """Sum n per (kind, unit, a, b): merges partial flushes and the dumps of one Wikipedia code."""
    return records_df.groupBy("kind", "lang", "a", "b").agg(F.sum("n").alias("n"))


def unit_languages(agg, align_to_lid: bool = True, skip: Iterable[str] = ()) -> dict[str, str]:
    """{unit: metadata language} of every unit the records hold, but those of the `skip` languages."""
    skip = set(skip)
    out = {}
    for row in agg.where(F.col("kind") != "s").select("lang").distinct().collect():
        unit = row["lang"]
        lang = lang_for_unit(unit, align_to_lid) if unit else ""
        if lang and lang not in skip:
            out[unit] = lang
    return dict(sorted(out.items()))


def _in(col: str, values: list[str]):
    return F.col(col).isin(values) if values else F.lit(False)


def unigram_candidates(agg, config: MetadataConfig, mc1_units: list[str]):
    """(lang = unit, entry, score = count, score2) of the unigrams each unit's rule offers."""
    u = agg.where(F.col("kind") == "u").select("lang", F.col("a").alias("entry"), "n")
    u = u.where(~_in("lang", mc1_units) | (F.col("n") >= F.lit(config.metaclip1_unigram_min_count)))
    return u.select("lang", "entry", F.col("n").cast("double").alias("score"), F.lit(0).cast("long").alias("score2"))


def bigram_pmi(agg, joiners: dict[str, str], config: MetadataConfig | None = None):
    """(lang, entry, count, pmi) of every bigram whose words are counted; `joiners[unit]` is ''
    for no-space languages (default ' '); N is the unit's total unigram count, or its total
    bigram count with `pmi_total='bigrams'` (metadata.selection.pmi_total)."""
    config = config or MetadataConfig()
    b = agg.where(F.col("kind") == "b").select("lang", F.col("a").alias("x"), F.col("b").alias("y"), F.col("n").alias("cxy"))
    u = agg.where(F.col("kind") == "u").select("lang", F.col("a").alias("w"), F.col("n").alias("cw"))
    totals = (u.groupBy("lang").agg(F.sum("cw").alias("N")) if config.pmi_total == "unigrams"
              else b.groupBy("lang").agg(F.sum("cxy").alias("N")))
    ux = u.select("lang", F.col("w").alias("x"), F.col("cw").alias("cx"))
    uy = u.select("lang", F.col("w").alias("y"), F.col("cw").alias("cy"))
    j = b.join(totals, "lang").join(ux, ["lang", "x"]).join(uy, ["lang", "y"])
    pmi = F.log2(F.col("cxy").cast("double") * F.col("N").cast("double") / (F.col("cx").cast("double") * F.col("cy").cast("double")))
    no_space = [unit for unit, jn in sorted(joiners.items()) if jn == ""]
    entry = F.when(_in("lang", no_space), F.concat("x", "y")).otherwise(F.concat_ws(" ", "x", "y"))
    return j.select("lang", entry.alias("entry"), F.col("cxy").alias("count"), pmi.alias("pmi"))


def bigram_candidates(agg, config: MetadataConfig, units: dict[str, str]):
    """(lang, entry, score = PMI, score2 = count) of the bigrams each unit's rule offers, one row
    per joined entry (its best pair)."""
    joiners = {unit: bigram_joiner(tokenizer_lang(unit, lang)) for unit, lang in units.items()}
    mc1 = _in("lang", sorted(u for u, lang in units.items() if uses_metaclip1(lang, config)))
    scored = bigram_pmi(agg, joiners, config)
    rule = F.when(mc1, F.col("pmi") >= F.lit(config.metaclip1_bigram_min_pmi)).otherwise(
        (F.col("pmi") > F.lit(config.bigram_min_pmi)) & (F.col("count") >= F.lit(config.bigram_min_count)))
    best = Window.partitionBy("lang", "entry").orderBy(F.col("pmi").desc(), F.col("count").desc())
    return (scored.where(rule).withColumn("_k", F.row_number().over(best)).where(F.col("_k") == 1)
            .select("lang", "entry", F.col("pmi").alias("score"), F.col("count").alias("score2")))


def title_candidates(agg, config: MetadataConfig, mc1_units: list[str], with_pageviews: bool):
    """(lang, entry, score, score2, rank_by) of every unit's title candidates (selection.ranked_titles).

    `with_pageviews`: pageview files were read (their summed views are the agg's 'p' records, the
    MetaCLIP 1 sums of its languages the 'q' records).
    """
    articles = agg.where(F.col("kind") == "a").select("lang", F.col("a").alias("entry")).distinct()
    inlinks = agg.where(F.col("kind") == "l").select("lang", F.col("a").alias("entry"), F.col("n").alias("links"))
    by_links = (
        articles.join(inlinks, ["lang", "entry"], "left")
        .select("lang", "entry", F.coalesce(F.col("links"), F.lit(0)).cast("double").alias("score"), F.lit("inlinks").alias("rank_by"))
    )
    if with_pageviews:
        pv = agg.where(F.col("kind") == "p").select("lang", F.col("a").alias("entry"), F.col("n").cast("double").alias("score"))
        pv_units = pv.select("lang").distinct()
        mc1_views = (agg.where((F.col("kind") == "q") & (F.col("n") >= F.lit(config.metaclip1_title_min_views)))
                     .select("lang", F.col("a").alias("entry"), F.col("n").cast("double").alias("score")))
        views = pv.where(~_in("lang", mc1_units)).unionByName(mc1_views.where(_in("lang", mc1_units)))
        if config.titles_require_article:
            dump_units = articles.select("lang").distinct()
            views = views.join(articles, ["lang", "entry"], "inner").unionByName(views.join(dump_units, "lang", "left_anti"))
        by_links = by_links.join(pv_units, "lang", "left_anti")
        ranked = views.withColumn("rank_by", F.lit("pageviews")).unionByName(by_links)
    else:
        ranked = by_links
    return ranked.select("lang", "entry", "score", F.lit(0).cast("long").alias("score2"), "rank_by")


_STAT_KINDS = {"u": "unigrams", "b": "bigrams", "w": "wordnet", "p": "pageviews"}


def unit_stats(agg, unigrams, bigrams, titles) -> dict[str, dict[str, int]]:
    """{unit: the counts selection.plan_unit plans from} (one small collect)."""
    kind_key = F.create_map(*[F.lit(x) for kv in _STAT_KINDS.items() for x in kv])[F.col("kind")]
    parts = [
        agg.where(F.col("kind").isin(list(_STAT_KINDS))).groupBy("lang", kind_key.alias("key")).agg(F.count("*").alias("n")),
        unigrams.groupBy("lang").agg(F.lit("unigrams_passing").alias("key"), F.count("*").alias("n")),
        bigrams.groupBy("lang").agg(F.lit("bigrams_passing").alias("key"), F.count("*").alias("n")),
        titles.groupBy("lang").agg(F.lit("titles").alias("key"), F.count("*").alias("n")),
    ]
    df = parts[0]
    for part in parts[1:]:
        df = df.unionByName(part)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for row in df.collect():
        out[row["lang"]][row["key"]] = int(row["n"])
    return dict(out)


def plan_units(stats: dict[str, dict[str, int]], units: dict[str, str], config: MetadataConfig,
               imported: dict[str, int] | None = None) -> dict[str, UnitPlan]:
    """selection.plan_unit of every unit; titles are ranked by pageviews where pageview files cover the unit."""
    imported = imported or {}
    plans = {}
    for unit, lang in sorted(units.items()):
        st = stats.get(unit, {})
        rank_by = "pageviews" if st.get("pageviews") else "inlinks"
        plans[unit] = plan_unit(lang, st, rank_by, config, imported.get(unit, 0) if unit == lang else 0)
    return plans


def candidates(spark, agg, unigrams, bigrams, titles, plans: dict[str, UnitPlan]):
    """(lang = unit, source, rank, entry) of every planned unit: its WordNet lemmas, and of each
    wiki source the best `limit` candidates (all when the plan says None)."""
    if not plans:
        return spark.createDataFrame([], "lang string, source string, rank int, entry string")
    limits = spark.createDataFrame([(unit, src, plan.limits.get(src)) for unit, plan in plans.items() for src in WIKI_SOURCES],
                                   "lang string, source string, lim long")
    planned = spark.createDataFrame([(unit,) for unit in plans], "lang string")

    def head(df, source: str):
        order = Window.partitionBy("lang").orderBy(F.col("score").desc(), F.col("score2").desc(), F.col("entry").asc())
        lim = F.broadcast(limits.where(F.col("source") == source).select("lang", "lim"))
        return (df.withColumn("rank", F.row_number().over(order)).join(lim, "lang")  # inner: planned units only
                .where(F.col("lim").isNull() | (F.col("rank") <= F.col("lim")))
                .select("lang", F.lit(source).alias("source"), "rank", "entry"))

    wordnet = (agg.where(F.col("kind") == "w").join(F.broadcast(planned), "lang")
               .select("lang", F.lit("wordnet").alias("source"), F.lit(0).alias("rank"), F.col("a").alias("entry")))
    return (wordnet.unionByName(head(unigrams, "wiki_unigram")).unionByName(head(bigrams, "wiki_bigram"))
            .unionByName(head(titles, "wiki_title")))


def by_language(spark, candidates_df, plans: dict[str, UnitPlan], config: MetadataConfig) -> Iterator[LanguageCandidates]:
    """Each language's candidates, by unit and source, best first, streamed one language at a time."""
    if not plans:
        return
    mapping = spark.createDataFrame([(unit, plan.lang) for unit, plan in plans.items()], "lang string, mlang string")
    order = F.create_map(*[F.lit(x) for i, s in enumerate(config.sources) for x in (s, i)])[F.col("source")]
    # each language lands whole in one partition, contiguous after the sort (no global sort needed)
    parts = max(1, spark.sparkContext.defaultParallelism)
    grouped = (candidates_df.join(F.broadcast(mapping), "lang").withColumn("sidx", order)
               .repartition(parts, "mlang").sortWithinPartitions("mlang", "lang", "sidx", "rank", "entry"))
    cur, bucket = None, defaultdict(lambda: defaultdict(list))
    for row in grouped.toLocalIterator(prefetchPartitions=True):
        if row["mlang"] != cur:
            if cur is not None:
                yield _language(cur, bucket, plans)
            cur, bucket = row["mlang"], defaultdict(lambda: defaultdict(list))
        bucket[row["lang"]][row["source"]].append(row["entry"])
    if cur is not None:
        yield _language(cur, bucket, plans)


def _language(lang: str, bucket: dict, plans: dict[str, UnitPlan]) -> LanguageCandidates:
    units: dict[str, dict] = {}
    for unit, sources in sorted(bucket.items()):
        plan = plans[unit]
        units[unit] = {src: (Ranked(entries, plan.caps.get(src), plan.available.get(src)) if src in WIKI_SOURCES else entries)
                       for src, entries in sources.items()}
    return LanguageCandidates(lang, units, {u: plans[u].rank_by for u in units}, {u: plans[u].rules for u in units})

if __name__ == "__main__":
    from jobs import build_metadata  # task bodies pickle by reference to this module, not to __main__

    sys.exit(build_metadata.main())
