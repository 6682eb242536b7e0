"""Train a worldwide CLIP model on Parquet image shards (one CPU for tests, torchrun + DDP on GPUs).

    python -m training.train --config training/configs/tiny.json --output build/train-out
    torchrun --nproc_per_node 8 -m training.train --config training/configs/vit_h14.json \
        --data s3-or-local/root --tokenizer xlmv/tokenizer.json --output runs/h14

This module only wires the parts together: the config (training.config: defaults, a JSON file,
--set, flags), the process group (training.distributed), data and tokenizer, model, optimiser
(training.optim), checkpoints (training.checkpoint), the step loop (training.loop) and the
evaluation (training.evaluate). With no --data, the built-in sample shards are generated first
(build/sample-shards). A run resumes from the newest checkpoint in <output>/checkpoints unless
--no-resume, and reaches the same weights as one uninterrupted run (same world size and worker
count). Outputs: metrics.jsonl, tokenizer.json, checkpoints/step-*.pt, eval.json and report.json
(the machine-readable summary).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch

from curation import storage
from training import evaluate as evaluation
from training.checkpoint import Checkpointer, weights_digest
from training.config import DataConfig, TrainConfig, add_arguments, config_from_args
from training.data import (
    REJECT_REASONS,
    ShardDataset,
    build_loader,
    load_curated,
    load_entry_probs,
    shard_sources,
)
from training.distributed import Dist, all_reduce_sum, init_distributed, teardown
from training.loop import Loop, Tally
from training.loss import ContrastiveLoss
from training.model import CLIP, count_flops_per_sample
from training.optim import build_optimizer, build_scheduler
from training.tokenizer import Tokenizer, load_or_train, shard_texts
from training.transforms import ImageTransform

DEFAULT_SAMPLE_ROOT = "build/sample-shards"
USER_ERROR_EXIT = 2  # as the curate, download and metadata jobs


class UserError(ValueError):
    """A run that cannot start as asked (its data contradicts its flags): `main` prints it as one
    line and exits USER_ERROR_EXIT instead of a traceback."""


# --- data and tokenizer ------------------------------------------------------------------------


def resolve_data(cfg: DataConfig, d: Dist, sample_root: str) -> dict:
    """Where images, entry_probs, curated and heldout live; generate the sample shards when none given."""
    root = cfg.root
    if cfg.shards is None and root is None:
        root = sample_root
        if d.main:
            from training import sample_shards

            manifest = sample_shards.generate(root)
            print(f"sample shards ready at {root}: {manifest['rows']}", flush=True)
        d.barrier()
    root = str(root).rstrip("/") if root else None

    def under(sub):
        """root/sub when it exists (a local path, or an s3:// prefix with objects), else None."""
        return f"{root}/{sub}" if root is not None and storage.exists(f"{root}/{sub}") else None

    paths = {
        "images": cfg.shards or f"{root}/images",
        "entry_probs": cfg.entry_probs or under("entry_probs"),
        "curated": cfg.curated or under("curated"),
        "heldout": cfg.heldout or under("heldout"),
        "concepts": under("concepts.json"),
    }
    if cfg.mode == "online" and not paths["entry_probs"]:
        raise UserError("online curation needs entry probabilities: pass --entry-probs DIR (entry_probs/<lang>.npy) "
                        "or a --data root that contains entry_probs/, or use --mode offline with --curated")
    if cfg.mode == "offline" and not paths["curated"]:
        raise UserError("offline mode needs the curated/ texts: pass --curated DIR or a --data root with curated/")
    if cfg.mode == "online":
        check_online_sources(paths["images"], d)
    return paths


def check_online_sources(images_spec, d: Dist) -> None:
    """Refuse online curation over shards downloaded from a curate run's curated/; warn where the
    shards do not say what they were built from.

    curated/ is already one draw of the keep probabilities. Curating it online draws them again
    every epoch: epoch 0 passes everything (the same hash), later epochs keep about sum(p^2) of it
    and down-weight the head entries twice. The paper resamples the matched pool instead.
    """
    sources = shard_sources(images_spec)
    curated = {k: v for k, v in sources.items() if v is not None and v["source"] == "curated"}
    if curated:
        where, record = next(iter(curated.items()))
        run = (record.get("curate_run") or {}).get("output")
        offline = f"--mode offline --curated {storage.join(run, 'curated')}" if run else "--mode offline --curated DIR"
        raise UserError(f"{where} holds images downloaded from a curate run's curated/ (already sampled with the "
                        f"entry probabilities), so online curation would apply them a second time: download the run's "
                        f"matched/ for online curation, or train these shards offline ({offline})")
    unknown = [k for k, v in sources.items() if v is None]
    if unknown and d.main:
        print(f"train: warning: {len(unknown)} shard director{'y' if len(unknown) == 1 else 'ies'} ({unknown[0]}"
              f"{', ...' if len(unknown) > 1 else ''}) record no source (a download from before sources were "
              "recorded, or shards of your own); if they came from curated/, online curation applies the keep "
              "probabilities twice: download matched/, or train offline with --mode offline",
              file=sys.stderr, flush=True)


def prepare_tokenizer(cfg: TrainConfig, images_spec, out: Path, d: Dist) -> Tokenizer:
    """The run's tokenizer, saved as <output>/tokenizer.json: the configured file, or a BPE that rank 0
    trains on the shards' texts (once: a resumed run reuses it) while the other ranks wait."""
    tok_file = out / "tokenizer.json"
    ctx = cfg.model.text.context_length
    if cfg.tokenizer.path:
        tokenizer = load_or_train(cfg.tokenizer.path, ctx)
        if d.main:
            tokenizer.save(tok_file)
        return tokenizer
    if d.main and not tok_file.exists():
        load_or_train(None, ctx, shard_texts(images_spec), cfg.tokenizer.vocab_size, save_to=tok_file)
    d.barrier()
    return load_or_train(str(tok_file), ctx)


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    """(the invocation flags, the training config); argparse's usage error when the config is invalid."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, help="run directory: checkpoints, metrics, report")
    ap.add_argument("--sample-root", default=DEFAULT_SAMPLE_ROOT, help="where to generate the sample shards")
    ap.add_argument("--stop-after", type=int, help="save a checkpoint and exit after this step (as if killed)")
    ap.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --output")
    ap.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is present")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--log-samples", action="store_true",
                    help="write the (step, epoch, uuid) of every consumed sample to <output>/samples/rank-<r>.tsv")
    add_arguments(ap)
    a = ap.parse_args(argv)
    try:
        return a, config_from_args(a)
    except ValueError as e:
        ap.error(str(e))


def train(argv: list[str] | None = None) -> dict:
    a, cfg = parse_args(argv)
    d = init_distributed(force_cpu=a.cpu)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(a.output)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()
    t_start = time.time()

    paths = resolve_data(cfg.data, d, a.sample_root)
    tokenizer = prepare_tokenizer(cfg, paths["images"], out, d)
    if cfg.model.text.vocab_size is None:
        cfg.model.text.vocab_size = tokenizer.vocab_size
    elif tokenizer.vocab_size > cfg.model.text.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, model vocab_size is {cfg.model.text.vocab_size}")

    model = CLIP(cfg.model, pad_id=tokenizer.pad_id, init_seed=cfg.run.seed).to(d.device)
    model.set_grad_checkpointing(cfg.run.grad_checkpointing)
    if d.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    fwd = model if d.world_size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    o = cfg.optim
    optimizer = build_optimizer(model, o, fused=d.device.type == "cuda")
    scheduler = build_scheduler(optimizer, o)
    checkpoints = Checkpointer(out, model, optimizer, scheduler, cfg, d)
    step, positions = (0, {}) if a.no_resume else checkpoints.resume()

    dataset = ShardDataset(
        paths["images"], mode=cfg.data.mode,
        entry_probs=load_entry_probs(paths["entry_probs"]) if cfg.data.mode == "online" else None,
        curated=load_curated(paths["curated"]) if cfg.data.mode == "offline" else None,
        seed=cfg.run.seed, rank=d.rank, world_size=d.world_size, shuffle_buffer=cfg.data.shuffle_buffer,
        transform=ImageTransform(cfg.model.vision.image_size, train=True, scale=tuple(cfg.data.crop_scale)),
        tokenizer=tokenizer, positions=positions)
    stop_at = min(o.steps, a.stop_after) if a.stop_after is not None else o.steps
    use_bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and d.device.type == "cuda")
    with ExitStack() as files:
        loop = Loop(model, fwd, optimizer, scheduler, ContrastiveLoss(local_loss=cfg.run.local_loss), d, o, cfg.run,
                    autocast=lambda: torch.autocast(d.device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext(),
                    train_flops_per_sample=count_flops_per_sample(cfg.model)["train"], checkpoint=checkpoints.save)
        if d.main:
            loop.metrics = files.enter_context(open(out / "metrics.jsonl", "a", encoding="utf-8"))
            if not a.quiet:
                from tqdm import tqdm

                loop.progress = files.enter_context(tqdm(total=o.steps, initial=step, desc="train", unit="step",
                                                         file=sys.stdout, mininterval=2))
        if a.log_samples:
            (out / "samples").mkdir(parents=True, exist_ok=True)
            loop.sample_log = files.enter_context(open(out / "samples" / f"rank-{d.rank}.tsv", "a", encoding="utf-8"))
        batches = iter(build_loader(dataset, o.batch_size, cfg.data.workers, steps_done=step,
                                    pin_memory=d.device.type == "cuda")) if step < stop_at else iter(())
        tally = loop.train(batches, step, stop_at, positions)
    if d.world_size > 1:  # every rank records a digest of its weights: DDP replicas must agree bit for bit
        (out / "ranks").mkdir(parents=True, exist_ok=True)
        (out / "ranks" / f"rank-{d.rank}.json").write_text(json.dumps(
            {"rank": d.rank, "step": tally.step, "weights_sha256": weights_digest(model)}))

    report = make_report(cfg, d, out, tally, start_step=step, seconds=time.time() - t_start)
    if tally.step >= o.steps and cfg.run.evaluate and paths["heldout"] and d.main:
        concepts = json.loads(storage.read_bytes(paths["concepts"])) if paths["concepts"] else None
        res = evaluation.evaluate(model, tokenizer, paths["heldout"], cfg.model.vision.image_size, d.device, concepts)
        (out / "eval.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))
        report["eval"] = res
        print(evaluation.format_report(res), flush=True)
    if d.main:
        (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        print(summary_line(report), flush=True)
        print(json.dumps({k: v for k, v in report.items() if k != "eval"}), flush=True)
    # the DDP wrapper goes first (see training.distributed.teardown): its reducer holds the group
    del loop, fwd
    teardown(d)
    return report


def make_report(cfg: TrainConfig, d: Dist, out: Path, tally: Tally, start_step: int, seconds: float) -> dict:
    """The run's summary: records in / out / rejected by reason (summed over ranks), steps, losses.

    The losses are those of the whole run across resumes when rank 0 has its metrics.jsonl.
    """
    totals = all_reduce_sum(torch.cat([torch.tensor([tally.images]), tally.dropped]).to(d.device), d).cpu().tolist()
    data = {"images_out": totals[0], "images_rejected": dict(zip(REJECT_REASONS, totals[1:], strict=True))}
    data["images_in"] = data["images_out"] + sum(totals[1:])
    report = {"data": data, "steps": tally.step, "start_step": start_step, "finished": tally.step >= cfg.optim.steps,
              "world_size": d.world_size, "first_loss": tally.first_loss or 0.0, "last_loss": tally.last_loss or 0.0,
              "seconds": round(seconds, 1), "output": str(out)}
    if d.main and (out / "metrics.jsonl").exists():
        logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
        logged = [r for r in logged if r["step"] <= tally.step]
        if logged:
            report["first_loss"], report["last_loss"] = logged[0]["loss"], logged[-1]["loss"]
    return report


def summary_line(report: dict) -> str:
    line = (f"trained steps {report['start_step']}->{report['steps']} in {report['seconds']}s on "
            f"{report['world_size']} process(es); loss {report['first_loss']:.3f} -> {report['last_loss']:.3f}")
    if "eval" in report:
        r1 = {k: round(v["i2t_r1"], 3) for k, v in report["eval"]["retrieval"].items()}
        line += f"; held-out i2t R@1 per language {r1}"
    return line


def main(argv: list[str] | None = None) -> int:
    try:
        train(argv)
    except UserError as e:
        print(f"train: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
