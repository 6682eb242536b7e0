"""Download the metadata sources: Wikipedia dumps, pageview files and Open Multilingual Wordnet.

    python jobs/download_sources.py --out data/metadata-src --wikis en ja zh --date 20240601 \
        --pageview-hours 2024-06-01T00 2024-06-01T01 --omw

Resumable (rerun after a failure: finished files are skipped, parts resume with HTTP Range),
checksum-verified against Wikimedia's sha1/md5 sums files. Prints a summary and writes a JSON
report (`<out>/_DOWNLOAD_REPORT.json`). Exit status 1 when any file failed.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402

from curation import runs  # noqa: E402
from metadata.download import OMW_URL, WIKIMEDIA, Downloader, Item, dump_items, pageview_items  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="download root (wikipedia/, pageviews/, wordnet/ below it)")
    p.add_argument("--wikis", nargs="*", default=[], help="Wikipedia codes (en ja zh-yue ...)")
    p.add_argument("--date", default="latest", help="dump date YYYYMMDD or 'latest'")
    p.add_argument("--pageview-hours", nargs="*", default=[], help="hours like 2024-06-01T13")
    p.add_argument("--omw", action="store_true", help="also fetch the OMW 1.4 data release")
    p.add_argument("--omw-url", default=OMW_URL)
    p.add_argument("--omw-digest", default=None, help="expected digest of the OMW file, 'sha256:<hex>'")
    p.add_argument("--base-url", default=WIKIMEDIA, help="Wikimedia dumps mirror")
    p.add_argument("--allow-private", action="store_true", help="allow private/loopback hosts (tests, internal mirrors)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--max-gb", type=float, default=200.0, help="size cap per file")
    return p.parse_args(argv)


def plan(args) -> list[Item]:
    items = dump_items(args.wikis, args.date, args.base_url) + pageview_items(args.pageview_hours, args.base_url)
    if args.omw:
        items.append(Item(args.omw_url, f"wordnet/{os.path.basename(args.omw_url)}", digest=args.omw_digest))
    return items


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    items = plan(args)
    if not items:
        print("nothing to download: give --wikis, --pageview-hours or --omw", file=sys.stderr)
        return 2
    dl = Downloader(args.out, allow_private=args.allow_private, timeout=args.timeout, retries=args.retries,
                    max_bytes=int(args.max_gb * (1 << 30)))
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **_k):
            return x
    results = [dl.fetch(item) for item in tqdm(items, desc="downloads", unit="file", disable=None)]
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    report = {"out": args.out, "files": len(results), "by_status": by_status,
              "bytes": sum(r.bytes for r in results), "results": [dataclasses.asdict(r) for r in results]}
    os.makedirs(args.out, exist_ok=True)
    runs.write_json(os.path.join(args.out, "_DOWNLOAD_REPORT.json"), report)
    print(f"downloads -> {args.out}: {len(results)} files, {by_status}, {report['bytes']} bytes")
    for r in results:
        if r.status == "failed":
            print(f"  FAILED {r.url}: {r.error}", file=sys.stderr)
    return 0 if by_status.get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
