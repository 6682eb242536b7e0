"""Train a worldwide CLIP model on Parquet image shards (one CPU for tests, torchrun + DDP on GPUs).

    python -m training.train --config training/configs/tiny.json --output build/train-out
    torchrun --nproc_per_node 8 -m training.train --config training/configs/vit_h14.json \
        --data s3-or-local/root --tokenizer xlmv/tokenizer.json --output runs/h14

With no --data, the built-in sample shards are generated first (build/sample-shards). A run
resumes from the newest checkpoint in <output>/checkpoints unless --no-resume: model,
optimiser, scheduler, the data position of every (rank, worker) stream and the RNG states are
restored, so stopping at step k and resuming reaches the same weights at step n as one
uninterrupted run (same world size and worker count). Outputs: metrics.jsonl, tokenizer.json,
checkpoints/step-*.pt, eval.json and report.json (the machine-readable summary).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from training import evaluate as evaluation
from training.data import (
    REJECT_REASONS,
    ShardDataset,
    build_loader,
    load_curated,
    load_entry_probs,
    positions_from_batch,
)
from training.loss import ContrastiveLoss
from training.model import CLIP, ModelConfig, count_flops_per_sample, load_config, no_weight_decay
from training.tokenizer import load_or_train
from training.transforms import ImageTransform

DEFAULT_SAMPLE_ROOT = "build/sample-shards"


@dataclass
class DataConfig:
    shards: str | None = None  # images/ dir or glob; None: built-in sample shards
    root: str | None = None  # a root with images/, entry_probs/, curated/, heldout/ (overridden by the rest)
    mode: str = "online"  # online curation per epoch, or offline over curated/
    entry_probs: str | None = None
    curated: str | None = None
    heldout: str | None = None
    shuffle_buffer: int = 2000
    workers: int = 2
    crop_scale: tuple = (0.9, 1.0)


@dataclass
class OptimConfig:
    steps: int = 10000
    batch_size: int = 256  # per rank
    lr: float = 5e-4
    min_lr_ratio: float = 0.0
    warmup_steps: int = 2000
    weight_decay: float = 0.2
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0  # <= 0: off


@dataclass
class RunConfig:
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    grad_checkpointing: bool = False
    local_loss: bool = True
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    threads: int | None = None  # torch intra-op threads on CPU
    evaluate: bool = True


@dataclass
class TokenizerConfig:
    path: str | None = None  # a tokenizer.json; None: train a BPE on the training texts
    vocab_size: int = 2000


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)} - {"name", "description"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")

        def sub(klass, key):
            vals = dict(d.get(key, {}))
            bad = set(vals) - {f.name for f in fields(klass)}
            if bad:
                raise ValueError(f"unknown keys in config section {key!r}: {sorted(bad)}")
            return klass(**vals)

        return cls(model=ModelConfig.from_dict(d.get("model", {})), data=sub(DataConfig, "data"),
                   optim=sub(OptimConfig, "optim"), run=sub(RunConfig, "run"),
                   tokenizer=sub(TokenizerConfig, "tokenizer"))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "data": asdict(self.data), "optim": asdict(self.optim),
                "run": asdict(self.run), "tokenizer": asdict(self.tokenizer)}


# --- distributed helpers ---------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()


def init_distributed(force_cpu: bool = False) -> Dist:
    """torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK) -> process group: NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not force_cpu
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    return Dist(rank, world, local, device)


def all_gather_object(obj, d: Dist) -> list:
    if d.world_size == 1:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


# --- optimiser and schedule --------------------------------------------------------------------


def build_optimizer(model: torch.nn.Module, o: OptimConfig, fused: bool = False) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if no_weight_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, **kw)


class WarmupCosine:
    """lr multiplier: linear warmup from 0, then cosine to min_lr_ratio at the last step (picklable)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_paths(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*.pt"))


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # readers never see a half-written checkpoint


def rng_state(d: Dist) -> dict:
    st = {"cpu": torch.get_rng_state()}
    if d.device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(d.device)
    return st


def set_rng_state(st: dict, d: Dist) -> None:
    torch.set_rng_state(st["cpu"])
    if d.device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], d.device)


def weights_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- data wiring ----------------------------------------------------------------------------------


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
        """root/sub when it exists (local path or s3:// prefix with objects), else None."""
        if root is None:
            return None
        uri = f"{root}/{sub}"
        if uri.startswith("s3://"):
            from curation import storage

            return uri if storage.list_files(uri) else None
        return uri if os.path.exists(uri) else None

    paths = {
        "images": cfg.shards or f"{root}/images",
        "entry_probs": cfg.entry_probs or under("entry_probs"),
        "curated": cfg.curated or under("curated"),
        "heldout": cfg.heldout or under("heldout"),
        "concepts": under("concepts.json"),
    }
    if cfg.mode == "online" and not paths["entry_probs"]:
        raise ValueError("online curation needs entry probabilities: pass --entry-probs DIR (entry_probs/<lang>.npy) "
                         "or a --data root that contains entry_probs/, or use --mode offline with --curated")
    if cfg.mode == "offline" and not paths["curated"]:
        raise ValueError("offline mode needs the curated/ texts: pass --curated DIR or a --data root with curated/")
    return paths


def training_texts(images_spec, limit: int = 200_000) -> list[str]:
    """Texts of the image shards (every matched text), the corpus for a trained tokenizer."""
    from training.data import list_parquet, parquet_file

    out: list[str] = []
    for p in list_parquet(images_spec):
        for texts in parquet_file(p).read(columns=["texts"]).column("texts").to_pylist():
            out.extend(t["text"] for t in (texts or []))
            if len(out) >= limit:
                return out
    return out


# --- the run -----------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Train a worldwide CLIP model (torchrun-compatible).")
    ap.add_argument("--config", required=True, help="JSON config (training/configs/*.json)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--data", help="root with images/, entry_probs/, curated/, heldout/")
    ap.add_argument("--shards", help="images/ directory or glob (overrides --data for images)")
    ap.add_argument("--sample-root", default=DEFAULT_SAMPLE_ROOT, help="where to generate the sample shards")
    ap.add_argument("--entry-probs", help="entry_probs/ directory of the curate job (online mode)")
    ap.add_argument("--curated", help="curated/ directory of the curate job (offline mode)")
    ap.add_argument("--heldout", help="held-out image shards for retrieval evaluation")
    ap.add_argument("--mode", choices=["online", "offline"])
    ap.add_argument("--tokenizer", help="tokenizer.json to load instead of training one")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int, help="per rank")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup-steps", type=int)
    ap.add_argument("--workers", type=int, help="DataLoader workers per rank")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--global-loss", action="store_true", help="full W*b x W*b logits instead of local loss")
    ap.add_argument("--checkpoint-every", type=int)
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--stop-after", type=int, help="save a checkpoint and exit after this step (as if killed)")
    ap.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --output")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is present")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--log-samples", action="store_true",
                    help="write the (epoch, uuid) of every consumed sample to <output>/samples/rank-<r>.tsv (audits)")
    return ap.parse_args(argv)


def apply_overrides(cfg: TrainConfig, a) -> TrainConfig:
    if a.data:
        cfg.data.root = a.data
    for attr, sect, key in [("shards", cfg.data, "shards"), ("mode", cfg.data, "mode"),
                            ("entry_probs", cfg.data, "entry_probs"), ("curated", cfg.data, "curated"),
                            ("heldout", cfg.data, "heldout"),
                            ("tokenizer", cfg.tokenizer, "path"), ("steps", cfg.optim, "steps"),
                            ("batch_size", cfg.optim, "batch_size"), ("lr", cfg.optim, "lr"),
                            ("warmup_steps", cfg.optim, "warmup_steps"), ("workers", cfg.data, "workers"),
                            ("seed", cfg.run, "seed"), ("precision", cfg.run, "precision"),
                            ("checkpoint_every", cfg.run, "checkpoint_every"), ("log_every", cfg.run, "log_every"),
                            ("threads", cfg.run, "threads")]:
        v = getattr(a, attr)
        if v is not None:
            setattr(sect, key, v)
    if a.grad_checkpointing:
        cfg.run.grad_checkpointing = True
    if a.global_loss:
        cfg.run.local_loss = False
    if a.no_eval:
        cfg.run.evaluate = False
    return cfg


def train(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    cfg = apply_overrides(TrainConfig.from_dict(load_config(a.config)), a)
    d = init_distributed(force_cpu=a.cpu)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(a.output)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()
    t_start = time.time()

    # data locations and tokenizer (rank 0 prepares, the others wait and load)
    paths = resolve_data(cfg.data, d, a.sample_root)
    tok_file = out / "tokenizer.json"
    ctx = cfg.model.text.context_length
    if cfg.tokenizer.path:
        tokenizer = load_or_train(cfg.tokenizer.path, ctx)
        if d.main:
            tokenizer.save(tok_file)
    else:
        if d.main and not tok_file.exists():
            load_or_train(None, ctx, training_texts(paths["images"]), cfg.tokenizer.vocab_size, save_to=tok_file)
        d.barrier()
        tokenizer = load_or_train(str(tok_file), ctx)
    if cfg.model.text.vocab_size is None:
        cfg.model.text.vocab_size = tokenizer.vocab_size
    elif tokenizer.vocab_size > cfg.model.text.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, model vocab_size is {cfg.model.text.vocab_size}")

    # model, optimiser, schedule
    model = CLIP(cfg.model, pad_id=tokenizer.pad_id, init_seed=cfg.run.seed).to(d.device)
    model.set_grad_checkpointing(cfg.run.grad_checkpointing)
    use_bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and d.device.type == "cuda")
    if d.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ddp = None
    if d.world_size > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    fwd = ddp if ddp is not None else model
    o = cfg.optim
    optimizer = build_optimizer(model, o, fused=d.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(o.warmup_steps, o.steps, o.min_lr_ratio))
    loss_fn = ContrastiveLoss(local_loss=cfg.run.local_loss)

    # resume
    step, positions = 0, {}
    ckpts = [] if a.no_resume else checkpoint_paths(out)
    if ckpts:
        ck = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        layout = ck["layout"]
        if layout != {"world_size": d.world_size, "workers": cfg.data.workers}:
            raise RuntimeError(f"checkpoint {ckpts[-1]} was written with {layout}; exact resume needs the same "
                               f"world size and workers (now {d.world_size}, {cfg.data.workers})")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        step, positions = int(ck["step"]), {int(k): tuple(v) for k, v in ck["positions"].items()}
        set_rng_state(ck["rng"][d.rank], d)
        if d.main:
            print(f"resumed from {ckpts[-1]} at step {step}", flush=True)

    transform = ImageTransform(cfg.model.vision.image_size, train=True, scale=tuple(cfg.data.crop_scale))
    dataset = ShardDataset(
        paths["images"], mode=cfg.data.mode,
        entry_probs=load_entry_probs(paths["entry_probs"]) if cfg.data.mode == "online" else None,
        curated=load_curated(paths["curated"]) if cfg.data.mode == "offline" else None,
        seed=cfg.run.seed, rank=d.rank, world_size=d.world_size, shuffle_buffer=cfg.data.shuffle_buffer,
        transform=transform, tokenizer=tokenizer, positions=positions)
    loader = build_loader(dataset, o.batch_size, cfg.data.workers, steps_done=step,
                          pin_memory=d.device.type == "cuda")

    def state(at_step: int) -> dict:
        all_pos = {}
        for p in all_gather_object(positions, d):
            all_pos.update(p)
        rngs = all_gather_object(rng_state(d), d)
        return {"step": at_step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "positions": {int(k): list(v) for k, v in all_pos.items()},
                "rng": rngs, "layout": {"world_size": d.world_size, "workers": cfg.data.workers},
                "model_config": cfg.model.to_dict(), "config": json.dumps(cfg.to_dict())}

    def checkpoint(at_step: int) -> None:
        st = state(at_step)  # collective: every rank takes part
        if d.main:
            save_checkpoint(out / "checkpoints" / f"step-{at_step:08d}.pt", st)
            for old in checkpoint_paths(out)[:-max(1, cfg.run.keep_checkpoints)]:
                old.unlink(missing_ok=True)
        d.barrier()

    flops = count_flops_per_sample(cfg.model)
    metrics_f = open(out / "metrics.jsonl", "a", encoding="utf-8") if d.main else None
    bar = None
    if d.main and not a.quiet:
        from tqdm import tqdm

        bar = tqdm(total=o.steps, initial=step, desc="train", unit="step", file=sys.stdout, mininterval=2)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 and d.device.type == "cuda" else (
        torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else nullcontext())
    first_losses, recent, window_losses = [], [], []  # mean loss of the first and the last log window
    stop_at = min(o.steps, a.stop_after) if a.stop_after is not None else o.steps
    t_window, n_window = time.time(), 0
    sample_log = None
    if a.log_samples:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        sample_log = open(out / "samples" / f"rank-{d.rank}.tsv", "a", encoding="utf-8")
    consumed, dropped = 0, torch.zeros(len(REJECT_REASONS), dtype=torch.long)
    start_step = step
    it = iter(loader) if step < stop_at else None
    model.train()
    while step < stop_at:
        batch = next(it)
        images = batch["image"].to(d.device, non_blocking=True)
        texts = batch["text"].to(d.device, non_blocking=True)
        with autocast:
            img_f, txt_f, scale = fwd(images, texts)
        loss = loss_fn(img_f, txt_f, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip if o.grad_clip > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        step += 1
        if sample_log is not None:
            sample_log.writelines(f"{step}\t{e}\t{u}\n" for e, u in zip(batch["epoch"].tolist(), batch["uuid"], strict=True))
        for w, pos in positions_from_batch(batch).items():
            positions[w] = max(positions.get(w, pos), pos)
        n_window += images.shape[0]
        consumed += images.shape[0]
        dropped += batch["dropped"].sum(0)
        window_losses.append(loss.detach())  # no host sync per step (matters on GPUs)
        if step % cfg.run.log_every == 0 or step == stop_at:
            t = torch.stack(window_losses).float().mean().reshape(1)
            if d.world_size > 1:
                dist.all_reduce(t)
                t /= d.world_size
            lv = float(t)
            if not first_losses:
                first_losses.append(lv)
            recent = [lv]
            window_losses = []
            grad_norm = float(grad_norm)
            dt = time.time() - t_window
            sps = n_window * d.world_size / max(dt, 1e-9)
            rec = {"step": step, "loss": round(lv, 5), "lr": scheduler.get_last_lr()[0],
                   "logit_scale": round(float(model.logit_scale.detach().exp()), 4), "grad_norm": round(grad_norm, 4),
                   "samples_per_s": round(sps, 1), "epoch": max(e for e, _ in positions.values()),
                   "achieved_tflops": round(sps * flops["train"] / 1e12, 4)}
            t_window, n_window = time.time(), 0
            if d.main:
                metrics_f.write(json.dumps(rec) + "\n")
                metrics_f.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.3f}", lr=f"{rec['lr']:.2e}", sps=f"{sps:.0f}")
        if bar is not None:
            bar.update(1)
        if step % cfg.run.checkpoint_every == 0 or step == stop_at:
            checkpoint(step)
    if bar is not None:
        bar.close()
    if metrics_f is not None:
        metrics_f.close()
    if sample_log is not None:
        sample_log.close()
    if d.world_size > 1:  # every rank records a digest of its weights: DDP replicas must agree bit for bit
        (out / "ranks").mkdir(parents=True, exist_ok=True)
        (out / "ranks" / f"rank-{d.rank}.json").write_text(json.dumps(
            {"rank": d.rank, "step": step, "weights_sha256": weights_digest(model)}))

    totals = torch.cat([torch.tensor([consumed]), dropped]).to(d.device)
    if d.world_size > 1:
        dist.all_reduce(totals)
    totals = totals.cpu().tolist()
    data_report = {"images_out": totals[0], "images_rejected": dict(zip(REJECT_REASONS, totals[1:], strict=True))}
    data_report["images_in"] = data_report["images_out"] + sum(totals[1:])
    report = {"data": data_report, "steps": step, "start_step": start_step, "finished": step >= o.steps, "world_size": d.world_size,
              "first_loss": sum(first_losses) / max(1, len(first_losses)),
              "last_loss": sum(recent) / max(1, len(recent)), "seconds": round(time.time() - t_start, 1),
              "output": str(out)}
    if step >= o.steps and cfg.run.evaluate and paths["heldout"] and d.main:
        concepts = None
        if paths["concepts"]:
            from curation import storage

            concepts = json.loads(storage.read_bytes(paths["concepts"]))
        res = evaluation.evaluate(model, tokenizer, paths["heldout"], cfg.model.vision.image_size, d.device, concepts)
        (out / "eval.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))
        report["eval"] = res
        print(evaluation.format_report(res), flush=True)
    if d.main and (out / "metrics.jsonl").exists():  # whole-run view, across resumes
        logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
        logged = [r for r in logged if r["step"] <= step]
        if logged:
            report["first_loss"], report["last_loss"] = logged[0]["loss"], logged[-1]["loss"]
    if d.main:
        (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        summary = (f"trained steps {start_step}->{step} of {o.steps} in {report['seconds']}s on {d.world_size} "
                   f"process(es); "
                   f"loss {report['first_loss']:.3f} -> {report['last_loss']:.3f}")
        if "eval" in report:
            r1 = {k: round(v["i2t_r1"], 3) for k, v in report["eval"]["retrieval"].items()}
            summary += f"; held-out i2t R@1 per language {r1}"
        print(summary, flush=True)
        print(json.dumps({k: v for k, v in report.items() if k != "eval"}), flush=True)
    d.barrier()
    if d.world_size > 1:
        dist.destroy_process_group()
    return report


def main(argv: list[str] | None = None) -> None:
    train(argv)


if __name__ == "__main__":
    main()
