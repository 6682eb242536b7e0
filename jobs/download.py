#!/usr/bin/env python
"""The download job: curated/ (or matched/) URLs in, Parquet image shards out (DESIGN section 6).

    python jobs/download.py --input out/curated --output out/images
    python jobs/download.py --input out/matched --output out/images-all --retry-failed
    spark-submit jobs/download.py --input s3a://bucket/run/curated --output s3://bucket/run/images

Resumable: a rerun skips finished shards; --retry-failed re-fetches the failed URLs of finished
shards. The output layout is described in curation/download_shards.py, the run in
curation/download_run.py; this file only parses flags, starts Spark and calls the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import json  # noqa: E402

from curation import config_cli, runs  # noqa: E402
from curation.download_config import DownloadConfig  # noqa: E402
from curation.download_run import check_output, print_summary, run  # noqa: E402
from jobs.common import user_error  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="curated/ or matched/ Parquet directory (what Spark can read)")
    p.add_argument("--output", required=True, help="images directory (local path or s3://bucket/prefix)")
    p.add_argument("--input-kind", choices=("auto", "curated", "matched"), default="auto")
    p.add_argument("--retry-failed", action="store_true", help="re-fetch the failed URLs of finished shards")
    p.add_argument("--retry-reasons", help="comma-separated failure reasons to retry (default: all)")
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--master", help="Spark master (default local[*] unless spark-submit sets one)")
    p.add_argument("--no-progress", action="store_true")
    # --config FILE, --set KEY=VALUE and one flag per DownloadConfig field (--threads, --per-host, ...)
    config_cli.add_config_arguments(p, DownloadConfig, section="download")
    return p


def config_from_args(args: argparse.Namespace) -> DownloadConfig:
    """Defaults, then --config, then --set, then the named flags; ValueError on a bad value."""
    return config_cli.config_from_args(DownloadConfig, args, section="download")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError, TypeError) as e:
        parser.error(str(e))
    reasons = frozenset(r.strip() for r in args.retry_reasons.split(",")) if args.retry_reasons else None
    try:
        check_output(args.output, args.input)
    except (ValueError, OSError) as e:
        return user_error("download", e)
    spark = runs.build_spark("worldclip-download", args.master)
    try:
        report = run(spark, args.input, args.output, cfg, kind=args.input_kind, retry_failed=args.retry_failed,
                     retry_reasons=reasons, progress=not args.no_progress)
    finally:
        spark.stop()
    print_summary(report)
    print(json.dumps(report, sort_keys=True))
    if args.report:
        runs.write_json(args.report, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
