"""Build the per-language metadata directory from Wikipedia dumps, pageviews and WordNet/OMW.

    python jobs/build_metadata.py --output build/metadata
    spark-submit jobs/build_metadata.py --output s3://bucket/metadata/v3 \
        --wikipedia 's3a-synced/dumps/*wiki-*-pages-articles*.xml.bz2' --pageviews '/data/pageviews/*.gz'

Without --wikipedia/--wordnet the real samples beside the repo are used
(../shared/data/wikipedia and ../shared/data/wordnet). Config: paper defaults, a JSON file
(--config, e.g. infra/metadata.json) and flags, applied in that order. Prints a short summary
and writes the JSON report (`--report`, default <output>/_REPORT.json).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

from metadata.config import MetadataConfig  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(ROOT, "build", "metadata"), help="metadata directory (local or s3://)")
    p.add_argument("--wikipedia", nargs="*", default=None, help="dump files, dirs or globs (default ../shared/data/wikipedia)")
    p.add_argument("--wordnet", nargs="*", default=None, help="WordNet/OMW files or dirs (default ../shared/data/wordnet)")
    p.add_argument("--pageviews", nargs="*", default=[], help="pageview files, dirs or globs (optional)")
    p.add_argument("--config", help="JSON config file (keys of MetadataConfig, optionally under 'metadata')")
    p.add_argument("--languages", nargs="*", help="only these metadata languages (e.g. en ja other)")
    p.add_argument("--no-align-lid", action="store_true", help="keep every Wikipedia language instead of merging non-LID ones into 'other'")
    p.add_argument("--version", help="metadata version string (default: derived from the content)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", default=None, help="Spark master when not set by spark-submit (default local[*])")
    p.add_argument("--shuffle-partitions", type=int, default=None)
    # config overrides (None = keep the config's value)
    p.add_argument("--unigram-top-fraction", type=float)
    p.add_argument("--unigram-max", type=int)
    p.add_argument("--bigram-min-pmi", type=float)
    p.add_argument("--bigram-min-count", type=int)
    p.add_argument("--bigram-max", type=int)
    p.add_argument("--title-top-fraction", type=float)
    p.add_argument("--title-max", type=int)
    p.add_argument("--lowercase", action="store_true", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def make_config(args) -> MetadataConfig:
    config = MetadataConfig.from_json(args.config) if args.config else MetadataConfig()
    return config.with_overrides(
        unigram_top_fraction=args.unigram_top_fraction, unigram_max=args.unigram_max,
        bigram_min_pmi=args.bigram_min_pmi, bigram_min_count=args.bigram_min_count, bigram_max=args.bigram_max,
        title_top_fraction=args.title_top_fraction, title_max=args.title_max, lowercase=args.lowercase,
    )


def spark_session(master: str | None, shuffle_partitions: int | None, quiet: bool = False):
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("worldclip-build-metadata")
    conf = SparkConf()
    if master or not conf.contains("spark.master"):
        builder = builder.master(master or "local[*]")
        builder = builder.config("spark.ui.enabled", "false").config("spark.driver.memory", conf.get("spark.driver.memory", "4g"))
    if shuffle_partitions or not conf.contains("spark.sql.shuffle.partitions"):
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions or 16))
    builder = builder.config("spark.python.worker.reuse", "true")
    if quiet:
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = make_config(args)
    from metadata.build import build, discover_inputs, summary

    wikipedia = args.wikipedia if args.wikipedia is not None else [os.path.join(SHARED, "wikipedia")]
    wordnet = args.wordnet if args.wordnet is not None else [os.path.join(SHARED, "wordnet")]
    inputs = discover_inputs(wikipedia, wordnet, args.pageviews)
    if not (inputs.wikipedia or inputs.wordnet or inputs.pageviews):
        print(f"no inputs found in {wikipedia} / {wordnet} / {args.pageviews}", file=sys.stderr)
        return 2
    spark = spark_session(args.master, args.shuffle_partitions, args.quiet)
    try:
        report = build(spark, inputs, args.output, config, languages=args.languages,
                       align_to_lid=not args.no_align_lid, version=args.version, progress=not args.quiet)
    finally:
        spark.stop()
    print(summary(report))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
