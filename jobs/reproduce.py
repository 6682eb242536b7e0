"""`make reproduce`: the paper's effect in miniature, end to end on the project's own jobs and trainer.

    python -m jobs.reproduce [--output build/reproduce] [--seeds 0 --seeds 1] [--steps 500] ...

1. a synthetic world (training.reproduce.world): Babel-ImageNet concepts named in 12 languages,
   a drawn look per concept, a web-like alt-text pool with a long tail per language;
2. the real pipeline (jobs.reproduce_pipeline): metadata build from the names, curate job
   over the pool, download job against a loopback image server;
3. training runs of equal model size and equal seen pairs (steps x batch), per seed:
   worldwide raw pool, worldwide balanced (online curation), English only (balanced);
4. zero-shot top-1 on held-out images per language, head and tail concepts apart, a table and
   plots in <output>/reproduce.html, every number in <output>/reproduce.json and the main table
   as Markdown in <output>/reproduce.md.

The defaults (200 concepts, 12 languages, 3 arms x 3 seeds of 500 steps x 128 pairs) take 8-11
minutes on 2 CPU cores shared with other work; most of it is training. Progress is printed
per step (with a "phase NAME took S s" line each; reproduce.json's timings_s has them all) and,
while training, every PROGRESS_EVERY_S seconds; the run ends with a summary and one JSON line. Config: the WorldConfig and ReproduceConfig dataclasses, from
defaults, then `--config FILE` (a JSON object with "world" and "reproduce" sections), then flags.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curation import config_cli
from curation.config_cli import ConfigMixin, option
from jobs import reproduce_pipeline as pipeline
from training.reproduce import analysis
from training.reproduce.arm import ARMS
from training.reproduce.world import LANGUAGES, World, WorldConfig, WorldInputError, describe_look

ROOT = Path(__file__).resolve().parents[1]  # the project root: the training processes run there
MARKER = "_REPRODUCE.json"  # what makes an output directory ours to replace
COLLECTED = "collected.json"  # what the runs left: enough to write the report again (--report-only)
PROGRESS_EVERY_S = 15.0


@dataclass(frozen=True)
class ReproduceConfig(ConfigMixin):
    SECTION = "reproduce"

    output: str = option("build/reproduce", metavar="DIR", help="where reproduce.html, reproduce.json and work/ go")
    seeds: tuple[int, ...] = option((0, 1, 2), repeat=True, flags=("--seeds",),
                                    help="training seeds; every arm runs once per seed")
    arms: tuple[str, ...] = option(("raw", "balanced", "english"), repeat=True, flags=("--arms",),
                                   help=f"runs to compare, of {', '.join(ARMS)}")
    steps: int = option(500, help="optimiser steps of every run (seen pairs = steps x batch_size, equal for all)")
    batch_size: int = option(128, help="pairs per step")
    lr: float = option(2e-3, help="peak learning rate (cosine to 0 after a linear warmup)")
    warmup_steps: int = option(40, help="linear warmup steps")
    t_en: int = option(40, help="the curate job's t_en; the world is ~10^4 texts, so the paper's 170,000 would "
                                "balance nothing (t_lang of every other language follows from it)")
    width: int = option(96, help="width of both towers and of the embedding (training/configs/tiny.json: 96)")
    layers: int = option(2, help="transformer layers of each tower (tiny.json: 2)")
    image_size: int = option(32, help="training and evaluation image side (the download job's image_size)")
    context_length: int = option(24, help="text tokens per caption (covers the longest templated alt-texts)")
    vocab_size: int = option(4000, help="BPE vocabulary trained on the downloaded shards' texts (12 languages)")
    scaled_pairs: float = option(2.3, help="the optional 'scaled' arm trains this many times the steps (MetaCLIP 2 "
                                           "scales seen pairs 2.3x for worldwide data)")
    jobs: int = option(0, help="training runs at once, each on one thread (0: the number of CPU cores)")
    port: int = option(48123, help="the loopback image server's port (0: any free port); part of every uuid")
    babel_dir: str | None = option(None, metavar="DIR", help="Babel-ImageNet data (default: $BABEL_IMAGENET_DATA, "
                                   "else ../shared/data/eval/babel-imagenet)")
    progress: bool = option(True, help="progress lines while the jobs and the training runs go")

    def __post_init__(self):
        for name in ("seeds", "arms"):
            v = getattr(self, name)
            if isinstance(v, (list, int, str)):
                object.__setattr__(self, name, tuple(v) if isinstance(v, list) else (v,))
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise ValueError(f"unknown arms {bad}; known: {list(ARMS)}")
        if not self.seeds or not self.arms:
            raise ValueError("at least one seed and one arm")
        if self.steps < 1 or self.batch_size < 2 or self.scaled_pairs < 1:
            raise ValueError("steps must be >= 1, batch_size >= 2 and scaled_pairs >= 1")


def train_config(cfg: ReproduceConfig) -> dict:
    """The trainer's config file of every run (training/configs/tiny.json's shape and optimiser)."""
    return {
        "name": "reproduce",
        "description": "training.reproduce: one model size and one schedule for every arm",
        "model": {"embed_dim": cfg.width, "quick_gelu": True,
                  "vision": {"image_size": cfg.image_size, "patch_size": 8, "width": cfg.width, "layers": cfg.layers,
                             "heads": 4},
                  "text": {"context_length": cfg.context_length, "vocab_size": None, "width": cfg.width,
                           "layers": cfg.layers, "heads": 4}},
        # workers 0: the run's one thread decodes too, so parallel runs never oversubscribe the cores
        "data": {"mode": "online", "shuffle_buffer": 1000, "workers": 0, "crop_scale": [0.85, 1.0]},
        "optim": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                  "weight_decay": 0.1, "betas": [0.9, 0.98], "eps": 1e-6, "grad_clip": 1.0},
        "run": {"seed": 0, "precision": "fp32", "checkpoint_every": cfg.steps, "keep_checkpoints": 1,
                "log_every": 25, "threads": 1, "evaluate": False},
        "tokenizer": {"path": None, "vocab_size": cfg.vocab_size},
    }


def prepare_output(out: Path) -> Path:
    """<out>/work emptied; refuses a non-empty directory that an earlier reproduce run did not make."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise WorldInputError(f"{out} exists and was not written by training.reproduce (no {MARKER}): choose another "
                         "--output")
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    pipeline.clear(work)
    work.mkdir()
    return work


def write_arm_probs(arm: str, curate_probs: Path, dest: Path) -> None:
    """entry_probs/ of an arm: the curate job's (balanced), all ones (raw), or English's alone."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(curate_probs.glob("*.npy")):
        lang = f.stem
        if ARMS[arm]["data"] == "english" and lang != "en":
            continue
        p = np.load(f, allow_pickle=False)
        np.save(dest / f.name, p if ARMS[arm]["curation"] == "balanced" else np.ones_like(p))


def world_spec(world: World) -> dict:
    return {"languages": world.languages,
            "concepts": [{"index": c.index, "imagenet": c.imagenet, "names": c.names, "look": describe_look(c.look)}
                         for c in world.concepts],
            "eval_templates": world.eval_templates,
            "rank": {lang: r.tolist() for lang, r in world.rank.items()}}


def _last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def run_steps(cfg: ReproduceConfig, arm: str) -> int:
    return round(cfg.steps * cfg.scaled_pairs) if ARMS[arm].get("scaled") else cfg.steps


def run_all(specs: list[dict], jobs: int, log=print, progress: bool = True) -> None:
    """Every run's process, `jobs` at a time; a status line every PROGRESS_EVERY_S seconds."""
    done: list[str] = []
    running: dict[str, Path] = {}
    lock = threading.Lock()
    t0 = time.time()
    steps_of = {s["name"]: s["steps"] for s in specs}

    def one(spec: dict) -> None:
        run_dir = Path(spec["output"])
        with lock:
            running[spec["name"]] = run_dir
        with open(run_dir / "log.txt", "w", encoding="utf-8") as logf:
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
            rc = subprocess.run([sys.executable, "-m", "training.reproduce.arm", str(run_dir / "spec.json")],
                                cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode
        with lock:
            running.pop(spec["name"], None)
            done.append(spec["name"])
        if rc != 0:
            tail = (run_dir / "log.txt").read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"training run {spec['name']} failed (exit {rc}); its log ends:\n{tail}")
        lines = (run_dir / "log.txt").read_text(encoding="utf-8").strip().splitlines()
        log(f"reproduce: [{len(done)}/{len(specs)}] {lines[-1] if lines else spec['name']}")

    stop = threading.Event()

    def monitor() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            with lock:
                now = {name: _last_step(d) for name, d in running.items()}
                finished = list(done)
            total = sum(s["steps"] for s in specs)
            so_far = sum(steps_of[n] for n in finished) + sum(now.values())
            rate = so_far / max(time.time() - t0, 1e-9)
            eta = f"{(total - so_far) / rate:.0f}s" if rate > 0 else "?"
            log(f"reproduce: training {len(finished)}/{len(specs)} runs done; " +
                ", ".join(f"{k} step {v}/{steps_of[k]}" for k, v in sorted(now.items())) +
                f"; {rate:.1f} steps/s, ETA {eta}")

    mon = threading.Thread(target=monitor, daemon=True)
    if progress:
        mon.start()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            # longest first: a long run started last would finish alone on an otherwise idle machine
            for f in [ex.submit(one, s) for s in sorted(specs, key=lambda s: -s["steps"])]:
                f.result()
    finally:
        stop.set()


def seen_by_concept(run_dir: Path, truth: dict, n: int) -> tuple[list[int], int, float, int]:
    """Pairs a run consumed per concept (from its samples/rank-0.tsv), the epochs it reached, the
    English share of its pairs (an image with texts in k languages counts 1/k to each: the
    sampling picks one of its texts uniformly before the keep draw) and all its pairs (noise
    images that curation let through name no concept)."""
    counts = np.zeros(n, dtype=np.int64)
    epochs, english, total = 0, 0.0, 0
    for line in (run_dir / "samples" / "rank-0.tsv").read_text().splitlines():
        _step, epoch, uuid = line.split("\t")
        epochs = max(epochs, int(epoch) + 1)
        t = truth[uuid]
        if t["concept"] >= 0:
            counts[t["concept"]] += 1
        english += t["langs"].count("en") / len(t["langs"])
        total += 1
    return counts.tolist(), epochs, english / max(total, 1), total


def consumption(work: Path, runs: list[dict], truth: dict, n: int) -> None:
    """Each run's consumed pairs (seen_by_concept), added to its eval record."""
    for ev in runs:
        run_dir = work / "runs" / f"{ev['arm']}-s{ev['seed']}"
        ev["seen"], ev["epochs"], ev["english_share"], ev["pairs"] = seen_by_concept(run_dir, truth, n)
        if ARMS[ev["arm"]]["data"] == "english":  # only en.npy: every kept pair's picked text is English
            ev["english_share"] = 1.0


def matched_by_truth(work: Path, truth: dict) -> dict[str, int]:
    """What the curate job's matched images really are: as meant, a text on the wrong image (kept by
    design: no text filter sees it) or a noise text that matched an entry (no-space scripts match
    inside words)."""
    matched = pq.read_table(work / "curate" / "matched", columns=["uuid"]).column("uuid").to_pylist()
    return dict(sorted(Counter("noise" if truth[u]["concept"] < 0 else
                               ("mismatch" if "mismatch" in truth[u]["kinds"] else "ok") for u in matched).items()))


def run(world_cfg: WorldConfig, cfg: ReproduceConfig, spark=None, log=print) -> dict:
    """The whole reproduction; returns the results written to reproduce.json."""
    t_start = time.time()
    # the machine's state, for reading the wall time: other work on the cores slows every step
    machine = {"cpu_count": os.cpu_count(), "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    out = Path(cfg.output).resolve()  # absolute: the training processes run in ROOT, not here
    work = prepare_output(out)
    (out / MARKER).write_text(json.dumps({"world": world_cfg.to_dict(), "reproduce": cfg.to_dict()}, indent=1))
    timings: dict[str, float] = {}

    with pipeline.timed(timings, "world", log):
        world = World(world_cfg, cfg.babel_dir)
        records = world.pool()
        (work / "world.json").write_text(json.dumps(world_spec(world), ensure_ascii=False), encoding="utf-8")
    log(f"reproduce: world of {len(world.concepts)} concepts x {len(world.languages)} languages "
        f"({', '.join(f'{lang}:{LANGUAGES[lang][2]}' for lang in world.languages)}); pool of {len(records):,} "
        f"alt-texts ({sum(r['kind'] == 'noise' for r in records):,} noise)")

    own_spark = spark is None
    with pipeline.timed(timings, "spark_start", log):
        spark = spark or pipeline.build_session()
    try:
        with pipeline.timed(timings, "metadata", log):
            meta = pipeline.build_metadata(spark, world, work, log)
        with pipeline.image_server(world, records, cfg.port, log) as (base, served):
            truth = pipeline.write_pool(records, base, work / "pool", world_cfg.seed)
            with pipeline.timed(timings, "curate", log):
                manifest = pipeline.curate(spark, work, cfg.t_en, world_cfg.seed, log, cfg.progress)
            with pipeline.timed(timings, "download", log):
                dl = pipeline.download(spark, work, cfg.image_size, log, cfg.progress)
            log(f"reproduce: download {dl['succeeded']:,}/{dl['input_rows']:,} images "
                f"({dl['failed']} failed) in {timings['download']} s; the server drew {served[0]:,}")
    finally:
        if own_spark:
            spark.stop()

    with pipeline.timed(timings, "heldout", log):
        n_held = pipeline.write_heldout(world, work / "heldout.parquet", cfg.image_size)
    index = pipeline.entry_index(work, world)

    # one tokenizer for every run: equal model size, whatever data an arm keeps
    from training.tokenizer import load_or_train, shard_texts

    with pipeline.timed(timings, "tokenizer", log):
        texts = shard_texts(str(work / "images"))
        tok = load_or_train(None, cfg.context_length, texts, cfg.vocab_size, save_to=work / "tokenizer.json")
        lengths = [len(tok.hf.encode(t, add_special_tokens=False).ids) + 2 for t in texts]
    truncated = float(np.mean(np.array(lengths) > cfg.context_length))
    log(f"reproduce: tokenizer of {tok.vocab_size} tokens on {len(texts):,} texts "
        f"({truncated:.1%} longer than the context of {cfg.context_length})")

    (work / "train-config.json").write_text(json.dumps(train_config(cfg), indent=1))
    specs = []
    for seed in cfg.seeds:
        for arm in cfg.arms:
            name = f"{arm}-s{seed}"
            run_dir = work / "runs" / name
            run_dir.mkdir(parents=True)
            probs = work / "arms" / arm / "entry_probs"
            if not probs.exists():
                write_arm_probs(arm, work / "curate" / "entry_probs", probs)
            steps = run_steps(cfg, arm)
            spec = {"name": name, "arm": arm, "seed": seed, "steps": steps, "output": str(run_dir), "threads": 1,
                    "world": str(work / "world.json"), "heldout": str(work / "heldout.parquet"),
                    "train_argv": ["--config", str(work / "train-config.json"), "--shards", str(work / "images"),
                                   "--entry-probs", str(probs), "--tokenizer", str(work / "tokenizer.json"),
                                   "--output", str(run_dir), "--seed", str(seed), "--cpu", "--quiet",
                                   "--no-resume", "--log-samples", "--steps", str(steps)]}
            (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
            specs.append(spec)
    jobs = max(1, min(cfg.jobs or (os.cpu_count() or 1), len(specs)))
    log(f"reproduce: {len(specs)} training runs ({len(cfg.arms)} arms x {len(cfg.seeds)} seeds) of {cfg.steps} steps "
        f"x {cfg.batch_size} pairs" + (f" ({run_steps(cfg, 'scaled')} for 'scaled')" if "scaled" in cfg.arms else "")
        + f", {jobs} at a time")
    with pipeline.timed(timings, "training", log):
        run_all(specs, jobs, log, cfg.progress)

    runs = [json.loads((Path(spec["output"]) / "eval.json").read_text(encoding="utf-8")) for spec in specs]
    consumption(work, runs, truth, len(world.concepts))

    pipeline_info = {
        "matched_images_by_truth": matched_by_truth(work, truth),
        "pool": {"records": len(records), "images": len({r["image"] for r in records}),
                 "by_kind": dict(sorted(Counter(r["kind"] for r in records).items())),
                 "by_language": dict(sorted(Counter(r["lang"] for r in records).items()))},
        "metadata": {k: meta[k] for k in ("version", "languages", "entries")},
        "curate": _curate_info(manifest),
        "download": {k: dl[k] for k in ("input_rows", "succeeded", "failed", "failures", "shards")},
        "heldout_images": n_held,
        "tokenizer": {"vocab": tok.vocab_size, "texts": len(texts), "truncated_share": round(truncated, 4)},
        "train_config": train_config(cfg)}
    timings["total"] = round(time.time() - t_start, 1)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    pipeline_info["machine"] = machine
    collected = {"index": index, "pipeline": pipeline_info, "timings": timings, "runs": runs}
    (work / COLLECTED).write_text(json.dumps(collected, ensure_ascii=False), encoding="utf-8")
    return finish(out, world, world_cfg, cfg, collected)


def finish(out: Path, world: World, world_cfg: WorldConfig, cfg: ReproduceConfig, collected: dict) -> dict:
    """analysis + report from what the runs left (also --report-only: the report again, no training)."""
    from training.reproduce import report

    results = analysis.analyse(world, world_cfg, cfg, collected["index"], collected["runs"],
                               pipeline_info=collected["pipeline"], timings=collected["timings"])
    report.write(out, results)
    return results


def report_only(out: Path) -> dict:
    marker = json.loads((out / MARKER).read_text())
    world_cfg, cfg = WorldConfig.from_dict(marker["world"]), ReproduceConfig.from_dict(marker["reproduce"])
    work = out / "work"
    collected = json.loads((work / COLLECTED).read_text(encoding="utf-8"))
    world = World(world_cfg, cfg.babel_dir)
    # what the runs consumed is read again from their sample logs, so a newer report gets its numbers
    truth = pipeline.pool_truth(world.pool(), pipeline.pool_base(work / "pool"))
    consumption(work, collected["runs"], truth, len(world.concepts))
    collected["pipeline"]["matched_images_by_truth"] = matched_by_truth(work, truth)
    return finish(out, world, world_cfg, cfg, collected)


def _curate_info(manifest: dict) -> dict:
    acct = manifest.get("accounting", {})
    return {"stages": {k: {"in": v["in"], "out": v["out"], "rejected": v["rejected"]} for k, v in acct.items()},
            "t_en": manifest.get("config", {}).get("t_en"), "code_version": manifest.get("code_version"),
            "rows": manifest.get("rows", manifest.get("counts"))}


# --- command line ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[WorldConfig, ReproduceConfig, bool]:
    ap = argparse.ArgumentParser(prog="python -m jobs.reproduce", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", metavar="FILE", help='JSON object with "world" and "reproduce" sections')
    ap.add_argument("--report-only", action="store_true", help="write the report again from the runs already in "
                    "--output (no pipeline, no training)")
    config_cli.add_config_arguments(ap, WorldConfig, config_flag=None, set_flag=None, title="world")
    config_cli.add_config_arguments(ap, ReproduceConfig, config_flag=None, set_flag=None, title="reproduce")
    a = ap.parse_args(argv)
    try:
        doc = config_cli.read_config_json(a.config) if a.config else {}
        unknown = set(doc) - {"world", "reproduce"}
        if unknown:
            raise ValueError(f"{a.config}: sections are 'world' and 'reproduce', not {sorted(unknown)}")
        w = config_cli.config_from_args(WorldConfig, a, base=WorldConfig.from_dict(doc.get("world", {})))
        r = config_cli.config_from_args(ReproduceConfig, a, base=ReproduceConfig.from_dict(doc.get("reproduce", {})))
    except (ValueError, TypeError, OSError) as e:
        ap.error(str(e))
    return w, r, a.report_only


def main(argv: list[str] | None = None) -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    world_cfg, cfg, only_report = parse_args(argv)
    try:
        results = report_only(Path(cfg.output)) if only_report else run(world_cfg, cfg)
    except WorldInputError as e:  # a user error: one line, exit 2 (anything else keeps its traceback)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    from training.reproduce import report

    print(report.summary_text(results))
    print(json.dumps(report.headline(results), ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
