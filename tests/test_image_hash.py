"""curation.image_hash: the pHash definition, its robustness on generated images, Hamming distance,
pigeonhole band keys, and clusters equal to comparing every pair.

Images are drawn here with Pillow from seeded generators: gradient backgrounds with a few
shapes; copies are resized, JPEG-recompressed, brightened or re-contrasted.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageEnhance

from curation import image_hash as ih

PROPS = settings(derandomize=True, max_examples=200, deadline=None)


def scene(seed: int, size: int = 256) -> Image.Image:
    """A gradient between two random colours with 3-7 random rectangles and ellipses."""
    rng = np.random.default_rng([seed, 0x1AC])
    y, x = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * x + np.sin(angle) * y
    t = (t - t.min()) / (t.max() - t.min())
    img = Image.fromarray((c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.rectangle if rng.integers(0, 2) else draw.ellipse
        shape([x0, y0, x0 + w, y0 + h], fill=colour)
    return img


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def copies(img: Image.Image) -> dict[str, Image.Image]:
    return {
        "half": img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC),
        "stretched": img.resize((400, 300), Image.Resampling.BILINEAR),
        "jpeg30": jpeg(img, 30),
        "small_jpeg": jpeg(img.resize((160, 160)), 50),
        "brighter": ImageEnhance.Brightness(img).enhance(1.1),
        "flatter": ImageEnhance.Contrast(img).enhance(0.9),
        "grey": img.convert("L"),
        "rgba": img.convert("RGBA"),
    }


@pytest.fixture(scope="module")
def originals() -> list[Image.Image]:
    return [scene(s) for s in range(30)]


# --- the definition ------------------------------------------------------------------------------


def test_phash_is_the_dct_hash_of_imagehash(originals):
    """imagehash.phash's definition with scipy's DCT (a datasketch dependency, so installed)."""
    fftpack = pytest.importorskip("scipy.fftpack")
    for img in originals:
        pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        low = fftpack.dct(fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
        bits = (low > np.median(low)).ravel()
        assert ih.phash(img) == int("".join("1" if b else "0" for b in bits), 2)
    try:
        import imagehash
    except ImportError:
        return
    assert all(ih.phash(img) == int(str(imagehash.phash(img)), 16) for img in originals)


def test_batch_hashes_equal_single_ones(originals):
    batch = ih.phashes(originals)
    assert batch.dtype == np.uint64
    assert batch.tolist() == [ih.phash(img) for img in originals]
    assert len(ih.phashes([])) == 0
    assert ih.as_int64(batch).view(np.uint64).tolist() == batch.tolist()


def test_copies_stay_close_and_other_images_far(originals):
    hashes = ih.phashes(originals)
    worst = 0
    for img, h in zip(originals, hashes.tolist(), strict=True):
        for name, copy in copies(img).items():
            d = int(ih.hamming(h, ih.phash(copy)))
            worst = max(worst, d)
            assert d <= ih.MAX_DISTANCE, (name, d)
    d = ih.hamming(hashes[:, None], hashes[None, :])[np.triu_indices(len(hashes), 1)]
    assert d.min() > 3 * ih.MAX_DISTANCE and 24 <= np.median(d) <= 40, (d.min(), np.median(d))


# --- Hamming distance and bands ------------------------------------------------------------------------


def test_hamming_and_popcount():
    assert ih.hamming(0, 0xFFFFFFFFFFFFFFFF) == 64
    assert ih.hamming([0b1011, 1 << 63], [0, 0]).tolist() == [3, 1]
    signed = np.array([-1, 0], dtype=np.int64)  # -1 is all 64 bits, as Spark stores them
    assert ih.hamming(signed, np.zeros(2, dtype=np.uint64)).tolist() == [64, 0]
    values = np.array([0, 1, 0xFF, 0x8000000000000001, 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    assert ih.popcount(values).tolist() == [bin(int(v)).count("1") for v in values]
    as_bytes = values.view(np.uint8).reshape(-1, 8)
    assert ih._POPCOUNT8[as_bytes].sum(axis=1).tolist() == ih.popcount(values).tolist()  # the numpy < 2 path


@pytest.mark.parametrize("d", [0, 3, 4, 7, 63])
def test_band_widths_split_64_bits(d):
    widths = ih.band_widths(d)
    assert len(widths) == d + 1 and sum(widths) == 64 and max(widths) - min(widths) <= 1


@PROPS
@given(st.integers(0, 2**64 - 1), st.sets(st.integers(0, 63), max_size=ih.MAX_DISTANCE), st.integers(0, 6))
def test_pigeonhole_hashes_within_d_share_a_band_key(h, flips, d):
    other = h
    for bit in sorted(flips)[:d]:
        other ^= 1 << bit
    keys = ih.band_keys([h, other], d)
    assert set(keys[0].tolist()) & set(keys[1].tolist())


# --- clusters --------------------------------------------------------------------------------------------


def _hash_family(seed: int, n: int) -> list[int]:
    """n hashes: random centres (from seeded generators) with copies 1..6 bits away, and chains."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(n):
        centre = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        out.append(centre)
        for _ in range(int(rng.integers(0, 4))):
            flip = rng.choice(64, size=int(rng.integers(1, 7)), replace=False)
            out.append(centre ^ int(sum(1 << int(b) for b in flip)))
    return out


@pytest.mark.parametrize("d", [2, ih.MAX_DISTANCE, 8])
def test_clusters_equal_comparing_every_pair(d):
    hashes = _hash_family(d, 300)
    keys = np.arange(1000, 1000 + len(hashes), dtype=np.int64)[::-1].copy()  # ids unrelated to position
    got = ih.image_clusters(hashes, keys, d)
    assert np.array_equal(got, ih.exact_clusters(hashes, keys, d))
    for cid in np.unique(got):
        assert cid == keys[got == cid].min()
    pairs = ih.near_duplicate_pairs(hashes, d)
    h = np.array(hashes, dtype=np.uint64)
    i, j = np.nonzero(np.triu(ih.hamming(h[:, None], h[None, :]) <= d, k=1))
    assert set(pairs) == set(zip(i.tolist(), j.tolist(), strict=True))


def test_clusters_of_generated_images_and_their_copies(originals):
    images, truth = [], []
    for k, img in enumerate(originals[:12]):
        group = [img, *copies(img).values()]
        images += group
        truth += [k] * len(group)
    ids = ih.image_clusters(ih.phashes(images))
    truth = np.array(truth)
    # every copy joins its original, and no two originals are joined
    for k in range(12):
        assert len(set(ids[truth == k].tolist())) == 1
    assert len(set(ids.tolist())) == 12


def test_a_huge_band_group_is_checked_in_blocks():
    """Blank and near-blank images share most bits: one band group of a thousand and more."""
    base = 0xFFFF000000000000
    hashes = [base | (i << 8) for i in range(1200)] + [base] * 5
    keys = np.arange(len(hashes), dtype=np.int64)
    band, member, ph = ih.band_rows(keys, hashes, 4)
    small = ih.close_pairs(band, member, ph, 4, block=101)
    large = ih.close_pairs(band, member, ph, 4, block=4096)
    assert np.array_equal(small[0], large[0]) and np.array_equal(small[1], large[1])
    assert np.array_equal(ih.image_clusters(hashes, keys, 4), ih.exact_clusters(hashes, keys, 4))


def test_spark_shape_rows_per_task_then_edges_per_bucket():
    """Band rows from several tasks, grouped into buckets by band key: the same clusters."""
    from curation.near_dup import cluster_ids, components

    hashes = _hash_family(11, 200)
    keys = np.arange(len(hashes), dtype=np.int64) * 7919
    rows = [ih.band_rows(keys[k::3], [hashes[i] for i in range(k, len(hashes), 3)]) for k in range(3)]
    band, member, ph = (np.concatenate(c) for c in zip(*rows, strict=True))
    bucket = band.view(np.uint64) % np.uint64(5)
    edges = [ih.close_pairs(band[bucket == b], member[bucket == b], ph[bucket == b]) for b in range(5)]
    nodes, roots = components(np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges]))
    assert np.array_equal(cluster_ids(keys, nodes, roots), ih.image_clusters(hashes, keys))
