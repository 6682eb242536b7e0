"""Decontamination: reject training pairs that copy an evaluation set's images or captions.

A CLIP model evaluated on XTD, XM3600 or ImageNet-style sets must not have trained on their
images or captions, or the benchmark measures memory. `DecontamIndex` is built on the driver
from the evaluation sets (captions, and where known their image URLs and image pHashes), is
small (tens of thousands of captions), and is broadcast to the tasks, which call `check` on
batches. Three reasons, checked in this order (a record gets the first that holds):

- `eval_url`: the image URL, normalised by curation.urls.normalize_url, is an eval image's;
- `eval_text`: the alt-text is a near-duplicate of an eval caption: exact Jaccard similarity
  of their shingle sets (curation.near_dup.shingles) >= text_threshold. Candidates come from
  LSH band keys of the eval captions' MinHash signatures, banded for recall (datasketch's
  choice with false negatives weighted 0.95: 95% of pairs at J = 0.8 become candidates, 99.9%
  at 0.9), then every candidate is checked exactly against the caption's shingles, so a
  rejection always means J >= threshold;
- `eval_image`: the image's pHash is within max_distance bits of an eval image's
  (curation.image_hash), found by its band keys and checked exactly.

Eval captions with fewer than `min_shingles` shingles ("a cat", "dog") are left out of the
text index: an alt-text equal to a generic two-word caption is not evidence of a copy.
Signatures, band keys and hashes are the same functions near-duplicate detection uses, so a
task that computes signatures for near_dup can pass them in (`check(..., signatures=)`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import image_hash, near_dup
from curation.sketches import stable_hashes
from curation.urls import normalize_url

REASONS = ("eval_url", "eval_text", "eval_image")
TEXT_THRESHOLD = near_dup.THRESHOLD
# weights (false positive, false negative) of the band choice: candidates are verified exactly,
# so a false positive costs one check while a false negative lets a copy through
LSH_WEIGHTS = (0.05, 0.95)
MIN_SHINGLES = 10  # about 15 letters: three short words
_FORMAT = 1


_FILTER_BITS = 24  # 2 MiB of bits: ~0.7% of lookups pass for 100k keys, and the bits stay in cache
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)


class _KeyIndex:
    """Sorted int64 keys with an owner each, behind a bit filter.

    Almost every query key of a web batch is absent; one bit test rejects those before the
    binary search, which alone costs a few cache misses per key on an index of 100k keys.
    """

    def __init__(self, keys: np.ndarray, owners: np.ndarray):
        order = np.lexsort((owners, keys))
        self.keys = np.ascontiguousarray(np.asarray(keys, dtype=np.int64)[order])
        self.owners = np.ascontiguousarray(np.asarray(owners, dtype=np.int64)[order])
        self.bits = np.zeros(1 << (_FILTER_BITS - 3), dtype=np.uint8)
        slot = self._slots(self.keys)
        np.bitwise_or.at(self.bits, slot >> 3, (np.uint8(1) << (slot & 7).astype(np.uint8)))

    @staticmethod
    def _slots(keys: np.ndarray) -> np.ndarray:
        """A key's filter bit: Fibonacci hashing (the top bits of key * 2^64 / phi)."""
        return ((keys.view(np.uint64) * _FIBONACCI) >> np.uint64(64 - _FILTER_BITS)).astype(np.int64)

    def lookup(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, owner), unique, for every index key equal to a key of a query row (n x k)."""
        flat = np.ascontiguousarray(query, dtype=np.int64).ravel()
        slot = self._slots(flat)
        maybe = np.flatnonzero((self.bits[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1)
        empty = np.zeros(0, dtype=np.int64)
        if len(maybe) == 0 or len(self.keys) == 0:
            return empty, empty
        lo = np.searchsorted(self.keys, flat[maybe], side="left")
        hi = np.searchsorted(self.keys, flat[maybe], side="right")
        found = hi > lo
        if not found.any():
            return empty, empty
        lo, hi, hits = lo[found], hi[found], maybe[found]
        counts = hi - lo
        rows = np.repeat(hits // query.shape[1], counts)
        at = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        pairs = np.unique(np.stack([rows, self.owners[at]], axis=1), axis=0)
        return pairs[:, 0], pairs[:, 1]


def normalized_url_hashes(urls, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(stable 64-bit hashes as int64, valid mask) of URLs after curation.urls.normalize_url.

    `normalized=True`: the URLs are normalised already (the curate job's are), so the batch is
    hashed as it is, without a Python call per URL.
    """
    if normalized:
        arr = urls if isinstance(urls, (pa.Array, pa.ChunkedArray)) else pa.array(list(urls), pa.string())
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return stable_hashes(pc.fill_null(arr, "")).view(np.int64), valid
    out, valid = [], []
    for url in urls:
        if url is not None:
            url, _reason = normalize_url(url)
        valid.append(url is not None)
        out.append(url if url is not None else "")
    hashes = stable_hashes(out).view(np.int64) if out else np.zeros(0, dtype=np.int64)
    return hashes, np.asarray(valid, dtype=bool)


class DecontamIndex:
    """The evaluation sets' URLs, captions and image hashes, indexed for batch checks."""

    def __init__(self, captions: Sequence[str] = (), urls: Iterable[str] = (), phashes: Iterable[int] = (), *,
                 text_threshold: float = TEXT_THRESHOLD, num_perm: int = near_dup.NUM_PERM,
                 max_distance: int = image_hash.MAX_DISTANCE, min_shingles: int = MIN_SHINGLES):
        self.text_threshold = float(text_threshold)
        self.num_perm = int(num_perm)
        self.max_distance = int(max_distance)
        self.min_shingles = int(min_shingles)
        self.bands, self.rows = near_dup.lsh_params(self.text_threshold, self.num_perm, *LSH_WEIGHTS)
        # URLs: sorted stable hashes of the normalised URLs
        hashes, valid = normalized_url_hashes(urls)
        self.url_hashes = np.unique(hashes[valid])
        # captions: distinct texts with enough shingles; their sorted unique shingle hashes (CSR)
        captions = sorted({c for c in captions if c})
        sh, bounds = near_dup.shingle_hashes(captions)
        sets = [np.unique(sh[bounds[i]:bounds[i + 1]]) for i in range(len(captions))]
        keep = [i for i, s in enumerate(sets) if len(s) >= self.min_shingles]
        self.captions_indexed = len(keep)
        self.captions_skipped = len(captions) - len(keep)
        sets = [sets[i] for i in keep]
        self.shingles = np.concatenate(sets).astype(np.uint32) if sets else np.zeros(0, dtype=np.uint32)
        self.shingle_bounds = np.zeros(len(sets) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in sets], out=self.shingle_bounds[1:])
        sigs = near_dup.signatures_from_hashes(self.shingles, self.shingle_bounds, self.num_perm)
        keys = near_dup.band_keys(sigs, self.bands, self.rows)
        self._text_index = _KeyIndex(keys.ravel(), np.repeat(np.arange(len(sets), dtype=np.int64), self.bands))
        # images: distinct pHashes and their band keys
        self.image_hashes = np.unique(image_hash.as_int64(list(phashes)))
        ikeys = image_hash.band_keys(self.image_hashes, self.max_distance)
        self._image_index = _KeyIndex(ikeys.ravel(), np.repeat(np.arange(len(self.image_hashes), dtype=np.int64),
                                                               ikeys.shape[1]))

    def __repr__(self) -> str:
        return (f"DecontamIndex(urls={len(self.url_hashes)}, captions={self.captions_indexed} "
                f"(+{self.captions_skipped} too short), images={len(self.image_hashes)}, "
                f"text_threshold={self.text_threshold}, max_distance={self.max_distance})")

    def stats(self) -> dict:
        """What the index holds, for the run's manifest."""
        return {"urls": int(len(self.url_hashes)), "captions": int(self.captions_indexed),
                "captions_too_short": int(self.captions_skipped), "images": int(len(self.image_hashes)),
                "text_threshold": self.text_threshold, "min_shingles": self.min_shingles,
                "num_perm": self.num_perm, "bands": self.bands, "rows": self.rows,
                "max_distance": self.max_distance}

    # -- the three checks, each a boolean mask over a batch

    def url_matches(self, urls: Sequence[str | None], normalized: bool = False) -> np.ndarray:
        """True where the (normalised) URL is an eval image's URL."""
        if len(self.url_hashes) == 0:
            return np.zeros(len(urls), dtype=bool)
        hashes, valid = normalized_url_hashes(urls, normalized)
        return valid & np.isin(hashes, self.url_hashes)

    def text_matches(self, texts: Sequence[str | None], signatures: np.ndarray | None = None) -> np.ndarray:
        """True where the text's shingle Jaccard with some eval caption is >= text_threshold.

        `signatures`: the texts' near_dup.signatures with this index's num_perm, when the caller
        has them already (they are only used to find candidates).
        """
        n = len(texts)
        out = np.zeros(n, dtype=bool)
        if self.captions_indexed == 0 or n == 0:
            return out
        if signatures is None:
            sh, bounds = near_dup.shingle_hashes(texts)
            signatures = near_dup.signatures_from_hashes(sh, bounds, self.num_perm)
        keys = near_dup.band_keys(signatures, self.bands, self.rows)
        rows, owners = self._text_index.lookup(keys)
        if len(rows) == 0:
            return out
        # the exact check, on the candidates' shingles only (few in web data)
        candidates = np.unique(rows)
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            subset = texts.take(pa.array(candidates))
        else:
            subset = [texts[i] for i in candidates.tolist()]
        sh, bounds = near_dup.shingle_hashes(subset)
        at = np.searchsorted(candidates, rows)
        for row, k, owner in zip(rows.tolist(), at.tolist(), owners.tolist(), strict=True):
            if out[row]:
                continue
            mine = np.unique(sh[bounds[k]:bounds[k + 1]])
            theirs = self.shingles[self.shingle_bounds[owner]:self.shingle_bounds[owner + 1]]
            if len(mine) == 0:
                continue
            common = len(np.intersect1d(mine, theirs, assume_unique=True))
            if common / (len(mine) + len(theirs) - common) >= self.text_threshold:
                out[row] = True
        return out

    def image_matches(self, phashes: Sequence[int | None] | np.ndarray) -> np.ndarray:
        """True where the pHash is within max_distance bits of an eval image's (None: no image)."""
        n = len(phashes)
        out = np.zeros(n, dtype=bool)
        if len(self.image_hashes) == 0 or n == 0:
            return out
        if isinstance(phashes, np.ndarray) and phashes.dtype != object:
            present = np.arange(n)
            values = image_hash.as_int64(phashes)
        else:
            present = np.array([i for i, h in enumerate(phashes) if h is not None], dtype=np.int64)
            values = image_hash.as_int64([phashes[i] for i in present.tolist()])
        if len(present) == 0:
            return out
        keys = image_hash.band_keys(values, self.max_distance)
        rows, owners = self._image_index.lookup(keys)
        close = image_hash.hamming(values[rows], self.image_hashes[owners]) <= self.max_distance
        out[present[rows[close]]] = True
        return out

    def check(self, urls: Sequence[str | None], texts: Sequence[str | None], phashes=None, *,
              normalized_urls: bool = False, signatures: np.ndarray | None = None) -> list[str | None]:
        """Per record of a batch: the first reason of REASONS that holds, or None (keep it)."""
        n = len(texts)
        if len(urls) != n or (phashes is not None and len(phashes) != n):
            raise ValueError("urls, texts and phashes must have one entry per record")
        url_hit = self.url_matches(urls, normalized_urls)
        text_hit = self.text_matches(texts, signatures)
        image_hit = self.image_matches(phashes) if phashes is not None else np.zeros(n, dtype=bool)
        reason = np.full(n, None, dtype=object)
        reason[image_hit] = "eval_image"
        reason[text_hit] = "eval_text"
        reason[url_hit] = "eval_url"
        return reason.tolist()

    # -- bytes: build once on the driver, store beside the run, load anywhere

    def to_bytes(self) -> bytes:
        """numpy arrays in an .npz (no pickle), parameters as JSON."""
        params = json.dumps({"format": _FORMAT, "text_threshold": self.text_threshold, "num_perm": self.num_perm,
                             "max_distance": self.max_distance, "min_shingles": self.min_shingles,
                             "bands": self.bands, "rows": self.rows, "captions_indexed": self.captions_indexed,
                             "captions_skipped": self.captions_skipped}, sort_keys=True)
        arrays = {"url_hashes": self.url_hashes, "shingles": self.shingles, "shingle_bounds": self.shingle_bounds,
                  "text_keys": self._text_index.keys, "text_owners": self._text_index.owners,
                  "image_hashes": self.image_hashes, "image_keys": self._image_index.keys,
                  "image_owners": self._image_index.owners}
        buf = io.BytesIO()
        np.savez_compressed(buf, params=np.frombuffer(params.encode(), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DecontamIndex:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                params = json.loads(npz["params"].tobytes().decode())
                arrays = {name: npz[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"not a DecontamIndex encoding: {exc}") from None
        if params.get("format") != _FORMAT:
            raise ValueError(f"unknown DecontamIndex format {params.get('format')!r}")
        out = cls.__new__(cls)
        for key in ("text_threshold", "num_perm", "max_distance", "min_shingles", "bands", "rows",
                    "captions_indexed", "captions_skipped"):
            setattr(out, key, params[key])
        for name in ("url_hashes", "shingles", "shingle_bounds", "image_hashes"):
            setattr(out, name, arrays[name])
        out._text_index = _KeyIndex(arrays["text_keys"], arrays["text_owners"])
        out._image_index = _KeyIndex(arrays["image_keys"], arrays["image_owners"])
        return out


_ARRAYS = ("url_hashes", "shingles", "shingle_bounds", "text_keys", "text_owners", "image_hashes", "image_keys",
           "image_owners")


# --- evaluation sets from files ---------------------------------------------------------------


def read_eval_captions(path: str) -> tuple[list[str], list[str]]:
    """(captions, image URLs) of one evaluation-set file, local or s3://. Layouts:

    - XTD / babel-imagenet `xtd.json`: {"captions": {lang: [[caption, ...] per image] or
      [caption, ...]}, "images": [...]} (image file names, not URLs: not used as URLs);
    - COCO captions JSON: {"annotations": [{"caption": ...}], "images": [{"coco_url"/"flickr_url"/
      "url": ...}]};
    - JSON Lines (XM3600 style and others): per line an object whose "caption"/"captions"/"text"
      values, or per-language objects {"caption": [...]} are captions, and "url"/"image_url"/
      "coco_url" an image URL;
    - any other file: one caption per line.
    """
    from curation import storage

    raw = storage.read_bytes(path).decode("utf-8")
    captions: list[str] = []
    urls: list[str] = []

    def add(value) -> None:
        if isinstance(value, str):
            if value.strip():
                captions.append(value.strip())
        elif isinstance(value, list):
            for v in value:
                add(v)
        elif isinstance(value, dict):
            for key in ("caption", "captions", "text"):
                if key in value:
                    add(value[key])

    def add_url(doc: dict) -> None:
        for key in ("url", "image_url", "coco_url", "flickr_url"):
            if isinstance(doc.get(key), str) and doc[key]:
                urls.append(doc[key])

    name = path.rsplit("/", 1)[-1].lower()
    doc = None
    if name.endswith(".json"):
        doc = json.loads(raw)
    if isinstance(doc, dict) and "captions" in doc and isinstance(doc["captions"], dict):
        for lang in sorted(doc["captions"]):
            add(doc["captions"][lang])
    elif isinstance(doc, dict) and "annotations" in doc:
        for ann in doc["annotations"]:
            add(ann)
        for image in doc.get("images", []):
            if isinstance(image, dict):
                add_url(image)
    elif doc is not None:
        add(doc)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        for line in raw.splitlines():
            if line.strip():
                obj = json.loads(line)
                if isinstance(obj, dict):
                    add_url(obj)
                    add(obj)
                    for v in obj.values():  # per-language objects: {"en": {"caption": [...]}}
                        if isinstance(v, dict):
                            add(v)
    else:
        captions.extend(line.strip() for line in raw.splitlines() if line.strip())
    return captions, urls


def read_eval_urls(path: str) -> list[str]:
    """Image URLs of an evaluation set: one per line (blank lines and # comments skipped)."""
    from curation import storage

    return [line.strip() for line in storage.read_bytes(path).decode("utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def index_from_files(caption_files: Sequence[str] = (), url_files: Sequence[str] = (), *,
                     text_threshold: float = TEXT_THRESHOLD) -> DecontamIndex | None:
    """The DecontamIndex of evaluation-set files (read_eval_captions, read_eval_urls); None when
    no file is given (decontamination off)."""
    if not caption_files and not url_files:
        return None
    captions: list[str] = []
    urls: list[str] = []
    for path in caption_files:
        c, u = read_eval_captions(path)
        captions += c
        urls += u
    for path in url_files:
        urls += read_eval_urls(path)
    return DecontamIndex(captions, urls=urls, text_threshold=text_threshold)


def index_digest(data: bytes) -> str:
    """The identity of an index's bytes (what the per-input state depends on)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


_LOADED: dict[str, DecontamIndex] = {}


def load_index(data: bytes | None, digest: str | None = None) -> DecontamIndex | None:
    """DecontamIndex.from_bytes, cached per process by digest (a task decodes it once per worker)."""
    if not data:
        return None
    digest = digest or index_digest(data)
    index = _LOADED.get(digest)
    if index is None:
        _LOADED.clear()
        index = _LOADED[digest] = DecontamIndex.from_bytes(data)
    return index
