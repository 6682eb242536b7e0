"""CVQA-style multiple choice: pick the option whose "question + option" text best matches the image.

CVQA (huggingface.co/datasets/afaji/cvqa) has one row per question with the fields
    ID, Subset ("('Japanese', 'Japan')": language and country), Question (native language),
    Translated Question (English), Options (4 strings), Translated Options, Label (0-3;
    -1 where the answer is withheld), Category, Image Type, Image Source, License, image
and is published as Parquet (data/test-*.parquet, the image a struct of bytes and path).
We read that Parquet as is, or JSONL of the same fields with the image as a file path relative
to the JSONL file (`image_path`, or `image` as a path or {"path": ...}); a directory means every
*.jsonl / *.parquet under it. A contrastive model has no answer decoder, so each option is
scored by the cosine similarity of the image with the text "<question> <option>" and the best
scoring option is the answer; accuracy per subset (country-language pair) and the mean over
subsets. Rows without a label are counted and left out. `english` scores the translated
question and options instead of the native ones.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from training.evaluation.common import EvalInputError, Progress, encode_image_sources, encode_texts
from training.evaluation.metrics import mean, top1_correct

REQUIRED = ("Subset", "Question", "Options", "Label")


@dataclass(frozen=True)
class ParquetImage:
    """Row `row` of the image column of a Parquet file: read when encoded, not held in memory."""

    file: str
    row: int


def subset_name(subset) -> str:
    """"('Japanese', 'Japan')" -> "Japanese (Japan)"; other values as they are."""
    s = str(subset).strip()
    if s.startswith("("):
        try:
            parts = ast.literal_eval(s)
            if isinstance(parts, tuple) and len(parts) == 2:
                return f"{parts[0]} ({parts[1]})"
        except (ValueError, SyntaxError):
            pass
    return s


def _options(value, where: str) -> list[str]:
    if isinstance(value, str):  # some exports hold the list as its text
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(value)
                break
            except (ValueError, SyntaxError):
                continue
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise EvalInputError(f"{where}: Options must be a list of at least two answers, got {value!r:.80}")
    return [str(v) for v in value]


def _record(row: dict, image, where: str) -> dict:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise EvalInputError(f"{where}: a CVQA row needs {', '.join(REQUIRED)}; missing {', '.join(missing)}")
    label = row["Label"]
    rec = {"id": str(row.get("ID", where)), "subset": subset_name(row["Subset"]), "question": str(row["Question"]),
           "options": _options(row["Options"], where), "label": -1 if label is None else int(label), "image": image,
           "question_en": row.get("Translated Question"), "options_en": None}
    if row.get("Translated Options") is not None:
        rec["options_en"] = _options(row["Translated Options"], where)
    if rec["label"] >= len(rec["options"]):
        raise EvalInputError(f"{where}: Label {rec['label']} but only {len(rec['options'])} options")
    return rec


def _jsonl_rows(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise EvalInputError(f"{where}: not JSON") from None
            img = row.get("image_path") or row.get("image")
            if isinstance(img, dict):
                img = img.get("path")
            if not isinstance(img, str) or not img:
                raise EvalInputError(f"{where}: no image path (image_path, or image as a path)")
            p = Path(img) if os.path.isabs(img) else path.parent / img
            if not p.is_file():
                raise EvalInputError(f"{where}: image {p} not found")
            out.append(_record(row, str(p), where))
    return out


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    image_col = next((c for c in ("image", "Image") if c in names), None)
    if image_col is None:
        raise EvalInputError(f"{path}: no image column")
    cols = [c for c in names if c != image_col]
    table = pf.read(columns=cols)
    return [_record(row, ParquetImage(str(path), i), f"{path} row {i}") for i, row in enumerate(table.to_pylist())]


def load_cvqa(path: str | os.PathLike) -> list[dict]:
    """CVQA rows from a .jsonl / .parquet file or every such file under a directory (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in (".jsonl", ".parquet") and not f.name.startswith("."))
    elif p.is_file():
        files = [p]
    else:
        raise EvalInputError(f"CVQA input not found: {p}")
    if not files:
        raise EvalInputError(f"{p}: no .jsonl or .parquet files")
    rows = []
    for f in files:
        rows.extend(_parquet_rows(f) if f.suffix == ".parquet" else _jsonl_rows(f))
    if not rows:
        raise EvalInputError(f"{p}: no CVQA rows")
    return rows


def _image_sources(rows: list[dict], batch_size: int):
    """Yield (positions, sources) chunks: plain files in one chunk, Parquet images file by file in blocks."""
    import pyarrow.parquet as pq

    plain = [(k, r["image"]) for k, r in enumerate(rows) if not isinstance(r["image"], ParquetImage)]
    if plain:
        yield [k for k, _ in plain], [s for _, s in plain]
    by_file: dict[str, list[tuple[int, int]]] = {}
    for k, r in enumerate(rows):
        if isinstance(r["image"], ParquetImage):
            by_file.setdefault(r["image"].file, []).append((r["image"].row, k))
    for file, wanted in by_file.items():
        want = dict(wanted)
        pf = pq.ParquetFile(file)
        col = "image" if "image" in pf.schema_arrow.names else "Image"
        start = 0
        for batch in pf.iter_batches(columns=[col], batch_size=max(64, batch_size * 4)):
            pos, src = [], []
            for j, v in enumerate(batch.column(0).to_pylist()):
                if start + j in want:
                    data = v.get("bytes") if isinstance(v, dict) else v
                    if not data:
                        raise EvalInputError(f"{file} row {start + j}: no image bytes")
                    pos.append(want[start + j])
                    src.append(data)
            start += batch.num_rows
            if pos:
                yield pos, src


def evaluate_cvqa(model, tokenizer, rows: list[dict], transform, device, *, english: bool = False,
                  batch_size: int = 256, workers: int = 0, progress: bool = True) -> dict:
    """{locales: {subset: {accuracy, questions, chance}}, mean_accuracy, questions, unlabeled}."""
    labelled = [r for r in rows if r["label"] >= 0]
    if not labelled:
        raise EvalInputError("CVQA: no row has a label (the public test split withholds answers)")
    texts, spans = [], []
    for r in labelled:
        q, opts = r["question"], r["options"]
        if english:
            if r["question_en"] is None or r["options_en"] is None:
                raise EvalInputError(f"CVQA row {r['id']}: no Translated Question / Translated Options for --cvqa-english")
            q, opts = r["question_en"], r["options_en"]
        spans.append((len(texts), len(opts)))
        texts.extend(f"{q} {o}".strip() for o in opts)
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    feats = torch.empty(0)
    with Progress(len(labelled), "cvqa images", "img", progress) as bar:
        for pos, src in _image_sources(labelled, batch_size):
            e = encode_image_sources(model, src, transform, device, batch_size, workers, bar)
            if feats.numel() == 0:
                feats = torch.empty(len(labelled), e.shape[1])
            feats[torch.tensor(pos)] = e
    with Progress(len(unique), "cvqa options", "text", progress) as bar:
        txt = encode_texts(model, tokenizer, unique, device, batch_size, bar)
    width = max(n for _, n in spans)
    scores = torch.full((len(labelled), width), float("-inf"))
    for k, (s, n) in enumerate(spans):
        ids = torch.tensor([where[t] for t in texts[s:s + n]])
        scores[k, :n] = txt[ids] @ feats[k]
    correct = top1_correct(scores, torch.tensor([r["label"] for r in labelled]))
    out = {}
    for subset in sorted({r["subset"] for r in labelled}):
        sel = [k for k, r in enumerate(labelled) if r["subset"] == subset]
        out[subset] = {"accuracy": int(correct[sel].sum()) / len(sel), "questions": len(sel),
                       "chance": mean(1.0 / spans[k][1] for k in sel)}
    return {"locales": out, "mean_accuracy": mean(r["accuracy"] for r in out.values()), "questions": len(labelled),
            "unlabeled": len(rows) - len(labelled), "text": "english" if english else "native",
            "locales_scored": len(out)}
