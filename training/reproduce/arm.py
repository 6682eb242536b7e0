"""One training run of the comparison (an arm and a seed): training.train, then zero-shot scoring.

    python -m jobs.reproduce.arm RUN_DIR/spec.json

The orchestrator (jobs.reproduce) starts one process per run, a few at a time, so
runs use the cores in parallel and each keeps torch at one thread. The spec names the
trainer's argv (its own config file, shards, entry_probs, tokenizer, seed), the held-out images
and the world's class names and prompts. The run directory gets the trainer's usual outputs
(metrics.jsonl, report.json, checkpoints/, samples/rank-0.tsv: every consumed (step, epoch,
uuid)) and eval.json: per language top-1 over all concepts and each concept's accuracy.

Scoring uses only training.evaluate's encode_images and zero_shot_classifier (CLIP's recipe:
a class is the normalised mean of its prompts' embeddings).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

ARMS = {
    "raw": {"data": "worldwide", "curation": "raw",
            "label": "worldwide, raw pool",
            "what": "every matched image every epoch (entry probabilities 1): the pool's own long tail"},
    "balanced": {"data": "worldwide", "curation": "balanced",
                 "label": "worldwide, balanced",
                 "what": "online curation with the curate job's entry_probs: a fresh balanced sample each epoch"},
    "english": {"data": "english", "curation": "balanced",
                "label": "English only, balanced",
                "what": "the same online curation with only en.npy: a text in another language is never kept"},
    # not a default arm: more seen pairs on purpose (the paper's remedy for the curse, 2.3x at ViT-H/14)
    "scaled": {"data": "worldwide", "curation": "balanced", "scaled": True,
               "label": "worldwide, balanced, scaled pairs",
               "what": "the balanced arm with scaled_pairs times the steps (more seen pairs, same model)"},
}


def load_model(run_dir: Path, device: torch.device):
    """(model in eval mode, tokenizer) of a finished run: its newest checkpoint and tokenizer.json."""
    from training.model import CLIP, ModelConfig
    from training.tokenizer import Tokenizer

    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    if not ckpts:
        raise FileNotFoundError(f"no checkpoint under {run_dir}/checkpoints")
    ck = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    cfg = ModelConfig.from_dict(ck["model_config"])
    tok = Tokenizer(run_dir / "tokenizer.json", cfg.text.context_length)
    model = CLIP(cfg, pad_id=tok.pad_id)
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), tok, cfg, int(ck["step"])


@torch.no_grad()
def zero_shot(run_dir: Path, heldout: Path, world: dict, device: torch.device | None = None) -> dict:
    """Per language: top-1 over every concept of the world, and each concept's accuracy."""
    from training.evaluate import encode_images, zero_shot_classifier
    from training.transforms import ImageTransform

    device = device or torch.device("cpu")
    model, tok, cfg, step = load_model(run_dir, device)
    t = pq.read_table(heldout)
    labels = np.asarray(t.column("concept").to_pylist())
    feats = encode_images(model, t.column("image").to_pylist(), ImageTransform(cfg.vision.image_size, train=False),
                          device).cpu()
    n = len(world["concepts"])
    per_class = np.bincount(labels, minlength=n).astype(np.float64)
    out = {"step": step, "images": int(labels.size), "classes": n, "languages": {}}
    for lang in world["languages"]:
        names = [c["names"][lang] for c in world["concepts"]]
        w = zero_shot_classifier(model, tok, names, world["eval_templates"][lang], device).cpu()
        pred = (feats @ w.t()).argmax(1).numpy()
        hit = (pred == labels).astype(np.float64)
        acc = np.bincount(labels, weights=hit, minlength=n) / np.maximum(per_class, 1)
        out["languages"][lang] = {"top1": float(hit.mean()), "per_concept": [round(float(a), 4) for a in acc]}
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    run_dir = Path(spec["output"])
    torch.set_num_threads(int(spec.get("threads", 1)))
    from training.train import train

    t0 = time.time()
    report = train(spec["train_argv"])
    t1 = time.time()
    world = json.loads(Path(spec["world"]).read_text(encoding="utf-8"))
    result = zero_shot(run_dir, Path(spec["heldout"]), world)
    result.update(arm=spec["arm"], seed=spec["seed"], train_seconds=round(t1 - t0, 1),
                  eval_seconds=round(time.time() - t1, 1), train_report=report)
    (run_dir / "eval.json").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    means = {lang: round(v["top1"], 3) for lang, v in result["languages"].items()}
    print(f"{spec['arm']} seed {spec['seed']}: trained {report['steps']} steps in {t1 - t0:.0f}s, "
          f"zero-shot top-1 {means}", flush=True)


if __name__ == "__main__":
    main()
