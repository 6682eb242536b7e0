"""Training throughput: samples/s of a train step, and model FLOP utilisation (MFU) on CUDA.

    python bench/train.py                                   # tiny config on CPU (+ the data pipeline)
    python bench/train.py --config training/configs/vit_b16.json --batch-size 256   # GPU, bf16 autocast

Measures (1) the compute-only train step (forward, contrastive loss, backward, AdamW) on
synthetic tensors and (2) on CPU with the sample shards, the same step fed by the real data
pipeline (online curation, PNG decode, transforms, tokenizer), and prints the ratio of the two
from this one run. FLOPs are counted analytically (training.model.count_flops_per_sample:
matmuls, 2 FLOPs per multiply-add, training = 3x forward); MFU = achieved FLOP/s divided by
the device's dense bf16 peak (table below, or --peak-tflops), which is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.loss import ContrastiveLoss  # noqa: E402
from training.model import CLIP, count_flops_per_sample  # noqa: E402
from training.optim import build_optimizer  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
                    "L40S": 362.0, "A10": 125.0, "V100": 125.0}


def peak_tflops(name: str) -> tuple[float | None, str]:
    for key, v in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            if key == "H100" and "pcie" in name.lower():
                return PEAK_BF16_TFLOPS["H100 PCIe"], "H100 PCIe"
            return v, key
    return None, "unknown"


def synthetic_step_rate(model, cfg, batch, steps, warmup, device, bf16, grad_ckpt) -> float:
    model.set_grad_checkpointing(grad_ckpt)
    opt = build_optimizer(model, cfg.optim, fused=device.type == "cuda")
    loss_fn = ContrastiveLoss()
    g = torch.Generator(device="cpu").manual_seed(0)
    v, t = cfg.model.vision, cfg.model.text
    images = torch.randn(batch, 3, v.image_size, v.image_size, generator=g).to(device)
    tokens = torch.randint(4, t.vocab_size, (batch, t.context_length), generator=g).to(device)
    ac = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step():
        with ac:
            i, x, s = model(images, tokens)
        loss = loss_fn(i, x, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def pipeline_step_rate(cfg, model, batch, steps, warmup, workers, sample_root, out_dir) -> float:
    """Samples/s of real train steps fed by the data pipeline on the sample shards (CPU)."""
    from training import sample_shards
    from training.data import ShardDataset, build_loader, load_entry_probs
    from training.tokenizer import load_or_train
    from training.transforms import ImageTransform

    sample_shards.generate(sample_root)
    tok = load_or_train(None, cfg.model.text.context_length, sample_shards.sample_texts(sample_root),
                        cfg.tokenizer.vocab_size)
    ds = ShardDataset(Path(sample_root) / "images", entry_probs=load_entry_probs(Path(sample_root) / "entry_probs"),
                      shuffle_buffer=cfg.data.shuffle_buffer,
                      transform=ImageTransform(cfg.model.vision.image_size, True), tokenizer=tok)
    it = iter(build_loader(ds, batch, workers))
    opt = build_optimizer(model, cfg.optim)
    loss_fn = ContrastiveLoss()

    def step():
        b = next(it)
        i, x, s = model(b["image"], b["text"].clamp(max=cfg.model.text.vocab_size - 1))
        loss = loss_fn(i, x, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "training/configs/tiny.json"))
    ap.add_argument("--batch-size", type=int, help="default: the config's per-rank batch")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, help="CPU threads (default: the config's)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for the pipeline measurement")
    ap.add_argument("--peak-tflops", type=float, help="override the assumed dense bf16 peak of the GPU")
    ap.add_argument("--vocab-size", type=int, help="override the text vocabulary (smoke runs of big configs on CPU)")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the data-pipeline measurement")
    ap.add_argument("--sample-root", default=str(ROOT / "build/sample-shards"))
    a = ap.parse_args(argv)

    cfg = TrainConfig.from_dict(json.loads(Path(a.config).read_text()))
    if a.vocab_size:
        cfg.model.text.vocab_size = a.vocab_size
    if cfg.model.text.vocab_size is None:
        cfg.model.text.vocab_size = cfg.tokenizer.vocab_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = a.threads or cfg.run.threads
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = a.precision == "bf16" or (a.precision == "auto" and device.type == "cuda")
    batch = a.batch_size or cfg.optim.batch_size
    flops = count_flops_per_sample(cfg.model)
    model = CLIP(cfg.model).to(device)
    model.train()
    sps = synthetic_step_rate(model, cfg, batch, a.steps, a.warmup, device, bf16, a.grad_checkpointing)
    achieved = sps * flops["train"] / 1e12
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    res = {"config": Path(a.config).name, "device": dev_name, "batch": batch, "precision": "bf16" if bf16 else "fp32",
           "grad_checkpointing": a.grad_checkpointing, "train_gflops_per_sample": round(flops["train"] / 1e9, 3),
           "samples_per_s": round(sps, 1), "achieved_tflops": round(achieved, 4)}
    print(f"config {res['config']} on {dev_name}: batch {batch}, {res['precision']}, "
          f"{res['train_gflops_per_sample']} GFLOP per sample per train step (analytic, 3x forward)")
    print(f"compute-only train step: {sps:.1f} samples/s = {achieved:.3f} TFLOP/s achieved")
    if device.type == "cuda":
        peak, which = (a.peak_tflops, "--peak-tflops") if a.peak_tflops else peak_tflops(dev_name)
        if peak:
            res.update(peak_tflops=peak, peak_source=which, mfu=round(achieved / peak, 4))
            print(f"MFU {100 * achieved / peak:.1f}% (peak assumption: {peak} TFLOP/s dense bf16, {which})")
        else:
            print(f"MFU: unknown peak for {dev_name!r}; pass --peak-tflops")
    else:
        print("MFU: reported on CUDA devices only (no meaningful CPU peak)")
    if device.type == "cpu" and not a.no_pipeline:
        model_p = CLIP(cfg.model)
        model_p.train()
        psps = pipeline_step_rate(cfg, model_p, batch, a.steps, a.warmup, a.workers, a.sample_root, None)
        res.update(pipeline_samples_per_s=round(psps, 1), pipeline_over_compute=round(psps / sps, 3))
        print(f"train step fed by the data pipeline ({a.workers} worker): {psps:.1f} samples/s "
              f"= {psps / sps:.2f}x the compute-only rate")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
