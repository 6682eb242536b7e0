"""Generated benchmark fixtures, each in its benchmark's published layout, drawn with Pillow.

The real benchmarks (ImageNet val, XM3600, COCO images for XTD, CVQA) are too large to ship and
carry their own licences, so tests and `make evaluate` run on miniatures that have exactly their
file layouts. The images are the sample shards' concepts (training.sample_shards: a coloured
shape on a noisy grey background) and the texts the sample's five languages, so a model trained
by `make train` scores above chance on them, which a layout-only fixture could not show.

    <root>/babel/babel_imagenet-298.json     language -> [ImageNet class indices, class names]
    <root>/babel/nllb_dist13b_prompts.json   translated templates (not for HI: English is used)
    <root>/babel/language_mapping.json
    <root>/imagenet/<class index>/*.jpg      concept c is ImageNet class 7 * c
    <root>/xm3600/captions.jsonl, xm3600/images/<image/key>.jpg
    <root>/xtd/xtd.json, xtd/images/COCO_val2014_<id>.jpg
    <root>/cvqa/test.jsonl, cvqa/images/<ID>.jpg

`python -m training.evaluation.fixtures --output DIR` writes them; everything is a function of
the seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training import sample_shards as ss

BABEL_CODES = {"en": "EN", "ru": "RU", "zh": "ZH", "ar": "AR", "hi": "HI"}
LANGUAGE_NAMES = {"EN": "English", "RU": "Russian", "ZH": "Chinese", "AR": "Arabic", "HI": "Hindi"}
CVQA_SUBSETS = {"en": ("English", "United States"), "ru": ("Russian", "Russia"), "zh": ("Chinese", "China"),
                "ar": ("Arabic", "Egypt"), "hi": ("Hindi", "India")}
CVQA_QUESTIONS = {"en": "Which of these is in the picture?", "ru": "Что изображено на картинке?",
                  "zh": "图片里是什么？", "ar": "ماذا يوجد في الصورة؟", "hi": "तस्वीर में क्या है?"}
IMAGENET_STRIDE = 7  # concept c -> ImageNet class 7c: indices are not 0..n-1, as a real subset's are not


@dataclass
class FixtureConfig:
    seed: int = 0
    images_per_class: int = 2
    image_size: int = 48
    cvqa_options: int = 4


def _jpeg(rng: np.random.Generator, colour: str, shape: str, size: int) -> bytes:
    img = Image.open(io.BytesIO(ss.draw_image(rng, colour, shape, size))).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def babel_classes(lang: str) -> list[int]:
    """The concepts a fixture language has (Babel-ImageNet languages cover different class subsets)."""
    allc = ss.concepts()
    if lang == "zh":
        return list(range(20))
    if lang == "ar":
        return [i for i, (_c, s) in enumerate(allc) if s != "cross"]
    if lang == "hi":
        return list(range(0, len(allc), 2))
    return list(range(len(allc)))


def generate(root: str | os.PathLike, cfg: FixtureConfig | None = None) -> dict:
    """Write every fixture under root (replacing an earlier one); returns the CLI flags that read them."""
    cfg = cfg or FixtureConfig()
    root = Path(root)
    staging = root.with_name(f".{root.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    allc = ss.concepts()
    langs = sorted(ss.LANGS)

    # --- Babel-ImageNet text files + an ImageNet-style folder ---
    classes = {}
    for lang in langs:
        idx = babel_classes(lang)
        classes[BABEL_CODES[lang]] = [[IMAGENET_STRIDE * i for i in idx], [ss.class_name(lang, *allc[i]) for i in idx]]
    prompts = {BABEL_CODES[lang]: list(ss.LANGS[lang]["templates"]) for lang in langs if lang != "hi"}
    _write(staging / "babel" / "babel_imagenet-298.json", json.dumps(classes, ensure_ascii=False))
    _write(staging / "babel" / "nllb_dist13b_prompts.json", json.dumps(prompts, ensure_ascii=False))
    _write(staging / "babel" / "language_mapping.json", json.dumps(LANGUAGE_NAMES))
    for ci, (colour, shape) in enumerate(allc):
        for k in range(cfg.images_per_class):
            rng = np.random.default_rng([cfg.seed, 11, ci, k])
            _write(staging / "imagenet" / str(IMAGENET_STRIDE * ci) / f"ILSVRC2012_val_{ci * 100 + k:08d}.JPEG",
                   _jpeg(rng, colour, shape, cfg.image_size))

    # --- XM3600: captions.jsonl + images/<key>.jpg, two captions per locale (one in hi) ---
    lines = []
    for ci, (colour, shape) in enumerate(allc):
        key = hashlib.sha256(f"xm3600/{cfg.seed}/{ci}".encode()).hexdigest()[:16]
        rng = np.random.default_rng([cfg.seed, 12, ci])
        _write(staging / "xm3600" / "images" / f"{key}.jpg", _jpeg(rng, colour, shape, cfg.image_size))
        row = {"image/key": key, "image/locale": langs[ci % len(langs)]}
        for lang in langs:
            name = ss.class_name(lang, colour, shape)
            caps = [t.format(name) for t in ss.LANGS[lang]["templates"][:1 if lang == "hi" else 2]]
            row[lang] = {"caption": caps, "caption/tokenized": caps,
                         "caption/tokenized/lowercase": [c.lower() for c in caps]}
        lines.append(json.dumps(row, ensure_ascii=False))
    _write(staging / "xm3600" / "captions.jsonl", "\n".join(lines) + "\n")

    # --- XTD: xtd.json + COCO-named images, one caption per image and locale ---
    names = []
    for ci, (colour, shape) in enumerate(allc):
        name = f"COCO_val2014_{100000 + 37 * ci:012d}.jpg"
        names.append(name)
        rng = np.random.default_rng([cfg.seed, 13, ci])
        _write(staging / "xtd" / "images" / name, _jpeg(rng, colour, shape, cfg.image_size))
    xtd = {"images": names, "captions": {lang: [ss.LANGS[lang]["templates"][2].format(ss.class_name(lang, c, s))
                                                for c, s in allc] for lang in langs}}
    _write(staging / "xtd" / "xtd.json", json.dumps(xtd, ensure_ascii=False))

    # --- CVQA: test.jsonl (the HF fields) + images/<ID>.jpg; options are same-shape concepts ---
    rows = []
    for li, lang in enumerate(langs):
        for ci, (colour, shape) in enumerate(allc):
            rng = np.random.default_rng([cfg.seed, 14, li, ci])
            others = [j for j, (_c, s) in enumerate(allc) if s == shape and j != ci]
            picks = [int(j) for j in rng.choice(others, size=cfg.cvqa_options - 1, replace=False)]
            label = int(rng.integers(cfg.cvqa_options))
            options = picks[:label] + [ci] + picks[label:]
            qid = f"{5_000_000 + 100 * li + ci}_{li}"
            rel = f"images/{qid}.jpg"
            _write(staging / "cvqa" / rel, _jpeg(rng, colour, shape, cfg.image_size))
            rows.append({"ID": qid, "Subset": str(CVQA_SUBSETS[lang]), "Question": CVQA_QUESTIONS[lang],
                         "Translated Question": CVQA_QUESTIONS["en"],
                         "Options": [ss.class_name(lang, *allc[j]) for j in options],
                         "Translated Options": [ss.class_name("en", *allc[j]) for j in options],
                         "Label": label, "Category": "Objects / materials / clothing", "Image Type": "Self",
                         "Image Source": "generated", "License": "CC BY 4.0", "image_path": rel})
    _write(staging / "cvqa" / "test.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, root)
    return {"root": str(root), "args": fixture_args(root)}


def fixture_args(root: str | os.PathLike) -> list[str]:
    """The training.evaluate flags that run every benchmark on the fixtures under root."""
    r = Path(root)
    return ["--babel-imagenet", str(r / "imagenet"), "--babel-data", str(r / "babel"),
            "--xm3600", str(r / "xm3600"), "--xtd", str(r / "xtd" / "xtd.json"), "--xtd-images", str(r / "xtd" / "images"),
            "--cvqa", str(r / "cvqa")]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="build/eval-fixtures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--print-args", action="store_true", help="print only the training.evaluate flags, one line")
    a = ap.parse_args(argv)
    m = generate(a.output, FixtureConfig(seed=a.seed))
    print(" ".join(m["args"]) if a.print_args else json.dumps(m, ensure_ascii=False))


if __name__ == "__main__":
    main()
