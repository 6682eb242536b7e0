"""Babel-ImageNet zero-shot classification: ImageNet-1k images, class names in up to 298 languages.

Inputs, in the benchmark's published layout (github.com/gregor-ge/Babel-ImageNet, data/):
    babel_imagenet-298.json    language code -> [ImageNet-1k class indices, class names]
    nllb_dist13b_prompts.json  language code -> the 80 CLIP prompt templates machine-translated
                               ("{}" = class name); 90 languages (optional file)
    language_mapping.json      language code -> language name (optional, for the tables)
and an ImageNet-style image folder, usually the 50,000 validation images, either
    <root>/<class index>/*.jpg      (0 .. 999), or
    <root>/n01440764/*.JPEG ...     the standard synset folders: a synset's class index is its
                                    position among the 1000 ImageNet-1k synsets sorted by id
(a `val/` folder under root is used when root itself holds no class folders).

A language is scored as Babel-ImageNet scores it: only the images of the classes that language
has, classified among those classes only; top-1 accuracy per language, then the mean over
languages. Prompts ("translated", the default) follow the reference code: a language's
translated templates, and OpenAI's English ImageNet templates for English (Babel-ImageNet uses
them, not the round-trip-translated English entry of the prompts file) and for every language
without translated templates (the reference code skips those; we score them with English
prompts, so all 298 languages get a number). "english" uses the English templates everywhere,
"label" the bare class name. Babel-ImageNet's English row uses OpenAI's hand-cleaned class
names; the names file's English names are WordNet lemmas ("Tinca tinca"), which we use as
given, so English numbers can differ slightly from the paper's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from training.evaluation.common import (
    EvalInputError,
    Progress,
    encode_image_sources,
    encode_texts,
    is_image_file,
)
from training.evaluation.metrics import mean, top1_correct

NAMES_FILE = "babel_imagenet-298.json"
PROMPTS_FILE = "nllb_dist13b_prompts.json"
LANGUAGE_NAMES_FILE = "language_mapping.json"
IMAGENET_CLASSES = 1000
PROMPT_MODES = ("translated", "english", "label")
SYNSET = re.compile(r"^n\d{8}$")

# The 80 English prompt templates OpenAI released with CLIP for ImageNet zero-shot
# (github.com/openai/CLIP, notebooks/Prompt_Engineering_for_ImageNet.ipynb, MIT licence), in
# their published order; Babel-ImageNet's reference code uses exactly these for English.
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)


@dataclass
class BabelData:
    """The text side of the benchmark: class indices and names, prompt templates, language names."""

    classes: dict[str, tuple[list[int], list[str]]]
    prompts: dict[str, list[str]] = field(default_factory=dict)
    language_names: dict[str, str] = field(default_factory=dict)
    source: str = ""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{path}: not valid JSON: {e}") from None


def load_babel_data(directory: str | os.PathLike) -> BabelData:
    """The Babel-ImageNet files of a directory (see the module doc); checked, so a wrong file is one clear error."""
    d = Path(directory)
    names_path = d / NAMES_FILE
    if not names_path.is_file():
        raise EvalInputError(f"{names_path} not found: --babel-data must be a directory with the Babel-ImageNet "
                             f"files ({NAMES_FILE}, {PROMPTS_FILE}; github.com/gregor-ge/Babel-ImageNet, data/)")
    raw = _read_json(names_path)
    if not isinstance(raw, dict) or not raw:
        raise EvalInputError(f"{names_path}: expected an object language -> [class indices, class names]")
    classes = {}
    for lang, value in raw.items():
        if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], list)
                or not isinstance(value[1], list) or len(value[0]) != len(value[1]) or not value[0]):
            raise EvalInputError(f"{names_path}: language {lang!r} is not [class indices, class names] of equal length")
        idx = [int(i) for i in value[0]]
        if len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= IMAGENET_CLASSES:
            raise EvalInputError(f"{names_path}: language {lang!r} has repeated or out-of-range class indices")
        classes[str(lang).upper()] = (idx, [str(n) for n in value[1]])
    prompts = {}
    if (d / PROMPTS_FILE).is_file():
        for lang, templates in _read_json(d / PROMPTS_FILE).items():
            if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates) or not templates:
                raise EvalInputError(f"{d / PROMPTS_FILE}: language {lang!r} is not a list of templates")
            prompts[str(lang).upper()] = templates
    names = {}
    if (d / LANGUAGE_NAMES_FILE).is_file():
        names = {str(k).upper(): str(v) for k, v in _read_json(d / LANGUAGE_NAMES_FILE).items()}
    return BabelData(classes, prompts, names, str(d))


def select_languages(data: BabelData, spec: str) -> list[str]:
    """'all', 'prompted' (the languages with translated templates) or a comma list of codes."""
    spec = (spec or "all").strip()
    if spec.lower() == "all":
        return sorted(data.classes)
    if spec.lower() == "prompted":
        return sorted(set(data.classes) & (set(data.prompts) | {"EN"}))
    langs = [s.strip().upper() for s in spec.split(",") if s.strip()]
    unknown = [lang for lang in langs if lang not in data.classes]
    if unknown:
        raise EvalInputError(f"Babel-ImageNet has no language {', '.join(unknown)} (it has {len(data.classes)}: "
                             f"{', '.join(sorted(data.classes)[:12])}, ...)")
    return list(dict.fromkeys(langs))


def templates_for(lang: str, data: BabelData, mode: str = "translated") -> tuple[list[str], str]:
    """(templates, which: 'translated' | 'english' | 'label') of one language; see the module doc."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
    if mode == "label":
        return ["{}"], "label"
    if mode == "translated" and lang != "EN" and lang in data.prompts:
        return list(data.prompts[lang]), "translated"
    return list(OPENAI_IMAGENET_TEMPLATES), "english"


# --- the image folder ---------------------------------------------------------------------------------


def read_synsets(path: str | os.PathLike) -> list[str]:
    """The 1000 ImageNet-1k synset ids in class-index order, from LOC_synset_mapping.txt
    ("n01440764 tench, Tinca tinca" per line) or a file of one id per line."""
    ids = [line.split()[0] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(ids) != IMAGENET_CLASSES or len(set(ids)) != IMAGENET_CLASSES or not all(SYNSET.match(i) for i in ids):
        raise EvalInputError(f"{path}: expected the {IMAGENET_CLASSES} distinct ImageNet-1k synset ids (nXXXXXXXX), "
                             f"one per line, got {len(ids)}")
    return ids


def imagenet_images(root: str | os.PathLike, synsets: str | os.PathLike | None = None) -> tuple[list[str], list[int], str]:
    """(image paths, class indices, layout) of an ImageNet-style folder (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise EvalInputError(f"ImageNet image folder not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    names = [p.name for p in subdirs]
    if (root / "val").is_dir() and not any(n.isdigit() or SYNSET.match(n) for n in names):
        return imagenet_images(root / "val", synsets)  # an ILSVRC2012 root with train/ and val/
    if names and all(n.isdigit() for n in names):
        layout = "index"
        index = {n: int(n) for n in names}
        bad = [n for n, i in index.items() if i >= IMAGENET_CLASSES]
        if bad:
            raise EvalInputError(f"{root}: class folders {bad[:5]} are not ImageNet-1k indices (0-999)")
    elif names and all(SYNSET.match(n) for n in names):
        layout = "synset"
        if synsets:
            order = {s: i for i, s in enumerate(read_synsets(synsets))}
            unknown = [n for n in names if n not in order]
            if unknown:
                raise EvalInputError(f"{root}: synset folders {unknown[:5]} are not in {synsets}")
            index = {n: order[n] for n in names}
        elif len(names) == IMAGENET_CLASSES:
            index = {n: i for i, n in enumerate(names)}  # ImageNet-1k's class order is the sorted synset ids
        else:
            raise EvalInputError(
                f"{root} has {len(names)} synset folders, not {IMAGENET_CLASSES}: a synset's class index is its "
                f"position among all {IMAGENET_CLASSES} sorted ImageNet-1k synsets, so a partial folder needs "
                f"--imagenet-synsets LOC_synset_mapping.txt (or a file of the {IMAGENET_CLASSES} ids)")
    else:
        raise EvalInputError(f"{root}: expected class folders named 0..999 or ImageNet synset ids (n01440764 ...), "
                             f"found {names[:5] or 'none'}")
    paths, labels = [], []
    for d in subdirs:
        for p in sorted(d.iterdir()):
            if is_image_file(p):
                paths.append(str(p))
                labels.append(index[d.name])
    if not paths:
        raise EvalInputError(f"{root}: the class folders hold no images")
    return paths, labels, layout


# --- scoring ------------------------------------------------------------------------------------------


@torch.no_grad()
def class_embeddings(model, tokenizer, class_names: list[str], templates: list[str], device, batch_size: int = 256,
                     progress: Progress | None = None) -> torch.Tensor:
    """[classes, dim]: per class the normalised mean of its normalised prompt embeddings (CLIP's recipe)."""
    texts = [t.format(name) for name in class_names for t in templates]
    e = encode_texts(model, tokenizer, texts, device, batch_size, progress)
    return F.normalize(e.view(len(class_names), len(templates), -1).mean(1), dim=-1)


def evaluate_babel_imagenet(model, tokenizer, image_root, data: BabelData, transform, device, *,
                            languages: str = "all", prompts: str = "translated", present_only: bool = False,
                            synsets: str | None = None, batch_size: int = 256, workers: int = 0,
                            progress: bool = True) -> dict:
    """Top-1 per language over the images of its classes, and the mean over the languages scored.

    present_only classifies among the language's classes that have images in the folder (a
    partial ImageNet folder; the benchmark itself uses all of them).
    """
    paths, labels, layout = imagenet_images(image_root, synsets)
    langs = select_languages(data, languages)
    labels_t = torch.tensor(labels)
    present = set(labels)
    with Progress(len(paths), "babel-imagenet images", "img", progress) as bar:
        feats = encode_image_sources(model, paths, transform, device, batch_size, workers, bar)
    plan = {}
    for lang in langs:
        idx, names = data.classes[lang]
        if present_only:
            keep = [k for k, i in enumerate(idx) if i in present]
            idx, names = [idx[k] for k in keep], [names[k] for k in keep]
        templates, which = templates_for(lang, data, prompts)
        plan[lang] = (idx, names, templates, which)
    out, empty = {}, []
    total_prompts = sum(len(p[1]) * len(p[2]) for p in plan.values() if set(p[0]) & present)
    with Progress(total_prompts, "babel-imagenet prompts", "text", progress) as bar:
        for lang, (idx, names, templates, which) in plan.items():
            sel = torch.isin(labels_t, torch.tensor(idx, dtype=torch.long))
            if not bool(sel.any()):
                empty.append(lang)
                continue
            w = class_embeddings(model, tokenizer, names, templates, device, batch_size, bar)
            local = {c: k for k, c in enumerate(idx)}
            y = torch.tensor([local[int(c)] for c in labels_t[sel]])
            correct = top1_correct(feats[sel] @ w.t(), y)
            out[lang] = {"name": data.language_names.get(lang, lang), "top1": int(correct.sum()) / len(y),
                         "images": int(sel.sum()), "classes": len(idx), "chance": 1.0 / len(idx), "prompts": which}
    return {"languages": out, "mean_top1": mean(r["top1"] for r in out.values()), "languages_scored": len(out),
            "languages_without_images": empty, "images": len(paths), "classes_with_images": len(present),
            "layout": layout, "prompt_mode": prompts, "present_classes_only": present_only, "data": data.source}
