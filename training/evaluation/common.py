"""What every benchmark shares: loading a checkpoint, batched encoding, progress, input errors.

Images are decoded and transformed in DataLoader workers (decoding, not the model, bounds a CPU
run and keeps a GPU waiting otherwise) in batches, under bf16 autocast on CUDA; embeddings come
back L2-normalised, float32, on the CPU, in the order of the inputs. Texts are tokenized and
encoded in batches the same way.
"""

from __future__ import annotations

import io
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PROGRESS_LOG_EVERY_S = 10.0


class EvalInputError(ValueError):
    """A benchmark input is missing or not in its published layout: a user error (exit 2, one line)."""


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A tqdm bar when the stream is a terminal; otherwise a plain line every `every_s` seconds and
    one at the end, so a log file or a cron mail shows a long evaluation advancing."""

    def __init__(self, total: int, desc: str, unit: str = "item", enabled: bool = True, stream=None,
                 every_s: float = PROGRESS_LOG_EVERY_S):
        self.total, self.desc, self.unit, self.every_s = int(total), desc, unit, every_s
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self._next_log = self.t0 + every_s
        self._bar = None
        self.mode = None
        if enabled:
            self.mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             mininterval=0.5)

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 and self.done < self.total else None
        return (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({rate:,.1f}/s, {elapsed:.0f}s"
                + (f", ETA {eta:.0f}s)" if eta is not None else ")"))

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
        elif self.mode == "log" and time.monotonic() >= self._next_log:
            print(self.line(), file=self.stream, flush=True)
            self._next_log = time.monotonic() + self.every_s

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "log":
            print(self.line(), file=self.stream, flush=True)
            self.mode = None  # closing twice prints once

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --- encoding --------------------------------------------------------------------------------------


def _source_name(src) -> str:
    return f"<{len(src)} bytes>" if isinstance(src, (bytes, bytearray)) else str(src)


class ImageSources(torch.utils.data.Dataset):
    """Images given as file paths or encoded bytes, transformed for the model (picklable for workers)."""

    def __init__(self, sources: list, transform):
        self.sources, self.transform = sources, transform

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> torch.Tensor:
        src = self.sources[i]
        try:
            with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as img:
                return self.transform(img)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            # a benchmark scored on a silently smaller image set is not that benchmark
            raise EvalInputError(f"cannot read image {_source_name(src)}: {e}") from None


@torch.no_grad()
def encode_image_sources(model, sources: list, transform, device: torch.device, batch_size: int = 256,
                         workers: int = 0, progress: Progress | None = None) -> torch.Tensor:
    """[N, dim] normalised float32 CPU embeddings of images given as paths or bytes, in order."""
    if not sources:
        raise EvalInputError("no images to encode")
    loader = torch.utils.data.DataLoader(ImageSources(list(sources), transform), batch_size=batch_size,
                                         shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
    out = []
    for x in loader:
        with autocast(device):
            out.append(model.encode_image(x.to(device, non_blocking=True)).float().cpu())
        if progress is not None:
            progress.update(len(x))
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], device, batch_size: int = 256,
                 progress: Progress | None = None) -> torch.Tensor:
    """[N, dim] normalised float32 embeddings of texts, in order (on `device`'s host: CPU)."""
    out = []
    for i in range(0, len(texts), batch_size):
        chunk = texts[i:i + batch_size]
        with autocast(device):
            out.append(model.encode_text(tokenizer(chunk).to(device)).float().cpu())
        if progress is not None:
            progress.update(len(chunk))
    if not out:
        raise EvalInputError("no texts to encode")
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_images(model, images: list[bytes], transform, device, batch_size: int = 256) -> torch.Tensor:
    """[N, dim] normalised embeddings of encoded image bytes (in memory; the held-out shards' path)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([transform(Image.open(io.BytesIO(b))) for b in images[i:i + batch_size]]).to(device)
        with autocast(device):
            out.append(model.encode_image(x).float())
    return F.normalize(torch.cat(out), dim=-1)


# --- checkpoints -------------------------------------------------------------------------------------


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoints/step-*.pt of a run directory."""
    p = Path(path)
    if p.is_dir():
        ckpts = sorted((p / "checkpoints").glob("step-*.pt")) or sorted(p.glob("step-*.pt"))
        if not ckpts:
            raise EvalInputError(f"no checkpoint in {p} (expected {p}/checkpoints/step-*.pt)")
        return ckpts[-1]
    if not p.is_file():
        raise EvalInputError(f"checkpoint not found: {p}")
    return p


def default_tokenizer_path(ckpt: Path) -> Path:
    """The run's tokenizer.json: <run>/tokenizer.json for <run>/checkpoints/step-*.pt, else beside the file."""
    if ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / "tokenizer.json").is_file():
        return ckpt.parent.parent / "tokenizer.json"
    return ckpt.parent / "tokenizer.json"


def load_checkpoint(path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                    device: torch.device | None = None):
    """(model in eval mode on device, tokenizer, info) of a checkpoint written by training.train."""
    from training.model import CLIP, ModelConfig
    from training.tokenizer import Tokenizer

    ckpt = resolve_checkpoint(path)
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "model" not in ck or "model_config" not in ck:
        raise EvalInputError(f"{ckpt} is not a training checkpoint (no model / model_config)")
    cfg = ModelConfig.from_dict(ck["model_config"])
    tok_path = Path(tokenizer) if tokenizer else default_tokenizer_path(ckpt)
    if not tok_path.is_file():
        raise EvalInputError(f"tokenizer not found at {tok_path}: pass --tokenizer FILE")
    tok = Tokenizer(tok_path, cfg.text.context_length)
    model = CLIP(cfg, pad_id=tok.pad_id)
    model.load_state_dict(ck["model"])
    device = device or resolve_device()
    model.to(device).eval()
    info = {"checkpoint": str(ckpt), "step": int(ck.get("step", -1)), "tokenizer": str(tok_path),
            "image_size": cfg.vision.image_size, "embed_dim": cfg.embed_dim}
    return model, tok, info
