"""curation.images: guard, decode, RGB, resize, JPEG, hash on generated images and hostile bytes."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image
from test_fetch import make_jpeg, make_png, png_bomb

from curation.images import process_image, target_size


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    "w,h,n,expected",
    [(1000, 500, 256, (512, 256)), (500, 1000, 256, (256, 512)), (300, 300, 256, (256, 256)),
     (200, 100, 256, (200, 100)), (257, 10000, 256, (256, 9961)), (3, 1, 1, (3, 1))],
)
def test_target_size_keeps_aspect_and_never_upscales(w, h, n, expected):
    assert target_size(w, h, n) == expected


@pytest.mark.parametrize("w,h", [(1024, 768), (640, 1280), (2000, 300), (257, 257)])
def test_jpeg_is_resized_to_shorter_side_with_draft(w, h):
    src = make_jpeg(w, h, seed=w)
    img, reason = process_image(src, image_size=256, jpeg_quality=85)
    assert reason is None
    out = _decode(img.data)
    assert out.format == "JPEG" and out.mode == "RGB"
    assert out.size == (img.width, img.height) == target_size(w, h, 256)
    assert min(out.size) == 256
    assert img.original_size == len(src)
    assert img.sha256 == hashlib.sha256(img.data).hexdigest()


def test_output_is_deterministic_and_quality_matters():
    src = make_jpeg(800, 600, seed=3)
    a, _ = process_image(src, jpeg_quality=90)
    b, _ = process_image(src, jpeg_quality=90)
    c, _ = process_image(src, jpeg_quality=40)
    assert a.data == b.data and a.sha256 == b.sha256
    assert len(c.data) < len(a.data)


def test_small_images_are_not_upscaled():
    img, reason = process_image(make_jpeg(120, 90), image_size=256)
    assert reason is None and (img.width, img.height) == (120, 90)


def test_transparent_png_becomes_rgb_on_white():
    img, reason = process_image(make_png(400, 300, "RGBA", (0, 0, 0, 0)), image_size=256)
    assert reason is None
    out = _decode(img.data).convert("RGB")
    assert out.mode == "RGB" and out.size == (341, 256)
    r, g, b = out.getpixel((10, 10))
    assert min(r, g, b) > 240  # white, not black


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "1"])
def test_other_modes_convert_to_rgb(mode):
    buf = io.BytesIO()
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    Image.new(mode, (300, 280)).save(buf, fmt)
    img, reason = process_image(buf.getvalue(), image_size=64)
    assert reason is None, mode
    assert _decode(img.data).mode == "RGB"


def test_gif_and_webp_first_frame():
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames = [Image.new("RGB", (100, 80), c) for c in ((255, 0, 0), (0, 255, 0))]
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
        img, reason = process_image(buf.getvalue(), image_size=256)
        assert reason is None and (img.width, img.height) == (100, 80)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty_body"),
        (b"<html><body>hello</body></html>", "not_an_image"),
        (b"\x00" * 1000, "not_an_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not_an_image"),  # JPEG magic, nothing valid after
    ],
)
def test_garbage_is_rejected_with_a_reason(data, reason):
    assert process_image(data) == (None, reason)


def test_truncated_jpeg_and_png():
    jpeg = make_jpeg(640, 480, seed=5)
    assert process_image(jpeg[: len(jpeg) // 2]) == (None, "truncated_image")
    buf = io.BytesIO()
    Image.effect_noise((300, 300), 64).save(buf, "PNG")
    png = buf.getvalue()
    img, reason = process_image(png[: len(png) // 2])
    assert img is None and reason in ("truncated_image", "decode_error")


def test_decompression_bombs_are_refused_before_decoding():
    assert process_image(png_bomb(30000, 30000)) == (None, "decompression_bomb")  # Pillow's own limit
    assert process_image(png_bomb(9000, 9000), max_pixels=40_000_000) == (None, "decompression_bomb")  # ours
    assert process_image(png_bomb(100, 100))[1] in ("truncated_image", "decode_error")  # honest size, no data


def test_too_small():
    assert process_image(make_jpeg(4, 4), min_side=8) == (None, "too_small")


def test_resample_filters_and_config_validation():
    from curation.download_config import DownloadConfig

    src = make_jpeg(900, 600, seed=9)
    outs = {f: process_image(src, image_size=128, resample=f)[0] for f in ("bicubic", "bilinear", "box", "lanczos")}
    assert {(o.width, o.height) for o in outs.values()} == {(192, 128)}
    assert len({o.sha256 for o in outs.values()}) == 4  # the filter really changes the pixels
    with pytest.raises(ValueError):
        DownloadConfig(resample="nearest-ish")
    with pytest.raises(ValueError):
        DownloadConfig(jpeg_quality=0)


def _pixels(data: bytes):
    import numpy as np

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("make, size, resample", [
    (lambda: make_jpeg(1200, 900, seed=3), (341, 256), "bicubic"),  # draft path
    (lambda: make_jpeg(900, 1400, seed=4), (256, 398), "bilinear"),
    (lambda: _png_photo(2400, 1000), (614, 256), "bicubic"),  # large factor: integer reduce first
])
def test_torch_resizer_matches_pillow(make, size, resample):
    """torch's antialiased kernels give Pillow's pixels to within JPEG noise; same size, same checks."""
    from curation.images import resolve_resizer

    assert resolve_resizer("auto") == "torch" == resolve_resizer("torch")  # torch is installed here
    assert resolve_resizer("pillow") == "pillow"
    data = make()
    a, ra = process_image(data, image_size=256, resample=resample, resizer="torch")
    b, rb = process_image(data, image_size=256, resample=resample, resizer="pillow")
    assert ra is rb is None and (a.width, a.height) == (b.width, b.height) == size
    diff = abs(_pixels(a.data) - _pixels(b.data))
    assert diff.mean() < 1.0 and diff.max() <= 24  # re-encoded JPEGs: tiny, local differences only
    again, _ = process_image(data, image_size=256, resample=resample, resizer="torch")
    assert again.sha256 == a.sha256  # deterministic


def _png_photo(width: int, height: int) -> bytes:
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([(x * 7 + y) % 256, (x * 3) % 256, (y * 5) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "PNG")
    return buf.getvalue()


def test_resizer_config_is_validated():
    from curation.download_config import DownloadConfig
    from curation.images import resolve_resizer

    with pytest.raises(ValueError, match="resizer"):
        DownloadConfig(resizer="opencv")
    with pytest.raises(ValueError, match="resizer"):
        resolve_resizer("opencv")


# --- the JPEG fast path (TurboJPEG via simplejpeg) and its Pillow fallback ---------------------------


def _with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same bytes with the frame header (SOF0) declaring another size: pixel data unchanged."""
    import struct

    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def test_jpeg_dct_scaling_in_eighths_covers_the_target():
    from curation.images import _decode_jpeg

    for w, h in [(1000, 800), (800, 1000), (1920, 1440), (300, 290)]:
        pixels = _decode_jpeg(make_jpeg(w, h, seed=1), w, h, 256)
        ph, pw = pixels.shape[:2]
        assert pixels.shape[2] == 4 and min(pw, ph) >= 256
        # the smallest M/8 scale whose shorter side still covers 256 (Pillow's draft only halves:
        # 1000x800 would decode at 500x400)
        m = min(k for k in range(1, 9) if -(-min(w, h) * k // 8) >= 256)
        assert (pw, ph) == (-(-w * m // 8), -(-h * m // 8))
        img, reason = process_image(make_jpeg(w, h, seed=1))
        assert reason is None and (img.width, img.height) == target_size(w, h, 256)


def test_jpeg_fast_path_matches_the_pillow_path(monkeypatch):
    """The same picture through TurboJPEG (M/8 scaling) or Pillow (draft): same size, same pixels
    to within JPEG noise."""
    import numpy as np

    import curation.images as images

    y, x = np.mgrid[0:800, 0:1000]
    photo = np.stack([127 + 100 * np.sin(x / (50 + 15 * c) + y / 70) for c in range(3)], -1)
    grain = np.random.default_rng(7).normal(0, 4, size=photo.shape)  # a photo: smooth plus grain
    buf = io.BytesIO()
    Image.fromarray(np.clip(photo + grain, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
    src = buf.getvalue()
    fast, _ = process_image(src, resizer="torch")
    monkeypatch.setattr(images, "_jpeg_size", lambda data: None)  # every JPEG through Pillow
    slow, _ = process_image(src, resizer="torch")
    assert (fast.width, fast.height) == (slow.width, slow.height) == (320, 256)
    diff = np.abs(_pixels(fast.data) - _pixels(slow.data))
    assert diff.mean() < 1.5 and diff.max() <= 32
    assert fast.sha256 != slow.sha256  # two decoders really ran


def test_jpeg_that_libjpeg_warns_about_goes_through_pillow():
    from curation.images import _decode_jpeg, _jpeg_size

    src = make_jpeg(640, 480, seed=2)
    mid = len(src) // 2
    warned = src[:mid] + b"\xff\xd3" + src[mid:]  # a stray restart marker: "corrupt data", recoverable
    assert _jpeg_size(warned) == (640, 480)
    assert _decode_jpeg(warned, 640, 480, 256) is None  # strict: the warning is an error there
    img, reason = process_image(warned)
    assert reason is None and (img.width, img.height) == (341, 256)  # Pillow accepts it, as before


def test_progressive_and_grey_jpegs():
    src = Image.open(io.BytesIO(make_jpeg(900, 700, seed=4)))
    for kwargs, mode in (({"progressive": True}, "RGB"), ({}, "L")):
        buf = io.BytesIO()
        src.convert(mode).save(buf, "JPEG", quality=90, **kwargs)
        img, reason = process_image(buf.getvalue())
        assert reason is None and (img.width, img.height) == (329, 256)
        out = _decode(img.data)
        assert out.mode == "RGB"
        if mode == "L":
            r, g, b = out.split()
            assert r.tobytes() == g.tobytes() == b.tobytes()  # grey stays grey


def test_jpeg_bomb_is_refused_from_its_header():
    from curation.images import _jpeg_size

    bomb = _with_sof_size(make_jpeg(64, 64), 9000, 9000)  # 81 MP declared, 64x64 of data
    assert _jpeg_size(bomb) == (9000, 9000)  # the fast path reads the declared size
    assert process_image(bomb, max_pixels=40_000_000) == (None, "decompression_bomb")
    assert process_image(_with_sof_size(make_jpeg(64, 64), 4, 300), min_side=8) == (None, "too_small")


# --- progressive scans: counted from the markers, refused before any decoder runs ------------------


def _repeated_scans(side: int, copies: int, garbage: bytes = b"") -> bytes:
    """A flat grey progressive JPEG whose last scan (a few bytes of EOB runs) is repeated `copies`
    times, each copy after `garbage` (libjpeg skips extraneous bytes before a marker, with a
    warning): every copy is one more pass of the decoder over the whole canvas."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    eoi, last = data.rindex(b"\xff\xd9"), data.rindex(b"\xff\xda")
    return data[:eoi] + (garbage + data[last:eoi]) * copies + data[eoi:]


def test_progressive_scans_are_counted_from_the_markers():
    from curation.images import MAX_JPEG_SCANS, jpeg_scans

    src = Image.open(io.BytesIO(make_jpeg(300, 200, seed=6)))
    counts = {}
    for name, mode, kwargs in (("baseline", "RGB", {}), ("progressive", "RGB", {"progressive": True}),
                               ("grey", "L", {"progressive": True}), ("cmyk", "CMYK", {"progressive": True}),
                               ("restarts", "RGB", {"progressive": True, "restart_marker_blocks": 1})):
        buf = io.BytesIO()
        src.convert(mode).save(buf, "JPEG", quality=90, **kwargs)
        counts[name] = jpeg_scans(buf.getvalue())
    assert counts == {"baseline": 1, "progressive": 10, "grey": 6, "cmyk": 18, "restarts": 10}
    assert max(counts.values()) < MAX_JPEG_SCANS
    # an EXIF segment holding a whole progressive JPEG (a thumbnail) is skipped by its length
    thumb = io.BytesIO()
    src.save(thumb, "JPEG", progressive=True)
    buf = io.BytesIO()
    src.save(buf, "JPEG", exif=b"Exif\x00\x00" + thumb.getvalue())
    assert jpeg_scans(buf.getvalue()) == 1
    assert jpeg_scans(_repeated_scans(64, 100)) == 6 + 100
    assert jpeg_scans(_repeated_scans(64, 100, garbage=b"\x00\x17")) == 6 + 100
    assert jpeg_scans(_repeated_scans(64, 100), stop_after=10) == 11  # stops early


@pytest.mark.parametrize("garbage", [b"", b"\x00\x17\xff\x00"])
def test_jpeg_with_hundreds_of_scans_is_refused_before_decoding(garbage, monkeypatch):
    """2000x2000 with 400 repeated scans: 20 KB that the decoders spend seconds on (both of them:
    the strict fast path gives the warned-about file to Pillow); refused from its markers alone."""
    import time

    import simplejpeg

    import curation.images as images

    crafted = _repeated_scans(2000, 400, garbage)
    assert len(crafted) < 30_000
    decoded = []
    for module, name in ((simplejpeg, "decode_jpeg_header"), (simplejpeg, "decode_jpeg"), (images.Image, "open")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: decoded.append(_name) or _real(*a, **k))
    t0 = time.process_time()
    assert process_image(crafted) == (None, "too_many_scans")
    assert time.process_time() - t0 < 0.5
    assert decoded == []  # neither TurboJPEG nor Pillow saw it
    img, reason = process_image(make_jpeg(640, 480, seed=8))  # the spies do see ordinary images
    assert reason is None and decoded
    img, reason = process_image(_repeated_scans(96, 400, garbage), max_scans=10_000)
    assert reason is None and (img.width, img.height) == (96, 96)  # the decoders do accept such a file
