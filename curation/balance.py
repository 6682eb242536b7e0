"""Balancing maths of the paper (Algorithm 1 of MetaCLIP 2) and deterministic sampling.

`t_en` fixes English's tail proportion `p`; every other language gets the count `t_lang` at
which its cumulative share of sorted counts is closest to `p`. An entry with count c keeps
each of its texts with probability t / max(c, t); a text with several entries is kept with
1 - prod(1 - prob). Random decisions are hashes of (seed, uuid, epoch, purpose), never a
global RNG, so any partitioning or rerun gives the same output.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

T_EN_METACLIP2 = 170_000  # MetaCLIP 2 worldwide (2.5B pairs scale)
T_EN_CLIP400M = 20_000  # reproduces OpenAI CLIP 400M / MetaCLIP 1 400M

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def tail_proportion(counts: np.ndarray, t: float) -> float:
    """p = sum(c[c < t]) / sum(c); 0.0 for an all-zero count vector."""
    c = np.asarray(counts, dtype=np.int64)
    total = int(c.sum())
    if total == 0:
        return 0.0
    return float(c[c < t].sum()) / total


def threshold_for_proportion(counts: np.ndarray, p: float) -> int:
    """The paper's p_to_t: sorted count whose cumulative share is closest to p (first on ties).

    Zero counts take part as in the paper (they hold cumulative share 0). A language with no
    matches at all gets t = 0.
    """
    c = np.sort(np.asarray(counts, dtype=np.int64))
    if c.size == 0:
        return 0
    total = int(c.sum())
    if total == 0:
        return 0
    share = np.cumsum(c) / total
    return int(c[int(np.abs(share - p).argmin())])


def entry_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """prob[e] = t / max(c_e, t) as float32; entries at or below t (or never matched) get 1."""
    c = np.asarray(counts, dtype=np.float64)
    probs = np.ones(c.shape, dtype=np.float64)
    over = c > t
    probs[over] = t / c[over]
    return probs.astype(np.float32)


def language_thresholds(counts_by_lang: dict[str, np.ndarray], t_en: float, en: str = "en") -> dict[str, dict]:
    """Per language: t, p and totals. English uses t_en itself; others use p_to_t(p).

    `drops_language` marks the paper's degenerate case: p so small that the closest cumulative
    share is a zero count, so t = 0 and every matched text of the language gets probability 0.
    It does not happen at web scale; on small inputs the job warns about it.
    """
    if en not in counts_by_lang:
        raise ValueError(f"no counts for the reference language {en!r}: cannot derive the tail proportion")
    p = tail_proportion(counts_by_lang[en], t_en)
    out = {}
    for lang in sorted(counts_by_lang):
        c = np.asarray(counts_by_lang[lang], dtype=np.int64)
        t = int(t_en) if lang == en else threshold_for_proportion(c, p)
        out[lang] = {
            "t": t,
            "p": p,
            "tail_proportion": tail_proportion(c, t) if c.size else 0.0,
            "total_count": int(c.sum()),
            "entries": int(c.size),
            "matched_entries": int((c > 0).sum()),
            "drops_language": bool(t == 0 and c.sum() > 0),
        }
    return out


def keep_probability(entry_ids: Sequence[int], probs: np.ndarray) -> float:
    """1 - prod(1 - prob[e]) over the (unique) entries a text matched; 0 for no entry."""
    ids = np.unique(np.asarray(entry_ids, dtype=np.int64))
    if ids.size == 0:
        return 0.0
    return float(1.0 - np.prod(1.0 - probs[ids].astype(np.float64)))


def keep_probabilities(entry_id_lists: Iterable[Sequence[int]], probs: np.ndarray) -> np.ndarray:
    """keep_probability for many texts of one language at once.

    Vectorised over the batch: ids are flattened once, de-duplicated within each text by one
    sort, and the miss probabilities summed in log space per text.
    """
    lists = [ids.ravel() if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=np.int64) for ids in entry_id_lists]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.concatenate(lists) if lengths.sum() else np.zeros(0, dtype=np.int64)
    return keep_probabilities_flat(flat, lengths, probs)


def keep_probabilities_flat(flat: np.ndarray, lengths: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """keep_probabilities for lists given flat: ids of all texts concatenated, plus each text's length.

    The Arrow form of a list column (values + offsets), so Spark batches need no Python list per text.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if lengths.sum() == 0:
        return np.zeros(n, dtype=np.float64)
    flat = np.asarray(flat).astype(np.int64, copy=False)
    if flat.min() < 0 or flat.max() >= len(probs):
        raise IndexError(f"entry id out of range [0, {len(probs)}): min {flat.min()}, max {flat.max()}")
    seg = np.repeat(np.arange(n), lengths)
    order = np.lexsort((flat, seg))
    flat, seg = flat[order], seg[order]
    first = np.ones(len(flat), dtype=bool)  # drop repeats of an id within one text
    first[1:] = (flat[1:] != flat[:-1]) | (seg[1:] != seg[:-1])
    flat, seg = flat[first], seg[first]
    with np.errstate(divide="ignore"):
        log_miss = np.log1p(-np.asarray(probs)[flat].astype(np.float64))  # -inf where prob == 1
    sums = np.bincount(seg, weights=log_miss, minlength=n)
    out = -np.expm1(sums)
    out[lengths == 0] = 0.0
    return out


# --- deterministic hashing -------------------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def _str_u64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


_HEX_RE = re.compile(r"[0-9a-fA-F]{1,32}")
_NON_HEX_HI_BYTES = (0xD1B54A32D192ED03).to_bytes(8, "big")  # high word for hashed (non-hex) uuids


def uuid_keys(uuids: Sequence[str]) -> np.ndarray:
    """A 64-bit key per uuid built from all of it.

    A hex uuid of up to 32 digits (how the pipeline makes them) is read as a 128-bit number
    whose two halves are folded with a mix, so uuids that differ anywhere (sequential ids
    included) get unrelated keys; any other string is hashed with blake2b.
    """
    fast = _hex_keys_same_length(uuids)
    if fast is not None:
        return fast
    buf = bytearray()
    fullmatch = _HEX_RE.fullmatch
    for u in uuids:
        if not isinstance(u, str):
            raise TypeError(f"uuids must be strings, got {u!r} ({type(u).__name__})")
        if fullmatch(u):
            buf += int(u, 16).to_bytes(16, "big")
        else:
            buf += _NON_HEX_HI_BYTES + _str_u64(u).to_bytes(8, "big")
    words = np.frombuffer(bytes(buf), dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return _fold(words[:, 1].copy(), words[:, 0].copy())


def _fold(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo ^ _splitmix64(hi)


def _hex_keys_same_length(uuids: Sequence[str]) -> np.ndarray | None:
    """Vectorised uuid_keys for the common batch: all uuids hex of one even length <= 32."""
    n = len(uuids)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    try:
        lengths = set(map(len, uuids))
    except TypeError:  # a non-string uuid: the general path names it
        return None
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    if length % 2 or not 2 <= length <= 32:
        return None
    try:
        raw = bytes.fromhex("".join(uuids))
    except (ValueError, TypeError):
        return None
    if len(raw) != n * length // 2:  # fromhex skips whitespace: a uuid had some
        return None
    digits = np.zeros((n, 16), dtype=np.uint8)
    digits[:, 16 - length // 2 :] = np.frombuffer(raw, dtype=np.uint8).reshape(n, length // 2)
    words = digits.view(">u8").astype(np.uint64)  # (n, 2): high word, low word
    return _fold(words[:, 1].copy(), words[:, 0].copy())


def uniforms(uuids: Sequence[str], seed: int, epoch: int, purpose: str) -> np.ndarray:
    """Uniform [0, 1) numbers, one per uuid, fixed by (seed, uuid, epoch, purpose) alone."""
    salt = _str_u64(f"{int(seed)}\x1f{int(epoch)}\x1f{purpose}")
    keys = uuid_keys(uuids)
    x = _splitmix64(keys ^ np.uint64(salt))
    x = _splitmix64(x ^ np.uint64(salt >> 1))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def pick_index(uuids: Sequence[str], n_choices: Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """Which of an image's n texts to use: floor(u * n) with purpose 'pick'."""
    n = np.asarray(n_choices, dtype=np.int64)
    u = uniforms(uuids, seed, epoch, "pick")
    return np.minimum((u * n).astype(np.int64), np.maximum(n - 1, 0))


def keep_decisions(uuids: Sequence[str], keep_probs: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Bernoulli(keep_prob) per image, decided by a hash with purpose 'keep'."""
    return uniforms(uuids, seed, epoch, "keep") < np.asarray(keep_probs, dtype=np.float64)
