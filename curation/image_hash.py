"""Perceptual image hashes and near-duplicate images within a run.

`phash` is the 64-bit DCT hash of Zauner / hackerfactor's "Looks Like It", defined exactly as
the `imagehash` package's `phash` (bit for bit: the tests of this module compare with it where
it is installed): grey scale, resized to 32 x 32 with Lanczos, 2-D DCT-II, the 8 x 8 lowest
frequencies compared with their median; bit 63 is frequency (0, 0), then row by row. Here it is
a few lines of numpy (the DCT as two small matrix products) instead of a dependency: imagehash
would add PyWavelets for a function this short, and the hash would then depend on its releases.
Resizing, recompressing or slightly re-toning an image moves a few bits; a different image
differs in about half of them.

Near-duplicates are pairs at Hamming distance <= max_distance. By the pigeonhole principle two
hashes within distance d agree exactly on at least one of d + 1 disjoint bit bands, so grouping
by (band, band bits) finds every such pair, and an exact Hamming check on the pairs of each
group removes the rest (multi-index hashing). Clusters are the connected components of the
checked pairs (curation.near_dup.components), each named by its smallest member key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from curation.near_dup import cluster_ids, components, unique_pairs

HASH_SIZE = 8  # 8 x 8 = 64 bits
IMAGE_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor 4: the DCT sees 32 x 32 pixels
# Resizing, JPEG recompression and small brightness or contrast changes move 0-4 bits of the
# generated test images (mostly 0 or 2: the median split flips bits in pairs); unrelated images
# differ in about 32, never fewer than 16 there. 4 bits takes 5 bands of 12-13 bits: a random
# pair of hashes shares one with probability ~7e-4, so a run of n images checks about
# 3.7e-4 n^2 candidate pairs (spread over the band-key buckets); 6 bits would be 17x more.
MAX_DISTANCE = 4
_BAND_SHIFT = 56  # band keys: the band index above the band's bits


def _dct_rows(n: int = IMAGE_SIZE, k: int = HASH_SIZE) -> np.ndarray:
    """The first k rows of the unnormalised DCT-II matrix (scipy.fftpack.dct's, type 2): 2 cos(pi k (2j + 1) / 2n)."""
    j = np.arange(n)
    return 2.0 * np.cos(np.pi * np.arange(k)[:, None] * (2 * j[None, :] + 1) / (2 * n))


_DCT = _dct_rows()
_BIT_WEIGHTS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))  # row-major, first bit on top


def grey_pixels(image: Image.Image) -> np.ndarray:
    """The 32 x 32 float64 grey pixels the hash is computed from (imagehash's preprocessing)."""
    small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


def phash_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """pHashes (uint64) of grey pixel blocks of shape (..., 32, 32)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    low = _DCT @ pixels @ _DCT.T  # (..., 8, 8): the DCT's lowest frequencies
    flat = low.reshape(*low.shape[:-2], HASH_SIZE * HASH_SIZE)
    bits = flat > np.median(flat, axis=-1, keepdims=True)
    return (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=-1, dtype=np.uint64)


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of a decoded image, as an unsigned int (imagehash.phash's bits)."""
    return int(phash_from_pixels(grey_pixels(image)))


def phashes(images: Iterable[Image.Image]) -> np.ndarray:
    """phash of each image, uint64 (the DCT runs once for the whole batch)."""
    blocks = [grey_pixels(img) for img in images]
    if not blocks:
        return np.zeros(0, dtype=np.uint64)
    return phash_from_pixels(np.stack(blocks))


def _u64(hashes) -> np.ndarray:
    """64-bit hashes as uint64 with the same bits: from uint64 or int64 arrays, or Python ints."""
    if isinstance(hashes, np.ndarray):
        if hashes.dtype == np.int64:
            return hashes.view(np.uint64)
        return hashes.astype(np.uint64)
    if isinstance(hashes, (int, np.integer)):
        return np.array(int(hashes) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    return np.array([int(h) & 0xFFFFFFFFFFFFFFFF for h in hashes], dtype=np.uint64)


def as_int64(hashes) -> np.ndarray:
    """Hashes as int64 with the same bits (Spark's long); .view(np.uint64) turns them back."""
    return _u64(hashes).view(np.int64)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each 64-bit value (int64 or uint64), as int64."""
    x = np.asarray(x).view(np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    as_bytes = np.ascontiguousarray(x).reshape(-1).view(np.uint8).reshape(*x.shape, 8)
    return _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.int64)


def hamming(a, b) -> np.ndarray:
    """Hamming distance between 64-bit hashes, elementwise (broadcasting), int64."""
    return popcount(np.bitwise_xor(_u64(a), _u64(b)))


def band_widths(max_distance: int = MAX_DISTANCE) -> list[int]:
    """Bits per band of the d + 1 bands that split 64 bits as evenly as possible (widest first)."""
    bands = int(max_distance) + 1
    if not 1 <= bands <= 64:
        raise ValueError(f"max_distance must be in [0, 63], got {max_distance}")
    base, extra = divmod(64, bands)
    return [base + 1] * extra + [base] * (bands - extra)


def band_keys(hashes, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """(n x (d + 1)) int64 keys: band index << 56 | the band's bits, top band first.

    Two hashes within Hamming distance d share at least one key (pigeonhole).
    """
    h = _u64(hashes)
    widths = band_widths(max_distance)
    out = np.empty((len(h), len(widths)), dtype=np.uint64)
    shift = 64
    for j, width in enumerate(widths):
        shift -= width
        out[:, j] = ((h >> np.uint64(shift)) & np.uint64((1 << width) - 1)) | (np.uint64(j) << np.uint64(_BAND_SHIFT))
    return out.view(np.int64)


def band_rows(keys, hashes, max_distance: int = MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band_key, key, phash) rows, int64, one per image and band: what an exchange groups by
    band_key (the hash travels along for the exact check); duplicate rows appear once."""
    keys = np.asarray(keys, dtype=np.int64)
    h = as_int64(hashes)
    bk = band_keys(h, max_distance)
    nb = bk.shape[1]
    band = bk.ravel()
    member = np.repeat(keys, nb)
    ph = np.repeat(h, nb)
    order = np.lexsort((ph, member, band))
    band, member, ph = band[order], member[order], ph[order]
    first = np.ones(len(band), dtype=bool)
    first[1:] = (band[1:] != band[:-1]) | (member[1:] != member[:-1]) | (ph[1:] != ph[:-1])
    return band[first], member[first], ph[first]


def close_pairs(band: np.ndarray, keys: np.ndarray, hashes: np.ndarray, max_distance: int = MAX_DISTANCE,
                block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Edges (key_a, key_b), key_a < key_b, unique, between members of a band group whose hashes
    are within max_distance: the exact check of the candidates a band exchange brings together.

    Works on any subset of band groups (one bucket of band keys); pairs are checked a block of
    a group at a time, so a huge group (blank images) costs time, not memory.
    """
    band = np.asarray(band, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.int64)
    hashes = as_int64(hashes)
    order = np.lexsort((keys, band))
    band, keys, hashes = band[order], keys[order], hashes[order]
    if len(band) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], band[1:] != band[:-1])))
    ends = np.append(starts[1:], len(band))
    src, dst = [], []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s < 2:
            continue
        gk, gh = keys[s:e], hashes[s:e]
        size = e - s
        for lo in range(0, size, block):
            for lo2 in range(lo, size, block):  # block pairs on and above the diagonal
                close = hamming(gh[lo:lo + block, None], gh[None, lo2:lo2 + block]) <= max_distance
                i, j = np.nonzero(close)
                i, j = i + lo, j + lo2
                later = j > i
                src.append(gk[i[later]])
                dst.append(gk[j[later]])
    if not src:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a, b = np.concatenate(src), np.concatenate(dst)
    keep = a != b
    a, b = a[keep], b[keep]
    return unique_pairs(np.minimum(a, b), np.maximum(a, b))


def near_duplicate_pairs(hashes, max_distance: int = MAX_DISTANCE) -> list[tuple[int, int]]:
    """Every index pair (i, j), i < j, of a batch of hashes at Hamming distance <= max_distance."""
    idx = np.arange(len(hashes), dtype=np.int64)
    a, b = close_pairs(*band_rows(idx, hashes, max_distance), max_distance=max_distance)
    return list(zip(a.tolist(), b.tolist(), strict=True))


def image_clusters(hashes, keys: Sequence[int] | np.ndarray | None = None,
                   max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Cluster id of each image (int64): the smallest key among the images joined to it by chains
    of pairs within max_distance; an image near no other keeps its own key.

    `keys` identify images (e.g. balance.uuid_keys of their uuids, viewed as int64); by default
    the row index. Equal keys are one image.
    """
    keys = np.arange(len(hashes), dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
    if len(keys) != len(hashes):
        raise ValueError(f"{len(hashes)} hashes but {len(keys)} keys")
    nodes, roots = components(*close_pairs(*band_rows(keys, hashes, max_distance), max_distance=max_distance))
    return cluster_ids(keys, nodes, roots)


def exact_clusters(hashes, keys=None, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """image_clusters by comparing every pair (the O(n^2) reference for tests)."""
    h = _u64(hashes)
    keys = np.arange(len(h), dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
    d = hamming(h[:, None], h[None, :])
    i, j = np.nonzero(np.triu(d <= max_distance, k=1))
    a, b = keys[i], keys[j]
    keep = a != b
    nodes, roots = components(a[keep], b[keep])
    return cluster_ids(keys, nodes, roots)
