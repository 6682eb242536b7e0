"""Are the curate job's outputs byte-identical to those of an earlier commit?

    python bench/identical_outputs.py                    # against the commit before issue 12's restructuring
    python bench/identical_outputs.py --baseline HEAD~3  # against any revision

Checks out the baseline revision in a temporary git worktree, generates the built-in sample once
(with this tree's generator, so both runs read the same files), runs `jobs/curate.py` of both
trees on it with the sample's settings (as `make curate` does) and compares every file of
matched/, counts/, curated/, entry_probs/ and thresholds.json (rejects/ with --include-rejects) by SHA-256. Prints the
share of identical files and exits 1 on any difference: a restructuring must not change outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the last commit before the layout restructuring of issue 12
DEFAULT_BASELINE = "20f4862"
# rejects/ is compared only on request: issue 17 made it audit every reason (a sample of the bulk
# ones), so against a commit from before that it differs by design
COMPARED = ("matched", "counts", "curated", "entry_probs", "thresholds.json")


def digests(output: str, names=COMPARED) -> dict[str, str]:
    """sha256 of every file of `names` in a curate output (local, or s3:// through its manifest),
    keyed by the path relative to the output."""
    from curation import storage
    from curation.layout import CurateOutput

    root = CurateOutput.published(output).root
    out = {}
    for name in names:
        path = storage.join(root, name)
        if not storage.is_s3(root):
            files = [path] if os.path.isfile(path) else sorted(
                os.path.join(r, f) for r, _d, fs in os.walk(path) for f in fs)
        else:
            files = storage.list_files(path)
        for f in files:
            out[f[len(root):].lstrip("/")] = hashlib.sha256(storage.read_bytes(f)).hexdigest()
    return out


def run_curate(tree: str, sample: str, output: str, t_en: int) -> None:
    env = {**os.environ, "PYTHONPATH": tree}
    cmd = [sys.executable, os.path.join(tree, "jobs", "curate.py"), "--input", os.path.join(sample, "wat", "*.wat.gz"),
           "--metadata", os.path.join(sample, "metadata"), "--output", output, "--t-en", str(t_en)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    ap.add_argument("--t-en", type=int, default=40, help="t_en of the run (the Makefile's SAMPLE_T_EN)")
    ap.add_argument("--include-rejects", action="store_true", help="compare rejects/ too")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="identical-") as tmp:
        base_tree = os.path.join(tmp, "baseline")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", base_tree, args.baseline], check=True)
        try:
            sample = os.path.join(tmp, "sample")
            subprocess.run([sys.executable, "-m", "jobs.make_sample", "--out", sample], cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL)
            now, before = os.path.join(tmp, "out-now"), os.path.join(tmp, "out-baseline")
            run_curate(ROOT, sample, now, args.t_en)
            run_curate(base_tree, sample, before, args.t_en)
            names = (*COMPARED, "rejects") if args.include_rejects else COMPARED
            a, b = digests(now, names), digests(before, names)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base_tree], check=False)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    same = len(a.keys() | b.keys()) - len(differ)
    print(f"identical files vs {args.baseline}: {same}/{len(a.keys() | b.keys())} "
          f"(ratio {same / max(1, len(a.keys() | b.keys())):.3f})")
    for k in differ[:20]:
        print(f"  differs: {k} ({'missing now' if k not in a else 'missing in baseline' if k not in b else 'content'})")
    return 1 if differ or not a else 0


if __name__ == "__main__":
    sys.exit(main())
