"""Multilingual image-text retrieval: XM3600 and XTD, recall@1/5/10 both ways per locale.

Layouts, as published:
    XM3600 (google.github.io/crossmodal-3600): <root>/captions.jsonl, one JSON object per image:
        {"image/key": "000411001ff7dd4f", "image/locale": "ar",
         "ar": {"caption": [...], "caption/tokenized": [...], "caption/tokenized/lowercase": [...]},
         "bn": {...}, ...}   (36 locales, about two captions per image and locale)
      and the images as <root>/images/<image/key>.jpg (the images.tgz archive unpacked).
    XTD (as packaged by Babel-ImageNet, data/xtd.json): {"images": [COCO file names],
         "captions": {locale: [the caption of image i, ...]}} and a folder with those COCO images;
         an entry may also be a list of captions.

Each locale is its own pool: the images that have a caption in that locale and all their
captions (so chance recall@1 is about 1/images). Every image is encoded once for all locales.
Reported per locale and as the mean over locales; see training.evaluation.metrics for how
several captions per image and ties are counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from training.evaluation.common import EvalInputError, Progress, encode_image_sources, encode_texts
from training.evaluation.metrics import KS, mean, recall_at_k

XM3600_CAPTIONS = "captions.jsonl"
XM3600_NOT_LOCALES = ("image/key", "image/locale")


@dataclass
class RetrievalSet:
    """Images and, per locale, the captions of each image (an empty list: none in that locale)."""

    name: str
    images: list[str]
    captions: dict[str, list[list[str]]]


def _check_images(name: str, paths: list[str]) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise EvalInputError(f"{name}: {len(missing)} of {len(paths)} images are missing, e.g. {missing[0]}")


def load_xm3600(root: str | os.PathLike, images: str | os.PathLike | None = None,
                caption_field: str = "caption") -> RetrievalSet:
    """An XM3600 directory (captions.jsonl + images/), or the captions.jsonl file itself."""
    root = Path(root)
    captions_file = root if root.is_file() else root / XM3600_CAPTIONS
    if not captions_file.is_file():
        raise EvalInputError(f"XM3600: {captions_file} not found (expected <dir>/{XM3600_CAPTIONS} and <dir>/images/)")
    base = captions_file.parent
    image_dir = Path(images) if images else (base / "images" if (base / "images").is_dir() else base)
    keys, per_locale = [], {}
    with open(captions_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = str(row["image/key"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise EvalInputError(f"{captions_file}:{n}: not an XM3600 record (a JSON object with image/key)") from None
            i = len(keys)
            keys.append(key)
            for locale, value in row.items():
                if locale in XM3600_NOT_LOCALES or not isinstance(value, dict):
                    continue
                caps = value.get(caption_field)
                if caps is None:
                    raise EvalInputError(f"{captions_file}:{n}: locale {locale!r} has no {caption_field!r} list")
                caps = [caps] if isinstance(caps, str) else [str(c) for c in caps if str(c).strip()]
                per_locale.setdefault(locale, {})[i] = caps
    if not keys:
        raise EvalInputError(f"{captions_file} holds no images")
    if len(set(keys)) != len(keys):
        raise EvalInputError(f"{captions_file}: an image/key occurs twice")
    paths = [str(image_dir / f"{k}.jpg") for k in keys]
    _check_images("XM3600", paths)
    captions = {loc: [d.get(i, []) for i in range(len(keys))] for loc, d in sorted(per_locale.items())}
    return RetrievalSet("xm3600", paths, captions)


def load_xtd(json_path: str | os.PathLike, images: str | os.PathLike) -> RetrievalSet:
    """xtd.json (Babel-ImageNet's packaging: images + per-locale captions) and the folder of its images."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise EvalInputError(f"XTD: {json_path} not found")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        names, caps = data["images"], data["captions"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise EvalInputError(f"{json_path}: expected {{\"images\": [...], \"captions\": {{locale: [...]}}}}") from None
    if not images:
        raise EvalInputError("XTD needs the folder of its images (--xtd-images DIR)")
    captions = {}
    for locale, entries in sorted(caps.items()):
        if len(entries) != len(names):
            raise EvalInputError(f"{json_path}: locale {locale!r} has {len(entries)} captions for {len(names)} images")
        captions[locale] = [[e] if isinstance(e, str) else [str(c) for c in e] for e in entries]
    paths = [str(Path(images) / n) for n in names]
    _check_images("XTD", paths)
    return RetrievalSet("xtd", paths, captions)


def evaluate_retrieval(model, tokenizer, ds: RetrievalSet, transform, device, *, ks=KS, batch_size: int = 256,
                       workers: int = 0, progress: bool = True) -> dict:
    """{locales: {locale: recall dict}, mean: {metric: mean over locales}, mean_recall, images}."""
    with Progress(len(ds.images), f"{ds.name} images", "img", progress) as bar:
        img = encode_image_sources(model, ds.images, transform, device, batch_size, workers, bar)
    total = sum(len(c) for caps in ds.captions.values() for c in caps)
    out = {}
    with Progress(total, f"{ds.name} captions", "text", progress) as bar:
        for locale, caps in ds.captions.items():
            pool = [i for i, c in enumerate(caps) if c]
            if not pool:
                continue
            texts = [t for i in pool for t in caps[i]]
            owner = torch.tensor([k for k, i in enumerate(pool) for _ in caps[i]])
            txt = encode_texts(model, tokenizer, texts, device, batch_size, bar)
            out[locale] = recall_at_k(img[pool], txt, owner, ks)
    metrics = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in ks]
    avg = {m: mean(r[m] for r in out.values()) for m in metrics}
    return {"locales": out, "mean": avg, "mean_recall": mean(avg.values()), "images": len(ds.images),
            "locales_scored": len(out)}
