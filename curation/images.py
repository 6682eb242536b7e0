"""Turn downloaded bytes into a training image: guard, decode, RGB, shrink, JPEG, hash.

Untrusted bytes from the web: the declared pixel count is checked from the header alone,
before any pixel is decoded, so a tiny file declaring a huge canvas (decompression bomb)
costs nothing. Likewise a JPEG's scans are counted from its marker structure before either
decoder sees it: each progressive scan is one more pass over the whole coefficient buffer,
however few bytes it holds, so a few hundred kilobytes of repeated tiny scans on a large canvas
cost a minute of CPU (and twice, when the strict fast path hands the file on to Pillow). Real
progressive JPEGs have about ten scans; above MAX_JPEG_SCANS the image is `too_many_scans`.

JPEG sources (most of the web) take a fast path through libjpeg-turbo's TurboJPEG API
(simplejpeg): DCT scaling in eighths (M/8, finer than Pillow's draft mode, which only halves)
straight to the smallest size whose shorter side still covers the target, decoded into the
4-byte RGBX layout that the resize and the encoder take without a copy. Anything it does not
read cleanly (CMYK, corrupt or truncated data, other formats) goes through Pillow, whose
verdict decides the reason code. Either way the pixels end as one RGBX array, which is
resized (torch when installed: `resizer="auto"`; its antialiased bicubic/bilinear kernels
for uint8 are vectorised and about 2x faster than Pillow's, same filter definition) and
encoded once, by the same encoder.

With `phash=True` the 64-bit perceptual hash (curation.image_hash.phash: grey, 32 x 32 Lanczos,
DCT) is taken from the resized pixels already in memory, before they are encoded: no second
decode, and the hash is that of the stored image (up to its JPEG rounding, a bit or two at most).

Every failure is one of the reason codes in REASONS; nothing here raises on bad input.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import threading
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from curation import image_hash

RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZERS = ("auto", "torch", "pillow")
TORCH_MODES = {"bicubic": "bicubic", "bilinear": "bilinear"}  # antialiased in torch; others use Pillow
_TORCH_LOCK = threading.Lock()
_torch = None
REASONS = ("empty_body", "not_an_image", "decompression_bomb", "too_many_scans", "too_small", "truncated_image",
           "decode_error")
# libjpeg's progressive scripts write 10 scans for colour and 6 for grey; encoders that search for
# better scripts (mozjpeg, jpegrescan) stay within a few more. 48 passes bound the decode at
# about five times an ordinary progressive image of the same size.
MAX_JPEG_SCANS = 48
# a marker: 0xFF then a code that is neither a stuffed zero, a fill byte nor a restart (RSTn
# sits inside entropy-coded data); libjpeg finds the end of a scan, or skips garbage, the same way
_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_NO_LENGTH = frozenset({0x01, 0xD8})  # TEM, SOI: markers without a segment
_EOI, _SOS = 0xD9, 0xDA


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes  # JPEG bytes
    width: int
    height: int
    original_size: int  # bytes downloaded
    sha256: str  # of `data`: verifies stored bytes, and equal pixels give equal hashes (dedup)
    phash: int | None = None  # 64-bit perceptual hash of the stored pixels (unsigned), when asked for


def target_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """Size with the shorter side at most `shorter`, aspect kept (rounded), never upscaled."""
    short = min(width, height)
    if short <= shorter:
        return width, height
    scale = shorter / short
    if width <= height:
        return shorter, max(1, round(height * scale))
    return max(1, round(width * scale)), shorter


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white (not the black that a plain convert gives)."""
    if img.mode == "RGB":
        return img
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def resolve_resizer(resizer: str = "auto") -> str:
    """"torch" or "pillow" for a configured resizer; "auto" is torch when it is installed.

    Selecting torch imports it and pins it to one intra-op thread: images are processed in
    parallel threads already, and torch's own pool would oversubscribe the cores.
    """
    global _torch
    if resizer not in RESIZERS:
        raise ValueError(f"resizer must be one of {RESIZERS}, got {resizer!r}")
    if resizer == "pillow" or (resizer == "auto" and importlib.util.find_spec("torch") is None):
        return "pillow"
    with _TORCH_LOCK:
        if _torch is None:
            import torch

            torch.set_num_threads(1)
            _torch = torch
    return "torch"


def _rgbx(img: Image.Image) -> np.ndarray:
    """An RGB image's pixels as a writable (height, width, 4) uint8 array (Pillow's own layout)."""
    return np.frombuffer(bytearray(img.tobytes("raw", "RGBX")), np.uint8).reshape(img.size[1], img.size[0], 4)


def _image(pixels: np.ndarray) -> Image.Image:
    """An RGBX image over the array's own memory (no copy), for Pillow's filters."""
    height, width = pixels.shape[:2]
    return Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)


def _resize_torch(pixels: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Antialiased resize in torch, channels-last uint8 in and out (no float copy, no repacking)."""
    nchw = _torch.from_numpy(pixels)[None].permute(0, 3, 1, 2)  # a view: batch stride H*W*4 keeps it channels-last
    out = _torch.nn.functional.interpolate(nchw, size=(size[1], size[0]), mode=mode, antialias=True)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def resize_pixels(pixels: np.ndarray, size: tuple[int, int], resample: str = "bicubic",
                  resizer: str = "pillow") -> np.ndarray:
    """RGBX pixels resized to `size` (width, height) with the configured filter and resizer."""
    height, width = pixels.shape[:2]
    if (width, height) == size:
        return pixels
    if resizer == "torch" and resample in TORCH_MODES:
        # as Pillow's reducing_gap=3: an integer box reduction first for large factors
        fx, fy = int(width / size[0] / 3.0) or 1, int(height / size[1] / 3.0) or 1
        if fx > 1 or fy > 1:
            pixels = np.array(_image(pixels).reduce((fx, fy)))  # writable: torch takes it as is
        return _resize_torch(pixels, size, TORCH_MODES[resample])
    return np.asarray(_image(pixels).resize(size, RESAMPLE[resample], reducing_gap=3.0))  # read-only is enough


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """The stored JPEG of RGBX pixels: 4:2:0 chroma, as Pillow's default."""
    return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGBX", colorsubsampling="420")


def _pixel_limit(max_pixels: int) -> int:
    """Ours, or Pillow's own bomb limit (2x Image.MAX_IMAGE_PIXELS) where that is lower."""
    pillow = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow is None else min(max_pixels, 2 * pillow)


def jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """The number of scans (SOS markers) of a JPEG, walking its segments as libjpeg reads them.

    Segments are skipped by their length (so an EXIF thumbnail's own scans do not count),
    entropy-coded data up to the next marker; the walk ends at EOI, at the end of the data or
    past `stop_after` scans. Linear in the size, mostly in the regex engine.
    """
    scans, pos, end = 0, 2, len(data)
    while True:
        m = _MARKER.search(data, pos)
        if m is None:
            return scans
        code, pos = data[m.start() + 1], m.end()
        if code == _EOI:
            return scans
        if code in _NO_LENGTH:
            continue
        if pos + 2 > end:
            return scans
        if code == _SOS:
            scans += 1
            if stop_after is not None and scans > stop_after:
                return scans
        pos += max(2, int.from_bytes(data[pos:pos + 2], "big"))  # the segment; a scan's data follows it


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG the fast path decodes (YCbCr, grey or RGB), else None."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (width, height) if colorspace in ("YCbCr", "Gray", "RGB") else None


def _decode_jpeg(data: bytes, width: int, height: int, image_size: int) -> np.ndarray | None:
    """RGBX pixels, DCT-scaled to the smallest M/8 size whose shorter side covers `image_size`.

    None on any libjpeg error or warning (strict): Pillow then decides what the bytes are.
    When the image shrinks anyway, libjpeg's fast IDCT and upsampling are used: what they lose
    is lost in the downscale (Pillow's draft mode does the same).
    """
    shrink = min(width, height) > image_size
    side = image_size if shrink else 0
    try:
        return simplejpeg.decode_jpeg(
            data, colorspace="RGBX", fastdct=shrink, fastupsample=shrink, strict=True,
            min_height=side if height <= width else 0, min_width=side if width < height else 0,
        )
    except ValueError:
        return None


def _decode_pillow(data: bytes, image_size: int, max_pixels: int, min_side: int):
    """(RGBX pixels, declared (width, height), None) or (None, None, reason), for anything Pillow
    opens: every format, every mode."""
    try:
        img = Image.open(io.BytesIO(data))  # parses the header only
    except Image.DecompressionBombError:
        return None, None, "decompression_bomb"
    except (UnidentifiedImageError, SyntaxError, ValueError, TypeError, OSError, EOFError):
        return None, None, "not_an_image"
    try:
        width, height = img.size
        reason = _guard(width, height, max_pixels, min_side)
        if reason:
            return None, None, reason
        if img.format == "JPEG" and min(width, height) > image_size:
            img.draft(img.mode, (image_size, image_size))  # keeps both sides >= image_size
            if img.decoderconfig:
                img.decoderconfig = (img.decoderconfig[0], 1)  # libjpeg's fast upsampling and IDCT
        img.decodermaxblock = max(len(data), img.decodermaxblock)  # one decoder call, no suspend/resume
        img.load()
        return _rgbx(_to_rgb(img)), (width, height), None
    except Image.DecompressionBombError:
        return None, None, "decompression_bomb"
    except (OSError, EOFError) as exc:
        reason = "truncated_image" if ("truncated" in str(exc) or isinstance(exc, EOFError)) else "decode_error"
        return None, None, reason
    except (SyntaxError, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, MemoryError):
        return None, None, "decode_error"
    finally:
        img.close()


def _guard(width: int, height: int, max_pixels: int, min_side: int) -> str | None:
    if width * height > _pixel_limit(max_pixels):
        return "decompression_bomb"
    if min(width, height) < min_side:
        return "too_small"
    return None


def process_image(
    data: bytes,
    image_size: int = 256,
    jpeg_quality: int = 90,
    max_pixels: int = 40_000_000,
    min_side: int = 1,
    resample: str = "bicubic",
    resizer: str = "pillow",
    max_scans: int = MAX_JPEG_SCANS,
    phash: bool = False,
) -> tuple[ProcessedImage | None, str | None]:
    """(image, None) or (None, reason). Pillow's own bomb limit (2x Image.MAX_IMAGE_PIXELS) also applies.

    `phash`: also compute the image's perceptual hash from the resized pixels (ProcessedImage.phash).

    `resizer` is "pillow" or "torch" (resolve_resizer's answer: call it once, not per image).
    A JPEG of more than `max_scans` scans is refused before either decoder reads it.
    """
    if not data:
        return None, "empty_body"
    if data[:2] == b"\xff\xd8" and jpeg_scans(data, stop_after=max_scans) > max_scans:
        return None, "too_many_scans"
    pixels, size = None, _jpeg_size(data)
    if size is not None:
        reason = _guard(*size, max_pixels, min_side)
        if reason:
            return None, reason
        pixels = _decode_jpeg(data, *size, image_size)
    if pixels is None:
        pixels, size, reason = _decode_pillow(data, image_size, max_pixels, min_side)
        if reason:
            return None, reason
    # from the declared size: DCT scaling only guarantees that the shorter side covers the target
    tw, th = target_size(*size, image_size)
    try:
        small = resize_pixels(pixels, (tw, th), resample, resizer)
        out = encode_jpeg(small, jpeg_quality)
        ph = image_hash.phash(_image(small)) if phash else None
    except (ValueError, MemoryError):
        return None, "decode_error"
    return ProcessedImage(out, tw, th, len(data), hashlib.sha256(out).hexdigest(), ph), None
