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
import logging  # noqa: E402

from curation import config_cli, runs  # noqa: E402
from jobs.common import build_spark, user_error  # noqa: E402
from metadata.config import MetadataConfig  # noqa: E402

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
    from metadata.build import build, check_output, discover_inputs, summary

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


if __name__ == "__main__":
    sys.exit(main())
