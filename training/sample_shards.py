"""Built-in sample data for training: drawn images with multilingual captions, in the real contracts.

`make train` must work on a fresh clone with no downloads, so the project draws its own images:
a coloured shape (concept = colour x shape) at a random place and size on a noisy grey
background, described by captions in five languages of five scripts (Latin, Cyrillic, Han,
Arabic, Devanagari). The output has the layout the download/curate jobs produce:

    <root>/images/part-*.parquet     schema curation.schemas.IMAGES (texts = matched texts)
    <root>/curated/part-*.parquet    schema CURATED: one offline curation pass (epoch 0)
    <root>/entry_probs/<lang>.npy    float32 per entry id (the paper's t / max(c, t))
    <root>/heldout/part-*.parquet    IMAGES schema; one image per (concept, language), one text
    <root>/concepts.json             languages, entries, class names and prompt templates
    <root>/thresholds.json, _MANIFEST.json, _SUCCESS

Entry ids come from the real matcher (curation.matcher) over the sorted entry list of each
language, so the matched texts are exactly what the curate job would produce for them.
Everything is a function of the seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from curation import balance
from curation.layout import ImagesOutput
from curation.matcher import Matcher
from curation.schemas import CURATED, IMAGES

COLOURS = {  # name -> RGB
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (40, 75, 215),
    "yellow": (235, 215, 35),
    "purple": (135, 50, 175),
    "orange": (245, 135, 20),
}
SHAPES = ["circle", "square", "triangle", "cross", "diamond"]

# Per language: colour words (masculine / feminine where the language agrees), shape words with
# grammatical gender, how a (colour, shape) phrase is built, and caption templates around it.
LANGS = {
    "en": {
        "colours": {c: (c, c) for c in COLOURS},
        "shapes": {s: (s, "m") for s in SHAPES},
        "phrase": "{c} {s}",
        "templates": ["a photo of a {}", "{}", "a {} on a grey background", "a drawing of a {}"],
    },
    "ru": {
        "colours": {
            "red": ("красный", "красная"), "green": ("зелёный", "зелёная"), "blue": ("синий", "синяя"),
            "yellow": ("жёлтый", "жёлтая"), "purple": ("фиолетовый", "фиолетовая"),
            "orange": ("оранжевый", "оранжевая"),
        },
        "shapes": {"circle": ("круг", "m"), "square": ("квадрат", "m"), "triangle": ("треугольник", "m"),
                   "cross": ("крест", "m"), "diamond": ("ромб", "m")},
        "phrase": "{c} {s}",
        "templates": ["фото: {}", "{}", "{} на сером фоне", "рисунок: {}"],
    },
    "zh": {
        "colours": {"red": ("红色", "红色"), "green": ("绿色", "绿色"), "blue": ("蓝色", "蓝色"),
                    "yellow": ("黄色", "黄色"), "purple": ("紫色", "紫色"), "orange": ("橙色", "橙色")},
        "shapes": {"circle": ("圆形", "m"), "square": ("正方形", "m"), "triangle": ("三角形", "m"),
                   "cross": ("十字", "m"), "diamond": ("菱形", "m")},
        "phrase": "{c}{s}",
        "templates": ["一张{}的照片", "{}", "灰色背景上的{}", "一幅{}的图画"],
    },
    "ar": {
        "colours": {
            "red": ("أحمر", "حمراء"), "green": ("أخضر", "خضراء"), "blue": ("أزرق", "زرقاء"),
            "yellow": ("أصفر", "صفراء"), "purple": ("بنفسجي", "بنفسجية"), "orange": ("برتقالي", "برتقالية"),
        },
        "shapes": {"circle": ("دائرة", "f"), "square": ("مربع", "m"), "triangle": ("مثلث", "m"),
                   "cross": ("صليب", "m"), "diamond": ("معين", "m")},
        "phrase": "{s} {c}",
        "templates": ["صورة {}", "{}", "{} على خلفية رمادية", "رسم {}"],
    },
    "hi": {
        "colours": {"red": ("लाल", "लाल"), "green": ("हरा", "हरी"), "blue": ("नीला", "नीली"),
                    "yellow": ("पीला", "पीली"), "purple": ("बैंगनी", "बैंगनी"), "orange": ("नारंगी", "नारंगी")},
        "shapes": {"circle": ("वृत्त", "m"), "square": ("वर्ग", "m"), "triangle": ("त्रिभुज", "m"),
                   "cross": ("क्रॉस", "m"), "diamond": ("समचतुर्भुज", "m")},
        "phrase": "{c} {s}",
        "templates": ["{} की तस्वीर", "{}", "धूसर पृष्ठभूमि पर {}", "{} का चित्र"],
    },
}
# Words of the templates that are metadata entries too (frequent, so balancing down-weights them).
TEMPLATE_ENTRIES = {"en": ["photo", "drawing"], "ru": ["фото", "рисунок"], "zh": ["照片", "图画"],
                    "ar": ["صورة", "رسم"], "hi": ["तस्वीर", "चित्र"]}
LANG_WEIGHTS = {"en": 0.36, "ru": 0.16, "zh": 0.16, "ar": 0.16, "hi": 0.16}


@dataclass
class SampleConfig:
    seed: int = 0
    train_images: int = 4000
    shards: int = 4
    row_group_rows: int = 250
    image_size: int = 48
    max_texts_per_image: int = 3
    colour_skew: float = 0.8  # Zipf exponent of colour frequencies: the imbalance curation removes
    t_en_fraction: float = 0.35  # t_en as a fraction of the median English entry count


def concepts() -> list[tuple[str, str]]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def class_name(lang: str, colour: str, shape: str) -> str:
    spec = LANGS[lang]
    word, gender = spec["shapes"][shape]
    masc, fem = spec["colours"][colour]
    return spec["phrase"].format(c=fem if gender == "f" else masc, s=word)


def language_entries(lang: str) -> list[str]:
    """Sorted entries of a language: the stable order that defines entry ids."""
    spec = LANGS[lang]
    words = {w for pair in spec["colours"].values() for w in pair}
    words |= {w for w, _g in spec["shapes"].values()}
    words |= set(TEMPLATE_ENTRIES[lang])
    return sorted(words)


def draw_image(rng: np.random.Generator, colour: str, shape: str, size: int) -> bytes:
    """PNG bytes of one coloured shape on a noisy grey background."""
    grey = int(rng.integers(90, 170))
    bg = np.clip(grey + rng.normal(0, 12, size=(size, size, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    r = float(rng.uniform(0.22, 0.38)) * size
    cx = float(rng.uniform(r, size - r))
    cy = float(rng.uniform(r, size - r))
    rgb = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLOURS[colour])
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif shape == "square":
        h = r * 0.85
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=rgb)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=rgb)
    elif shape == "cross":
        w = r * 0.32
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=rgb)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _uuid(seed: int, split: str, i: int) -> str:
    return hashlib.sha256(f"{seed}/{split}/{i}".encode()).hexdigest()[:32]


def _text_struct(text: str, lang: str, ids: np.ndarray) -> dict:
    return {"text": text, "source": "alt", "page_url": None, "lid": lang, "lid_prob": 1.0, "lang": lang,
            "entry_ids": [int(x) for x in ids]}


def _image_row(uuid: str, png: bytes, size: int, texts: list[dict]) -> dict:
    return {"uuid": uuid, "url": f"sample://{uuid}.png", "image": png, "width": size, "height": size,
            "original_size": len(png), "sha256": hashlib.sha256(png).hexdigest(), "texts": texts}


def _write_rows(rows: list[dict], schema: pa.Schema, path: Path, row_group_rows: int) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_rows)


def generate(root: str | os.PathLike, cfg: SampleConfig | None = None, overwrite: bool = False) -> dict:
    """Write the sample dataset under root (atomically: staged, then renamed); returns the manifest."""
    cfg = cfg or SampleConfig()
    root = Path(root)
    # a sample from before the images recorded their source is drawn again (same seed, same rows)
    if (root / "_SUCCESS").exists() and (root / "images" / ImagesOutput.MANIFEST).exists() and not overwrite:
        return json.loads((root / "_MANIFEST.json").read_text())
    t0 = time.time()
    staging = root.with_name(f".{root.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("images", "curated", "entry_probs", "heldout"):
        (staging / sub).mkdir(parents=True)

    langs = sorted(LANGS)
    matchers = {lang: Matcher(language_entries(lang)) for lang in langs}
    allc = concepts()
    cw = np.array([1.0 / (1 + list(COLOURS).index(c)) ** cfg.colour_skew for c, _s in allc])
    cw /= cw.sum()
    lw = np.array([LANG_WEIGHTS[lang] for lang in langs])
    lw /= lw.sum()

    # --- training images with 1..k matched texts each ---
    rows = []
    for i in range(cfg.train_images):
        rng = np.random.default_rng([cfg.seed, 1, i])
        colour, shape = allc[int(rng.choice(len(allc), p=cw))]
        png = draw_image(rng, colour, shape, cfg.image_size)
        texts = []
        for _ in range(int(rng.integers(1, cfg.max_texts_per_image + 1))):
            lang = langs[int(rng.choice(len(langs), p=lw))]
            tmpl = LANGS[lang]["templates"][int(rng.integers(len(LANGS[lang]["templates"])))]
            text = tmpl.format(class_name(lang, colour, shape))
            texts.append(_text_struct(text, lang, matchers[lang].match([text])[0]))
        rows.append(_image_row(_uuid(cfg.seed, "train", i), png, cfg.image_size, texts))

    # --- entry counts -> thresholds -> entry probabilities (the paper's maths, curation.balance) ---
    counts = {lang: np.zeros(len(matchers[lang].entries), dtype=np.int64) for lang in langs}
    for row in rows:
        for t in row["texts"]:
            counts[t["lang"]][t["entry_ids"]] += 1
    # t_en well below the typical English count, so every entry is balanced down somewhat and
    # online curation visibly resamples each epoch (about half the images are kept per epoch)
    positive = counts["en"][counts["en"] > 0]
    t_en = max(1, int(cfg.t_en_fraction * np.median(positive))) if positive.size else 1
    thresholds = balance.language_thresholds(counts, t_en)
    probs = {}
    for lang in langs:
        # On a sample this small p can fall below the share of the rarest entry, which would put
        # t_lang on a zero count (probability 0 for everything); keep t at the rarest matched count.
        pos = counts[lang][counts[lang] > 0]
        t = max(thresholds[lang]["t"], int(pos.min()) if pos.size else 1)
        thresholds[lang]["t_used"] = t
        probs[lang] = balance.entry_probabilities(counts[lang], t)
    for lang in langs:
        np.save(staging / "entry_probs" / f"{lang}.npy", probs[lang])

    per_shard = math.ceil(len(rows) / cfg.shards)
    for s in range(cfg.shards):
        part = rows[s * per_shard:(s + 1) * per_shard]
        _write_rows(part, IMAGES, staging / "images" / f"part-{s:05d}.parquet", cfg.row_group_rows)
    # the images hold every matched text, as a download of matched/ does, and say so the way a
    # download does (training refuses online curation over shards of a curated/ sample)
    (staging / "images" / ImagesOutput.MANIFEST).write_text(json.dumps({"job": "sample-shards", "source": "matched",
                                                                  "curate_run": None}, indent=1))

    # --- one offline curation pass (epoch 0), the curated/ contract ---
    from training.data import curate_rows  # local import: data.py imports torch

    uuids = [r["uuid"] for r in rows]
    picked, keep = curate_rows(uuids, [r["texts"] for r in rows], probs, cfg.seed, epoch=0)
    curated = [{"uuid": r["uuid"], "url": r["url"], "text": r["texts"][j]["text"], "lang": r["texts"][j]["lang"],
                "entry_ids": r["texts"][j]["entry_ids"]}
               for r, j, k in zip(rows, picked, keep, strict=True) if k]
    _write_rows(curated, CURATED, staging / "curated" / "part-00000.parquet", cfg.row_group_rows)

    # --- held-out: one image per (concept, language), one text with the first template ---
    held = []
    for li, lang in enumerate(langs):
        for ci, (colour, shape) in enumerate(allc):
            rng = np.random.default_rng([cfg.seed, 2, li, ci])
            png = draw_image(rng, colour, shape, cfg.image_size)
            text = LANGS[lang]["templates"][0].format(class_name(lang, colour, shape))
            held.append(_image_row(_uuid(cfg.seed, f"heldout-{lang}", ci), png, cfg.image_size,
                                   [_text_struct(text, lang, matchers[lang].match([text])[0])]))
    _write_rows(held, IMAGES, staging / "heldout" / "part-00000.parquet", cfg.row_group_rows)

    meta = {
        "languages": langs,
        "concepts": [f"{c} {s}" for c, s in allc],
        "class_names": {lang: [class_name(lang, c, s) for c, s in allc] for lang in langs},
        "templates": {lang: LANGS[lang]["templates"] for lang in langs},
        "entries": {lang: matchers[lang].entries for lang in langs},
        "heldout_label_order": "language-major; row i of language L has concept index i",
    }
    (staging / "concepts.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    (staging / "thresholds.json").write_text(json.dumps({"t_en": t_en, "languages": thresholds}, indent=1))
    manifest = {
        "kind": "worldclip-sample-shards",
        "config": asdict(cfg),
        "rows": {"images": len(rows), "curated": len(curated), "heldout": len(held)},
        "texts": int(sum(len(r["texts"]) for r in rows)),
        "languages": langs,
        "seconds": round(time.time() - t0, 2),
    }
    (staging / "_MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    (staging / "_SUCCESS").write_text("")
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, root)
    return manifest


def sample_texts(root: str | os.PathLike) -> list[str]:
    """Every caption of the training shards (the tokenizer's training corpus)."""
    out = []
    for path in sorted((Path(root) / "images").glob("*.parquet")):
        for texts in pq.read_table(path, columns=["texts"]).column("texts").to_pylist():
            out.extend(t["text"] for t in texts)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="build/sample-shards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-images", type=int, default=SampleConfig.train_images)
    ap.add_argument("--shards", type=int, default=SampleConfig.shards)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    m = generate(a.output, SampleConfig(seed=a.seed, train_images=a.train_images, shards=a.shards), a.overwrite)
    print(json.dumps(m))


if __name__ == "__main__":
    main()
