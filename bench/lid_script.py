#!/usr/bin/env python
"""Benchmark: the LID's script check (curation.lid) on real labelled text, accuracy and cost.

Prints, with lid.176.ftz, before (script_check=False) and after (the default):
  - accuracy on the XTD captions (1,000 per language; zh, ja, ko, ru first), and which labels
    the check replaced by which (`ja>zh 100`);
  - accuracy per language on the Tatoeba sentences (every language of lid.176 in the file);
  - accuracy per language on the Babel-ImageNet class names where it changes (very short texts);
  - the step's cost: CPU seconds of LID with the check over LID without it on the same texts,
    in batches of the curate job's size, each batch timed --repeat times per side, interleaved,
    best of each (the machine is shared): for the mix of all the texts above plus real web alt-texts, and
    for the XTD Chinese captions alone (the worst case: a sixth of them are rechecked).

The data is real third-party data in ../shared/data (see its README); the benchmark says so
and exits 0 where it is absent.

    python bench/lid_script.py
    python bench/lid_script.py --repeat 9
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import lzma  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from curation.languages import ISO3_APPROXIMATE, LID_TO_LANG, OTHER, iso3_to_lang, wiki_to_lang  # noqa: E402
from curation.lid import LanguageIdentifier, count_corrections  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BATCH = 4096  # CurateConfig.batch_size: texts per LID call in the curate job
KNOWN = set(LID_TO_LANG.values())


def xtd_captions() -> dict[str, list[str]]:
    captions = json.loads((DATA / "eval/babel-imagenet/xtd.json").read_text(encoding="utf-8"))["captions"]
    return {("ja" if code == "jp" else code): [c[0] for c in caps] for code, caps in captions.items()}


def tatoeba() -> dict[str, list[str]]:
    """Metadata language -> sentences, for the ISO codes that map to a lid.176 language exactly."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    with lzma.open(DATA / "lid/tatoeba-nonascii-CC0.csv.xz", "rt", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[2].strip():
                continue
            lang = iso3_to_lang(parts[1])
            if lang != OTHER and lang in KNOWN and parts[1] not in ISO3_APPROXIMATE:
                out[lang].append(parts[2])
    return out


def babel_names() -> dict[str, list[str]]:
    """Metadata language -> Babel-ImageNet class names (Wikipedia codes, variants merged)."""
    data = json.loads((DATA / "eval/babel-imagenet/babel_imagenet-298.json").read_text(encoding="utf-8"))
    out: dict[str, list[str]] = collections.defaultdict(list)
    for code, (_ids, names) in sorted(data.items()):
        lang = wiki_to_lang(code.lower())
        if lang in KNOWN:
            out[lang].extend(names)
    return out


def web_alt_texts() -> list[str]:
    path = DATA / "web/alt-text-1000.parquet"
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    return [t for t in pq.read_table(path, columns=["TEXT"]).column("TEXT").to_pylist() if t]


def accuracy_table(title: str, sets: dict[str, list[str]], before: LanguageIdentifier, after: LanguageIdentifier,
                   only_changed: bool = False, order: list[str] | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'lang':6} {'texts':>7} {'before':>7} {'after':>7}  replaced labels (model>checked)")
    short = after.label_table()[0]
    langs_of = after.label_table()[1]
    total = [0, 0, 0]
    for lang in order or sorted(sets):
        texts = sets[lang]
        result = after.identify(texts)
        b = float((before.predict_arrays(texts)[2] == lang).mean())
        a = float((langs_of[result.idx] == lang).mean())
        total[0] += len(texts)
        total[1] += round(b * len(texts))
        total[2] += round(a * len(texts))
        if only_changed and abs(a - b) < 1e-12:
            continue
        changes = count_corrections(result, short).most_common(4)
        print(f"  {lang:6} {len(texts):7d} {b:7.3f} {a:7.3f}  {' '.join(f'{k} {v}' for k, v in changes)}")
    print(f"  {'all':6} {total[0]:7d} {total[1] / total[0]:7.3f} {total[2] / total[0]:7.3f}")


def cpu_ratio(texts: list[str], before: LanguageIdentifier, after: LanguageIdentifier, repeat: int):
    """(CPU s without the check, with it) over `texts` in BATCH-sized calls: each batch runs on
    both sides `repeat` times, interleaved, and its best time per side counts, so the load of a
    shared machine drifting within a run hits both sides alike."""
    bare = checked = 0.0
    for i in range(0, len(texts), BATCH):
        batch = texts[i:i + BATCH]
        best = {id(before): float("inf"), id(after): float("inf")}
        for _ in range(repeat):
            for lid in (before, after):
                start = time.process_time()
                lid.identify(batch)
                best[id(lid)] = min(best[id(lid)], time.process_time() - start)
        bare += best[id(before)]
        checked += best[id(after)]
    return bare, checked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7, help="interleaved timing runs per side (best counts)")
    args = p.parse_args(argv)
    if not (DATA / "eval/babel-imagenet/xtd.json").is_file():
        print(f"skipped: the real data is not at {DATA} (see shared/data/README.md)")
        return 0
    before = LanguageIdentifier(script_check=False)
    after = LanguageIdentifier()
    after.predict(["warm up"])  # load the model outside the timings

    xtd = xtd_captions()
    first = ["zh", "ja", "ko", "ru"]
    accuracy_table("XTD captions (1,000 per language)", xtd, before, after,
                   order=first + sorted(set(xtd) - set(first)))
    tat = tatoeba()
    accuracy_table("Tatoeba sentences, per language", tat, before, after)
    babel = babel_names()
    accuracy_table("Babel-ImageNet class names, languages whose accuracy changes", babel, before, after,
                   only_changed=True)

    mix = [t for texts in xtd.values() for t in texts] + [t for texts in tat.values() for t in texts[:2000]]
    mix += [t for texts in babel.values() for t in texts] + web_alt_texts()
    # one fixed interleaving of the sources, as a crawl's batches mix languages
    mix = [mix[i] for i in np.random.default_rng(0).permutation(len(mix))]
    print(f"\ncost of the check (CPU time, batches of {BATCH}, best of {args.repeat})")
    for name, texts in (("mix of all the texts above", mix), ("XTD zh captions only", xtd["zh"] * 8)):
        bare, checked = cpu_ratio(texts, before, after, args.repeat)
        rechecked = float(after.identify(texts).corrected.mean())
        print(f"  {name}: {len(texts)} texts, {bare / len(texts) * 1e6:.1f} us/text bare, "
              f"{checked / len(texts) * 1e6:.1f} us/text checked; ratio {checked / bare:.3f} "
              f"(step = {checked / bare - 1:+.1%} of bare prediction; {rechecked:.1%} of texts corrected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
