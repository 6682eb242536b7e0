"""Multilingual evaluation: image<->text retrieval recall@1/5/10 per language, zero-shot classification.

Retrieval uses held-out image shards (IMAGES schema); each image's first text is its caption and
the caption's `lang` groups the pairs, so every language is scored on its own pool with chance
recall@1 = 1/N. Zero-shot builds one classifier per language from class names and that
language's prompt templates (mean of normalised prompt embeddings) and reports top-1 accuracy.
`python -m training.evaluate --checkpoint C --data ROOT` evaluates a saved checkpoint.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from curation import storage
from training.data import parquet_file
from training.transforms import ImageTransform


def load_heldout(spec) -> list[dict]:
    """Rows of held-out shards as {uuid, image (bytes), text, lang}; rows without a text are skipped."""
    rows = []
    for p in storage.expand(spec, suffix=".parquet"):
        t = parquet_file(p).read(columns=["uuid", "image", "texts"])
        for u, img, texts in zip(*(t.column(c).to_pylist() for c in ("uuid", "image", "texts")), strict=True):
            if texts:
                rows.append({"uuid": u, "image": img, "text": texts[0]["text"], "lang": texts[0]["lang"]})
    return rows


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def encode_images(model, images: list[bytes], transform, device, batch_size: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([transform(Image.open(io.BytesIO(b))) for b in images[i:i + batch_size]]).to(device)
        with _autocast(device):
            out.append(model.encode_image(x).float())
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], device, batch_size: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch_size):
        with _autocast(device):
            out.append(model.encode_text(tokenizer(texts[i:i + batch_size]).to(device)).float())
    return F.normalize(torch.cat(out), dim=-1)


def retrieval_recall(img: torch.Tensor, txt: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """Recall@k both ways for paired rows (row i of img matches row i of txt)."""
    sims = img @ txt.t()
    n = sims.shape[0]
    truth = torch.arange(n)
    # rank of the true partner = number of candidates scoring strictly higher
    i2t = (sims > sims[truth, truth].unsqueeze(1)).sum(1)
    t2i = (sims.t() > sims[truth, truth].unsqueeze(1)).sum(1)
    out = {"n": n, "chance_r1": 1.0 / n}
    for k in ks:
        out[f"i2t_r{k}"] = float((i2t < k).float().mean())
        out[f"t2i_r{k}"] = float((t2i < k).float().mean())
    return out


def retrieval_by_language(model, tokenizer, rows: list[dict], transform, device) -> dict:
    out = {}
    for lang in sorted({r["lang"] for r in rows}):
        sel = [r for r in rows if r["lang"] == lang]
        img = encode_images(model, [r["image"] for r in sel], transform, device)
        txt = encode_texts(model, tokenizer, [r["text"] for r in sel], device)
        out[lang] = retrieval_recall(img.cpu(), txt.cpu())
    return out


def zero_shot_classifier(model, tokenizer, class_names: list[str], templates: list[str], device) -> torch.Tensor:
    """[classes, dim] normalised mean prompt embeddings."""
    weights = []
    for name in class_names:
        e = encode_texts(model, tokenizer, [t.format(name) for t in templates], device)
        weights.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(weights)


def zero_shot_by_language(model, tokenizer, image_feats: torch.Tensor, labels: np.ndarray,
                          class_names: dict[str, list[str]], templates: dict[str, list[str]], device) -> dict:
    out = {}
    for lang in sorted(class_names):
        w = zero_shot_classifier(model, tokenizer, class_names[lang], templates[lang], device).cpu()
        pred = (image_feats.cpu() @ w.t()).argmax(1).numpy()
        out[lang] = {"top1": float((pred == labels).mean()), "n": int(len(labels)),
                     "chance": 1.0 / len(class_names[lang])}
    return out


def labels_from_captions(rows: list[dict], class_names: dict[str, list[str]], templates: dict[str, list[str]]):
    """Class index of each held-out row whose caption is a known prompt of a class name (else -1)."""
    lookup = {}
    for lang, names in class_names.items():
        for ci, name in enumerate(names):
            for t in templates[lang]:
                lookup[(lang, t.format(name))] = ci
    return np.array([lookup.get((r["lang"], r["text"]), -1) for r in rows])


def evaluate(model, tokenizer, heldout, image_size: int, device, concepts: dict | None = None) -> dict:
    """Retrieval per language and, when class names/templates are given, zero-shot per language."""
    was_training = model.training
    model.eval()
    transform = ImageTransform(image_size, train=False)
    rows = load_heldout(heldout)
    result = {"retrieval": retrieval_by_language(model, tokenizer, rows, transform, device)}
    if concepts:
        labels = labels_from_captions(rows, concepts["class_names"], concepts["templates"])
        known = labels >= 0
        if known.any():
            sel = [r for r, k in zip(rows, known, strict=True) if k]
            feats = encode_images(model, [r["image"] for r in sel], transform, device)
            result["zero_shot"] = zero_shot_by_language(model, tokenizer, feats, labels[known],
                                                        concepts["class_names"], concepts["templates"], device)
    model.train(was_training)
    return result


def format_report(result: dict) -> str:
    lines = ["lang   n   chance  i2t R@1  R@5    R@10   t2i R@1  R@5    R@10   zero-shot"]
    zs = result.get("zero_shot", {})
    for lang, r in result["retrieval"].items():
        z = zs.get(lang, {}).get("top1")
        lines.append(f"{lang:5s} {r['n']:4d}  {r['chance_r1']:.3f}   {r['i2t_r1']:.3f}  {r['i2t_r5']:.3f}  "
                     f"{r['i2t_r10']:.3f}  {r['t2i_r1']:.3f}  {r['t2i_r5']:.3f}  {r['t2i_r10']:.3f}  "
                     + (f"{z:.3f}" if z is not None else "-"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from training.model import CLIP, ModelConfig
    from training.tokenizer import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="build/sample-shards", help="root with heldout/ (and concepts.json)")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the one beside the checkpoint's run)")
    a = ap.parse_args(argv)
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    cfg = ModelConfig.from_dict(ck["model_config"])
    tok_path = a.tokenizer or str(Path(a.checkpoint).parent.parent / "tokenizer.json")
    tok = Tokenizer(tok_path, cfg.text.context_length)
    model = CLIP(cfg, pad_id=tok.pad_id)
    model.load_state_dict(ck["model"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    root = Path(a.data)
    concepts_path = root / "concepts.json"
    concepts = json.loads(concepts_path.read_text()) if concepts_path.exists() else None
    res = evaluate(model, tok, root / "heldout" if (root / "heldout").is_dir() else root,
                   cfg.vision.image_size, device, concepts)
    print(format_report(res))
    print(json.dumps(res))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
