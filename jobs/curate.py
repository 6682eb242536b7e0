#!/usr/bin/env python
"""The curate job: WAT / url+text tables in, balanced Parquet out (DESIGN sections 3 and 6).

    python jobs/curate.py --input 'build/sample/wat/*.wat.gz' --metadata build/sample/metadata --output out
    spark-submit jobs/curate.py --config infra/curate.json

Only the entry point: flags -> CurateConfig, the SparkSession, then curation.curate_run.run
(phases, incremental ledger, atomic publish, report) whose tasks are curation.curate_stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402

from curation.curate_config import add_arguments, config_from_args  # noqa: E402
from curation.curate_run import build_session, preflight, run  # noqa: E402
from jobs.common import user_error  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        prepared = preflight(cfg)
    except (ValueError, OSError) as e:
        return user_error("curate", e)
    spark = build_session(cfg)
    run(cfg, spark, prepared=prepared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
