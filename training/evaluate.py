"""Evaluate a CLIP checkpoint: Babel-ImageNet zero-shot, XM3600 / XTD retrieval, CVQA, held-out shards.

    python -m training.evaluate --checkpoint RUN_OR_CKPT \\
        [--babel-imagenet IMAGENET_VAL_DIR [--babel-data BABEL_DIR]] \\
        [--xm3600 XM3600_DIR] [--xtd xtd.json --xtd-images COCO_DIR] [--cvqa CVQA_DIR_OR_FILE] \\
        [--data SHARDS_ROOT] --output OUT

Each benchmark reads its published layout (see training/evaluation/*.py) and reports per
language or locale and the mean: Babel-ImageNet top-1 per language over the classes that
language has; XM3600 and XTD image->text and text->image recall@1/5/10 per locale (an image is
found when any of its captions is); CVQA accuracy per subset, each option scored by the
similarity of the image to "question option". --data scores the held-out Parquet shards of a
training root as training does (retrieval per caption language, zero-shot from concepts.json).
Images are decoded in --workers processes and encoded in batches, in bf16 autocast on CUDA.
Writes OUT/results.json (every number) and OUT/report.html (tables with bars), prints a table
per benchmark, a summary line and a JSON line. Exit 0 when done, 2 on a user error (a missing
file, a wrong layout), with one line on stderr.

The functions below are the held-out evaluation training.train runs at the end of a run; the
benchmark code lives in training.evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curation import config_cli, storage
from curation.config_cli import ConfigMixin, option
from training.data import parquet_file
from training.evaluation import common
from training.evaluation.common import EvalInputError, encode_images  # noqa: F401  (part of this module's API)
from training.evaluation.metrics import retrieval_ranks
from training.transforms import ImageTransform

# --- held-out shards (what training.train evaluates when a run finishes) ----------------------------


def load_heldout(spec) -> list[dict]:
    """Rows of held-out shards as {uuid, image (bytes), text, lang}; rows without a text are skipped."""
    rows = []
    for p in storage.expand(spec, suffix=".parquet"):
        t = parquet_file(p).read(columns=["uuid", "image", "texts"])
        for u, img, texts in zip(*(t.column(c).to_pylist() for c in ("uuid", "image", "texts")), strict=True):
            if texts:
                rows.append({"uuid": u, "image": img, "text": texts[0]["text"], "lang": texts[0]["lang"]})
    return rows


def encode_texts(model, tokenizer, texts: list[str], device, batch_size: int = 256) -> torch.Tensor:
    """[N, dim] normalised text embeddings on `device`."""
    return common.encode_texts(model, tokenizer, texts, device, batch_size).to(device)


def retrieval_recall(img: torch.Tensor, txt: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """Recall@k both ways for paired rows (row i of img matches row i of txt); ties count against the model."""
    n = img.shape[0]
    i2t, t2i = retrieval_ranks(img.cpu(), txt.cpu(), torch.arange(n))
    out = {"n": n, "chance_r1": 1.0 / n}
    for k in ks:
        out[f"i2t_r{k}"] = int((i2t < k).sum()) / n
        out[f"t2i_r{k}"] = int((t2i < k).sum()) / n
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
    """[classes, dim] normalised mean prompt embeddings, on `device`."""
    from training.evaluation.babel_imagenet import class_embeddings

    return class_embeddings(model, tokenizer, class_names, templates, device).to(device)


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


# --- the command line --------------------------------------------------------------------------------

DEFAULT_HELDOUT_ROOT = "build/sample-shards"
# The Babel-ImageNet text files are small (2 MB, MIT): found beside the project when not given.
SHARED_BABEL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "babel-imagenet"


@dataclass
class EvalConfig(ConfigMixin):
    checkpoint: str | None = option(None, metavar="CKPT", help="a step-*.pt file, or a run directory (its newest "
                                    "checkpoints/step-*.pt)")
    tokenizer: str | None = option(None, metavar="FILE", help="tokenizer.json (default: the run's, beside checkpoints/)")
    output: str | None = option(None, metavar="DIR", help="where results.json and report.html are written")
    babel_imagenet: str | None = option(None, metavar="DIR", help="ImageNet-style images: <class index>/*.jpg or "
                                        "synset folders n01440764/... (e.g. the ILSVRC2012 val set)")
    babel_data: str | None = option(None, metavar="DIR", help="Babel-ImageNet's babel_imagenet-298.json and "
                                    "nllb_dist13b_prompts.json (default: $BABEL_IMAGENET_DATA, else "
                                    "../shared/data/eval/babel-imagenet)")
    babel_languages: str = option("all", metavar="LANGS", help="all, prompted (the languages with translated "
                                  "prompts) or a comma list of codes (EN,DE,JA)")
    babel_prompts: str = option("translated", metavar="MODE", help="translated (English where a language has "
                                "none), english, or label (the bare class name)")
    babel_present_classes_only: bool = option(False, help="classify among the classes that have images in the "
                                              "folder (a partial ImageNet folder)")
    imagenet_synsets: str | None = option(None, metavar="FILE", help="the 1000 synset ids in class order "
                                          "(LOC_synset_mapping.txt), for a folder with only some synsets")
    xm3600: str | None = option(None, metavar="DIR", help="XM3600: captions.jsonl and images/<image/key>.jpg")
    xtd: str | None = option(None, metavar="FILE", help="xtd.json (images + captions per locale)")
    xtd_images: str | None = option(None, metavar="DIR", help="the folder of the COCO images xtd.json names")
    cvqa: str | None = option(None, metavar="PATH", help="CVQA rows: a .jsonl / .parquet file or a directory of them")
    cvqa_english: bool = option(False, help="score CVQA's translated (English) question and options")
    data: str | None = option(None, metavar="ROOT", help="a training data root: score its heldout/ shards "
                              "(default when no benchmark is given: build/sample-shards)")
    batch_size: int = option(256, help="images or texts per forward pass")
    workers: int = option(4, help="image-decoding DataLoader worker processes (0: decode in this process)")
    device: str = option("auto", help="auto (cuda when present), cpu, cuda, cuda:1 ...")
    threads: int | None = option(None, help="torch intra-op threads on CPU (none: torch's default)")
    progress: bool = option(True, help="a bar on a terminal, a line every 10 s otherwise")

    def __post_init__(self):
        from training.evaluation.babel_imagenet import PROMPT_MODES

        if self.babel_prompts not in PROMPT_MODES:
            raise ValueError(f"babel_prompts must be one of {PROMPT_MODES}, got {self.babel_prompts!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        if bool(self.xtd) != bool(self.xtd_images):
            raise ValueError("--xtd and --xtd-images go together")

    def benchmarks(self) -> list[str]:
        return [n for n, v in (("babel_imagenet", self.babel_imagenet), ("xm3600", self.xm3600),
                               ("xtd", self.xtd), ("cvqa", self.cvqa), ("heldout", self.data)) if v]


def parse_args(argv: list[str] | None) -> EvalConfig:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    config_cli.add_config_arguments(ap, EvalConfig, title="evaluation")
    a = ap.parse_args(argv)
    try:
        cfg = config_cli.config_from_args(EvalConfig, a)
    except ValueError as e:
        ap.error(str(e))
    if not cfg.checkpoint:
        ap.error("--checkpoint is required")
    return cfg


def babel_data_dir(cfg: EvalConfig) -> Path:
    for d in (cfg.babel_data, os.environ.get("BABEL_IMAGENET_DATA"), SHARED_BABEL_DATA):
        if d:
            return Path(d)
    return SHARED_BABEL_DATA


def run(cfg: EvalConfig, log=print) -> dict:
    """Every benchmark the config names, on the checkpoint; results (also written under cfg.output)."""
    from training.evaluation import babel_imagenet, cvqa, report, retrieval

    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.benchmarks():
        if not (Path(DEFAULT_HELDOUT_ROOT) / "heldout").is_dir():
            raise EvalInputError("nothing to evaluate: pass --babel-imagenet, --xm3600, --xtd, --cvqa or --data")
        cfg = cfg.replace(data=DEFAULT_HELDOUT_ROOT)
    device = common.resolve_device(cfg.device)
    model, tok, info = common.load_checkpoint(cfg.checkpoint, cfg.tokenizer, device)
    transform = ImageTransform(info["image_size"], train=False)
    kw = {"batch_size": cfg.batch_size, "workers": cfg.workers, "progress": cfg.progress}
    results: dict = {"checkpoint": info, "device": str(device), "config": cfg.to_dict()}
    log(f"evaluating {info['checkpoint']} (step {info['step']}) on {device}: {', '.join(cfg.benchmarks())}")
    if cfg.babel_imagenet:
        data = babel_imagenet.load_babel_data(babel_data_dir(cfg))
        results["babel_imagenet"] = babel_imagenet.evaluate_babel_imagenet(
            model, tok, cfg.babel_imagenet, data, transform, device, languages=cfg.babel_languages,
            prompts=cfg.babel_prompts, present_only=cfg.babel_present_classes_only, synsets=cfg.imagenet_synsets, **kw)
        log(report.babel_table(results["babel_imagenet"]) + "\n")
    if cfg.xm3600:
        results["xm3600"] = retrieval.evaluate_retrieval(model, tok, retrieval.load_xm3600(cfg.xm3600), transform,
                                                         device, **kw)
        log(report.retrieval_table("xm3600", results["xm3600"]) + "\n")
    if cfg.xtd:
        results["xtd"] = retrieval.evaluate_retrieval(model, tok, retrieval.load_xtd(cfg.xtd, cfg.xtd_images),
                                                      transform, device, **kw)
        log(report.retrieval_table("xtd", results["xtd"]) + "\n")
    if cfg.cvqa:
        results["cvqa"] = cvqa.evaluate_cvqa(model, tok, cvqa.load_cvqa(cfg.cvqa), transform, device,
                                             english=cfg.cvqa_english, **kw)
        log(report.cvqa_table(results["cvqa"]) + "\n")
    if cfg.data:
        root = Path(cfg.data)
        concepts = json.loads((root / "concepts.json").read_text()) if (root / "concepts.json").exists() else None
        results["heldout"] = evaluate(model, tok, root / "heldout" if (root / "heldout").is_dir() else root,
                                      info["image_size"], device, concepts)
        log(format_report(results["heldout"]) + "\n")
    results["seconds"] = round(time.time() - t0, 1)
    if cfg.output:
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        with storage.atomic_local_path(out / "results.json") as tmp:
            Path(tmp).write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
        with storage.atomic_local_path(out / "report.html") as tmp:
            Path(tmp).write_text(report.to_html(results, f"Evaluation of {info['checkpoint']}"), encoding="utf-8")
        results["written"] = [str(out / "results.json"), str(out / "report.html")]
    return results


def headline(results: dict) -> dict:
    """The machine-readable summary line: the mean of each benchmark."""
    out = {"checkpoint": results["checkpoint"]["checkpoint"], "step": results["checkpoint"]["step"],
           "seconds": results["seconds"]}
    if "babel_imagenet" in results:
        out["babel_imagenet_mean_top1"] = results["babel_imagenet"]["mean_top1"]
    for name in ("xm3600", "xtd"):
        if name in results:
            out[f"{name}_mean_i2t_r1"] = results[name]["mean"]["i2t_r1"]
            out[f"{name}_mean_t2i_r1"] = results[name]["mean"]["t2i_r1"]
    if "cvqa" in results:
        out["cvqa_mean_accuracy"] = results["cvqa"]["mean_accuracy"]
    if "written" in results:
        out["output"] = results["written"]
    return out


def main(argv: list[str] | None = None) -> dict:
    from training.evaluation import report

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = parse_args(argv)
    try:
        results = run(cfg)
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report.summary_line(results) + f" ({results['seconds']}s)")
    print(json.dumps(headline(results), ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
