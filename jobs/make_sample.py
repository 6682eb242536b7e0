"""Write the built-in sample: WAT files with multilingual alt-text and the matching metadata.

    python -m jobs.make_sample --out build/sample [--seed 0] [--files 4] [--pages 150]

Idempotent: the same arguments write byte-identical files (and remove stale sample files).
Prints one summary line; the whole summary, for scripts, is <out>/sample.json (written by
curation.samples.alt_texts.write_sample), so it is not printed a second time as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from curation.samples.alt_texts import LANGUAGE_CODES, write_sample  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Used by `make curate` (README.md, first lines); the sample's design is in "
                                            "the docstring of curation/samples/alt_texts.py.")
    parser.add_argument("--out", required=True, help="output directory (wat/ and metadata/ are written inside)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=4, help="number of WAT files")
    parser.add_argument("--pages", type=int, default=150, help="HTML pages per WAT file")
    parser.add_argument(
        "--languages", default=",".join(LANGUAGE_CODES), help="comma-separated language codes (must include en)"
    )
    args = parser.parse_args(argv)
    if args.files < 1 or args.pages < 1:
        parser.error("--files and --pages must be at least 1")
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    try:
        summary = write_sample(args.out, seed=args.seed, files=args.files, pages_per_file=args.pages, languages=languages)
    except ValueError as e:
        parser.error(str(e))
    print(
        f"sample written to {summary['out']}: {len(summary['wat_files'])} WAT files "
        f"({summary['records']} records, {summary['image_links']} image links, "
        f"{len(summary['pages_with_images_by_language'])} languages) and metadata "
        f"{summary['metadata']} ({summary['metadata_languages']} languages, version {summary['metadata_version']}); "
        f"summary: {os.path.join(summary['out'], 'sample.json')}"
    )
    return summary


if __name__ == "__main__":
    main()
