"""Does the curate job's exchange cost per input stay flat as the input count grows?

    python bench/curate_scale.py                      # 500 and 5,000 small inputs
    python bench/curate_scale.py --sizes 200 2000 --pages 2

A crawl is ~90,000 WAT files. The exchange that regroups matched texts by uuid bucket must cost
O(data): opens and reads growing with inputs + buckets, never their product, and no task
holding a resource (memory map, descriptor) per input of the whole run. This runs the real job
(local Spark) on N small generated inputs at two sizes, with `rows_per_file` small enough that
the bucket count grows with the data as it does on a crawl, and prints per input: phase-2 CPU
seconds (exchange + grouping task bodies), files opened by phase 2, and the most memory maps one
task held, then the ratio large/small of each (goal: <= 1.3). The opens the old layout would
have made (every input for every bucket) are printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from curation.curate_config import CurateConfig  # noqa: E402
from curation.samples.alt_texts import write_sample  # noqa: E402


def measure(n: int, pages: int, work: str, spark, cores: int, rows_per_file: int) -> dict:
    sample = os.path.join(work, f"in-{n}")
    write_sample(sample, seed=1, files=n, pages_per_file=pages)
    from jobs.curate import run

    cfg = CurateConfig(inputs=(os.path.join(sample, "wat", "*.wat.gz"),), metadata=os.path.join(sample, "metadata"),
                       output=os.path.join(work, f"out-{n}"), t_en=40, partitions=4 * cores,
                       rows_per_file=rows_per_file, incremental=False)
    t = time.perf_counter()
    manifest = run(cfg, spark, progress=lambda *_: None)
    wall = time.perf_counter() - t
    cpu = manifest["task_cpu_seconds"]
    ex = manifest["exchange"]
    return {"inputs": n, "texts": manifest["rows"]["matched_texts"], "buckets": ex["buckets"], "runs": ex["runs"],
            "phase2_cpu_s": cpu["exchange"] + cpu["group"], "opens": ex["opens"],
            "opens_inputs_x_buckets": ex["opens_inputs_x_buckets"], "max_maps_per_task": ex["max_maps_per_task"],
            "wall_s": round(wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=(500, 5000), metavar=("SMALL", "LARGE"))
    ap.add_argument("--pages", type=int, default=2, help="pages per generated input")
    ap.add_argument("--rows-per-file", type=int, default=400,
                    help="small, so the bucket count grows with the data as on a crawl")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    from jobs.common import build_spark

    spark = build_spark("curate-scale-bench", f"local[{args.cores}]",
                        {"spark.ui.enabled": "false", "spark.driver.memory": "4g"})
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-scale-") as work:
        for n in args.sizes:
            r = measure(n, args.pages, work, spark, args.cores, args.rows_per_file)
            results.append(r)
            print(f"{n:>6} inputs: {r['texts']:>8,} texts, {r['buckets']} buckets, {r['runs']} runs | per input: "
                  f"phase-2 CPU {r['phase2_cpu_s'] / n * 1e3:.2f} ms, opens {r['opens'] / n:.2f} "
                  f"(inputs x buckets would be {r['opens_inputs_x_buckets'] / n:.1f}) | max maps in one task "
                  f"{r['max_maps_per_task']} | wall {r['wall_s']} s", flush=True)
    spark.stop()
    small, large = results
    ratios = {k: (large[k] / large["inputs"]) / max(small[k] / small["inputs"], 1e-12)
              for k in ("phase2_cpu_s", "opens")}
    print(f"ratio {large['inputs']}/{small['inputs']} inputs, per input: phase-2 CPU {ratios['phase2_cpu_s']:.2f}, "
          f"opens {ratios['opens']:.2f} (goal <= 1.3); max maps in one task {small['max_maps_per_task']} -> "
          f"{large['max_maps_per_task']} for {small['inputs']} -> {large['inputs']} inputs")
    print(json.dumps({"results": results, "ratios": ratios}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
