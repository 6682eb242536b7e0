"""Dump-to-tokens throughput of the metadata build, per core, on the real dumps in ../shared/data.

Measures, in one process (= one core), CPU time of
  reader (decompress + page split + XML unescape) -> markup stripper -> tokenizer
over every space-separated-language dump, and reports MB/s of decompressed dump XML per core
(goal >= 5 MB/s). Also prints the same with unigram/bigram counting added (the build's real
per-task loop) and the no-space languages (segmenters) for information.

    python bench/metadata.py [--data ../shared/data/wikipedia] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from curation.languages import is_no_space_lang  # noqa: E402
from metadata.alignment import lang_for_wiki  # noqa: E402
from metadata.config import MetadataConfig  # noqa: E402
from metadata.dump_reader import DumpInfo, dump_language, iter_pages  # noqa: E402
from metadata.markup import MarkupStripper  # noqa: E402
from metadata.tokenize import tokenizer_for  # noqa: E402


def run(path: str, count: bool) -> tuple[int, float, int]:
    """(decompressed bytes, CPU seconds, tokens) for one dump."""
    cfg = MetadataConfig()
    lang = lang_for_wiki(dump_language(path))
    tok = tokenizer_for(lang, cfg.segmenters)
    tok.tokens("warm up")  # segmenter dictionaries load outside the timed loop
    stats, info = Counter(), DumpInfo()
    uni: dict = {}
    bi: dict = {}
    links: Counter = Counter()
    n_tokens = 0
    t0 = time.process_time()
    stripper = None
    for page in iter_pages(path, stats, info):
        if stripper is None:
            stripper = MarkupStripper(info.namespace_names())
        plain = stripper.strip(page.text, links, stats)
        if count:
            tok.count_into(plain, uni, bi)
        else:
            n_tokens += sum(len(s) for s in tok.segments(plain))
    dt = time.process_time() - t0
    if count:
        n_tokens = sum(uni.values())
    return stats["input_bytes"], dt, n_tokens


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "wikipedia"))
    p.add_argument("--json", help="write the numbers here too")
    args = p.parse_args()
    dumps = sorted(glob.glob(os.path.join(args.data, "*wiki*.xml*")))
    if not dumps:
        print(f"no dumps under {args.data}", file=sys.stderr)
        return 2
    rows = []
    for path in dumps:
        lang = lang_for_wiki(dump_language(path))
        nbytes, dt, ntok = run(path, count=False)
        _, dtc, _ = run(path, count=True)
        rows.append({"dump": os.path.basename(path), "lang": lang, "no_space": is_no_space_lang(lang),
                     "mb": nbytes / 1e6, "cpu_s": dt, "cpu_s_with_counting": dtc, "tokens": ntok})
        print(f"{os.path.basename(path):48s} {lang:3s} {nbytes / 1e6:7.1f} MB  {nbytes / 1e6 / dt:6.2f} MB/s/core"
              f"  (with counting {nbytes / 1e6 / dtc:5.2f})  {ntok} tokens", flush=True)
    space = [r for r in rows if not r["no_space"]]
    mb = sum(r["mb"] for r in space)
    rate = mb / sum(r["cpu_s"] for r in space)
    rate_c = mb / sum(r["cpu_s_with_counting"] for r in space)
    result = {"space_separated_mb": round(mb, 2), "mb_per_s_per_core": round(rate, 2),
              "mb_per_s_per_core_with_counting": round(rate_c, 2), "goal_mb_per_s_per_core": 5.0, "dumps": rows}
    nospace = [r for r in rows if r["no_space"]]
    if nospace:
        result["no_space_mb_per_s_per_core"] = round(sum(r["mb"] for r in nospace) / sum(r["cpu_s"] for r in nospace), 2)
    print(f"\nreader+stripper+tokenizer, space-separated languages: {rate:.2f} MB/s per core "
          f"(goal >= 5; {rate_c:.2f} with counting) over {mb:.1f} MB of dump XML")
    if nospace:
        print(f"no-space languages (segmenters): {result['no_space_mb_per_s_per_core']:.2f} MB/s per core")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
