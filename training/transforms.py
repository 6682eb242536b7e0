"""Image transforms with Pillow and torch (no torchvision): resize, crops, normalisation.

Random crops draw from an explicit numpy Generator that the dataset seeds from
(seed, uuid, epoch), so augmentation is reproducible and independent of worker layout.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_resized_crop_box(w: int, h: int, rng: np.random.Generator, scale=(0.8, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """The torchvision RandomResizedCrop box rule (10 tries, then a centre crop)."""
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x = int(rng.integers(0, w - cw + 1))
            y = int(rng.integers(0, h - ch + 1))
            return x, y, x + cw, y + ch
    s = min(w, h)
    return (w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s


def to_tensor(img: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """HWC uint8 -> normalised CHW float32."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
    scale = np.float32(1.0 / 255.0)
    x = (a * scale - np.asarray(mean, dtype=np.float32)[:, None, None]) / np.asarray(std, dtype=np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(x))


class ImageTransform:
    """Train: random-resized crop (seeded by the caller's rng); eval: resize shorter side + centre crop."""

    def __init__(self, size: int, train: bool, scale=(0.8, 1.0), mean=CLIP_MEAN, std=CLIP_STD):
        self.size, self.train, self.scale, self.mean, self.std = int(size), bool(train), tuple(scale), mean, std

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        img = img.convert("RGB")
        if self.train:
            if rng is None:
                raise ValueError("train transform needs an explicit rng (no global RNG)")
            box = random_resized_crop_box(img.size[0], img.size[1], rng, self.scale)
            img = img.resize((self.size, self.size), Image.BICUBIC, box=box)
        else:
            img = center_crop(resize_shorter(img, self.size), self.size)
        return to_tensor(img, self.mean, self.std)
