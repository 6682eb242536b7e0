"""Near-duplicate alt-texts: MinHash signatures, LSH band keys, clusters as connected components.

Two texts are near-duplicates when the Jaccard similarity of their shingle sets is at least a
threshold (THRESHOLD). Finding them at crawl scale takes three steps that fit Spark:

1. per input (any partition): `signatures` of its distinct texts, then `band_pairs`: one
   (band_key, text_hash) row per LSH band, the only thing the state keeps and the exchange moves;
2. per bucket of band keys: `star_edges` joins the texts that share a band key, `components`
   reduces them to (text_hash, cluster_id) rows;
3. `components` again over every bucket's rows (or a distributed connected-components pass):
   components of components are components, so the order and grouping do not matter.
A cluster's id is its smallest member text hash: the same for any partitioning or rerun.

Shingles. Texts are lower-cased and reduced to their letters, digits and marks (punctuation,
symbols and spaces dropped: near-duplicates differ in them most, and no-space scripts have no
spaces to split on), then cut into overlapping windows of whole characters of at least
SHINGLE_BYTES = 6 UTF-8 bytes starting at every character: 6 Latin letters, 3 Cyrillic,
Greek, Arabic or Hebrew letters, 2 CJK, Thai or Devanagari characters. Counting bytes rather
than characters weighs scripts by how much a character says (a Chinese character is nearer a
syllable than a letter), so one edit costs about the same Jaccard in every script, and no
word segmenter is needed. The last window ends at the text's end (a text shorter than 6
bytes is one shingle). Words are not the unit: alt-texts are a few words long, so word sets
are coarse, and there are no words to split without a segmenter in zh/ja/th/km/lo/my.

Signatures are datasketch's MinHash of the shingle set, bit for bit (scheme affine32: each
shingle's 32-bit hash is pre-mixed with MurmurHash3's fmix32, then permuted by a*h + b mod
2^32 with datasketch's parameters for (num_perm, seed)); `shingle_hash` is the hash function
to hand datasketch for the same result. Here the whole batch is hashed in numpy from the
Arrow buffers and the permutations run over blocks of texts, instead of one Python call per
shingle: about 150,000 signatures per second per core on web alt-texts (bench/dedup.py). The
LSH banding (b bands of r rows) is the one datasketch's MinHashLSH chooses for the threshold
and num_perm.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import LeanMinHash, MinHash, MinHashLSH

from curation.sketches import arrow_bytes, hash_rows, hash_short, stable_hash, stable_hashes

SHINGLE_BYTES = 6
# 64 permutations, b = 5 bands of r = 11 rows at threshold 0.8 (datasketch's choice): the
# permutation step costs about 40% of 128's, which the curate path's budget needs (bench/dedup.py:
# it must keep >= 80% of its rate with near-duplicates on). The price, on the test corpus
# (tests/test_near_dup.py, built to sit on the threshold): pair recall 0.77 against 0.89 at
# 128 (9 x 13), precision 0.90 against 0.87; pairs at J >= 0.95 are all found by both, and
# components recover pairs the bands miss through a third text.
NUM_PERM = 64
MINHASH_SEED = 1  # datasketch's default seed: its permutations
THRESHOLD = 0.8
SHINGLE_SEED = 0x5348494E474C45  # "SHINGLE": the stable hash of shingles, apart from that of whole texts
BAND_SEED = 0x42414E44  # "BAND"
NO_SHINGLES = np.uint32(0xFFFFFFFF)  # every value of the signature of a text without shingles
# Shingles per block of the permutation step: a block's (num_perm x shingles) uint32 products stay
# in the CPU cache (64 x 8192 x 4 bytes = 2 MB); fewer, larger blocks than 128 texts each cost
# less Python per block (measured: 25% faster on short alt-texts).
_BLOCK_SHINGLES = 8192
_U32, _U64 = np.uint32, np.uint64


# --- normalisation and shingles -------------------------------------------------------------


def _as_string_array(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts if isinstance(texts, list) else list(texts), pa.string())
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    if not pa.types.is_string(texts.type):
        raise TypeError(f"texts must be strings, got {texts.type}")
    return pc.fill_null(texts, "") if texts.null_count else texts


# ASCII bytes after normalisation: A-Z lowered, letters and digits kept, the rest dropped
_ASCII_LOWER = np.arange(256, dtype=np.uint8)
_ASCII_LOWER[ord("A"):ord("Z") + 1] += 32
_ASCII_KEEP = np.zeros(256, dtype=bool)
_ASCII_KEEP[[*range(ord("a"), ord("z") + 1), *range(ord("A"), ord("Z") + 1), *range(ord("0"), ord("9") + 1)]] = True
_MAX_CODE_POINT = 0x10FFFF


@functools.cache
def _code_point_table() -> np.ndarray:
    """Per code point: its lower case (the simple one-character mapping) where that is a letter,
    digit or mark (Unicode categories L, N, M), else -1; int32, 0x110000 entries (4.4 MB).

    Built once per process (about 0.3 s) from Python's own unicodedata, the same tables
    `normalize` reads, so the vectorised and the reference normalisations agree exactly.
    """
    every = "".join(map(chr, range(_MAX_CODE_POINT + 1)))
    # U+0130 (capital I with dot) is the one character whose lower case is two: "i" + U+0307;
    # dotless "ı" folds to "i" (see normalize)
    lower = every.replace("\u0130", "i").lower().replace("\u0131", "i")
    lower = np.frombuffer(lower.encode("utf-32-le", "surrogatepass"), "<u4")
    category = unicodedata.category
    word = np.fromiter((category(ch)[0] in "LNM" for ch in every), dtype=bool, count=len(every))
    table = np.where(word[lower], lower, -1).astype(np.int32)
    table.setflags(write=False)
    return table


def _normalize_ascii(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = _ASCII_KEEP[data]
    if keep.all():
        return _ASCII_LOWER[data], offsets
    kept_before = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return _ASCII_LOWER[data[keep]], kept_before[offsets]


def _decode(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code points int32, byte position of each) of UTF-8 bytes; decoded in numpy, multi-byte
    characters only where they are. Invalid sequences decode to something, never raise."""
    lead = np.flatnonzero((data & 0xC0) != 0x80)
    cp = data[lead].astype(np.int32)
    multi = np.flatnonzero(cp >= 0x80)
    if len(multi):
        padded = np.zeros(len(data) + 3, dtype=np.uint8)
        padded[:len(data)] = data
        at = lead[multi]
        b0 = cp[multi]
        b1 = padded[at + 1].astype(np.int32) & 0x3F
        b2 = padded[at + 2].astype(np.int32) & 0x3F
        b3 = padded[at + 3].astype(np.int32) & 0x3F
        two = ((b0 & 0x1F) << 6) | b1
        three = ((b0 & 0x0F) << 12) | (b1 << 6) | b2
        four = np.minimum(((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3, _MAX_CODE_POINT)
        cp[multi] = np.where(b0 < 0xE0, two, np.where(b0 < 0xF0, three, four))
    return cp, lead


def _encode(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, start of each character's bytes, length n + 1) of code points, in numpy."""
    nbytes = np.ones(len(cps), dtype=np.int64)
    big = np.flatnonzero(cps >= 0x80)
    nbytes[big] += 1 + (cps[big] >= 0x800) + (cps[big] >= 0x10000)
    starts = np.zeros(len(cps) + 1, dtype=np.int64)
    np.cumsum(nbytes, out=starts[1:])
    out = np.empty(int(starts[-1]), dtype=np.uint8)
    if len(big) == 0:
        out[:] = cps
        return out, starts
    small = np.flatnonzero(cps < 0x80)
    out[starts[small]] = cps[small]
    c, at, k = cps[big], starts[big], nbytes[big]
    for width, lead_bits in ((2, 0xC0), (3, 0xE0), (4, 0xF0)):
        sel = k == width
        cw, aw = c[sel], at[sel]
        out[aw] = lead_bits | (cw >> (6 * (width - 1)))
        for j in range(1, width):
            out[aw + j] = 0x80 | ((cw >> (6 * (width - 1 - j))) & 0x3F)
    return out, starts


def normalized_bytes(texts) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, offsets of length n + 1) of each text, lower-cased with only its letters,
    digits and marks kept (nulls as empty texts): `normalize` of every text at once.

    An all-ASCII batch goes through two byte tables; any other is decoded to code points,
    mapped through one table (_code_point_table) and encoded again, all in numpy.
    """
    data, offsets = arrow_bytes(_as_string_array(texts))
    if len(data) == 0 or data.max() < 0x80:
        return _normalize_ascii(data, offsets)
    cp, lead = _decode(data)
    mapped = _code_point_table()[cp]
    keep = mapped >= 0
    out, char_starts = _encode(mapped[keep])
    kept_before = np.zeros(len(lead) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    # a text's first character is the first lead byte at or after its offset
    return out, char_starts[kept_before[np.searchsorted(lead, offsets)]]


def normalize(text: str) -> str:
    """The normalisation of one text in plain Python (the reference of normalized_bytes).

    Lower case by the simple (one character) mapping, then only characters of Unicode
    categories L, N and M (Python's unicodedata, as the vectorised form). Dotless "ı" folds to
    "i": Turkish in capitals writes it "I", whose lower case is "i", and capitalised alt-texts
    are common.
    """
    out = []
    for ch in text:
        low = ch.lower()
        low = low if len(low) == 1 else low[0]  # U+0130 "İ" -> "i", as the simple case mapping
        low = "i" if low == "\u0131" else low
        if unicodedata.category(low)[0] in "LNM":
            out.append(low)
    return "".join(out)


def shingles(text: str, width: int = SHINGLE_BYTES) -> set[bytes]:
    """The shingle set of one text, in plain Python: the reference definition.

    From the normalised UTF-8 bytes: for every character start i with i + width <= end, the
    whole characters from i up to the first character boundary at or after i + width; plus
    the tail window from the first character start at or after end - width to the end.
    """
    data = normalize(text).encode("utf-8")
    end = len(data)
    if end == 0:
        return set()
    starts = [i for i, b in enumerate(data) if b & 0xC0 != 0x80]
    bounds = [*starts, end]
    out = set()
    for i in starts:
        if i + width > end:
            break
        j = next(b for b in bounds if b >= i + width)
        out.add(data[i:j])
    tail = next(b for b in starts if b >= end - width)
    out.add(data[tail:])
    return out


def shingle_hash(shingle: bytes) -> int:
    """The 32-bit hash of one shingle (what `signatures` computes for all at once): the top
    half of stable_hash with SHINGLE_SEED. The hashfunc to give datasketch's MinHash."""
    return stable_hash(shingle, SHINGLE_SEED) >> 32


def _window_hashes(data: np.ndarray, lo: np.ndarray, length: np.ndarray) -> np.ndarray:
    """shingle_hash of the byte windows data[lo:lo + length] (1 to 16 bytes each), as uint32."""
    padded = np.zeros(len(data) + 16, dtype=np.uint8)
    padded[:len(data)] = data
    # an unaligned 8-byte little-endian read at every byte position
    at = np.ndarray(shape=(len(data) + 8,), dtype="<u8", buffer=padded, strides=(1,))
    first = at[lo]
    first &= _LOW_BYTES[np.minimum(length, 8)]
    long_ = np.flatnonzero(length > 8)  # windows past one word: 4-byte characters, mixed scripts
    second = None
    if len(long_):
        second = np.zeros(len(lo), dtype=np.uint64)
        second[long_] = at[lo[long_] + 8] & _LOW_BYTES[length[long_] - 8]
    h = hash_short(length, first, second, SHINGLE_SEED)
    return (h >> _U64(32)).astype(np.uint32)


_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # k low bytes set


def shingle_hashes(texts) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch, flat: (uint32 hashes, int64 bounds of length n + 1).

    Text i's hashes are hashes[bounds[i]:bounds[i + 1]]: the hashes (shingle_hash) of the set
    `shingles(text)` gives, in window order; a window can repeat, which neither MinHash nor
    Jaccard notices. No Python work per text or shingle.
    """
    data, offsets = normalized_bytes(texts)
    n = len(offsets) - 1
    total = len(data)
    if total == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(n + 1, dtype=np.int64)
    lengths = np.diff(offsets)
    pos = np.arange(total + 1, dtype=np.int64)
    # a full window starts at a character start at least SHINGLE_BYTES before its text's end
    ok = np.ones(total, dtype=bool)
    last = offsets[1:, None] - np.arange(1, SHINGLE_BYTES, dtype=np.int64)[None, :]
    ok[last[last >= offsets[:-1, None]]] = False
    if data.max() < 0x80:  # all ASCII: every byte starts a character, full windows are 6 bytes
        next_start = pos
    else:
        is_start = (data & 0xC0) != 0x80
        ok &= is_start
        # next_start[p]: the first character start at or after p (a text's end starts the next text)
        marks = np.where(np.append(is_start, True), pos, total)
        next_start = np.minimum.accumulate(marks[::-1])[::-1]
    starts = np.flatnonzero(ok)
    full_len = next_start[starts + SHINGLE_BYTES] - starts
    nonempty = np.flatnonzero(lengths > 0)
    t_end = offsets[1:][nonempty]
    tail_lo = next_start[np.maximum(offsets[:-1][nonempty], t_end - SHINGLE_BYTES)]
    # text order without a sort: a text's full windows, then its tail window
    full_per_text = np.diff(np.searchsorted(starts, offsets))
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(full_per_text + (lengths > 0), out=bounds[1:])
    lo = np.empty(int(bounds[-1]), dtype=np.int64)
    length = np.empty(int(bounds[-1]), dtype=np.int64)
    tail_at = bounds[1:][nonempty] - 1
    is_full = np.ones(len(lo), dtype=bool)
    is_full[tail_at] = False
    lo[is_full] = starts
    length[is_full] = full_len
    lo[tail_at] = tail_lo
    length[tail_at] = t_end - tail_lo
    return _window_hashes(data, lo, length), bounds


# --- MinHash signatures ---------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int = NUM_PERM, seed: int = MINHASH_SEED) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b) for (num_perm, seed), uint32 each."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    a, b = a.astype(np.uint32), b.astype(np.uint32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, datasketch's pre-mix of every input hash."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def signatures_from_hashes(hashes: np.ndarray, bounds: np.ndarray, num_perm: int = NUM_PERM,
                           seed: int = MINHASH_SEED, values: int | None = None) -> np.ndarray:
    """MinHash signatures (n x num_perm uint32) of the texts given by flat shingle hashes.

    Per block of texts (about _BLOCK_SHINGLES shingles): one (values x block shingles) product
    a*h + b, then a segmented minimum per text (np.minimum.reduceat): three vectorised passes
    over cached memory. A text without shingles gets NO_SHINGLES everywhere (datasketch's empty
    MinHash). `values`: compute only the first `values` of the num_perm values (n x values),
    the same numbers as the full signature's first columns: LSH bands use b x r of them.
    """
    a, b = permutations(num_perm, seed)
    values = num_perm if values is None else values
    if not 0 < values <= num_perm:
        raise ValueError(f"values must be in [1, {num_perm}], got {values}")
    a_col, b_col = a[:values, None], b[:values, None]
    n = len(bounds) - 1
    out = np.full((n, values), NO_SHINGLES, dtype=np.uint32)
    mixed = _fmix32(np.asarray(hashes, dtype=np.uint32))
    counts = np.diff(bounds)
    has = np.flatnonzero(counts > 0)
    first = bounds[has]  # each text's first shingle: blocks cut where these pass multiples of the block size
    k = 0
    while k < len(has):
        stop = max(int(np.searchsorted(first, first[k] + _BLOCK_SHINGLES, side="left")), k + 1)
        rows = has[k:stop]
        lo, hi = int(bounds[rows[0]]), int(bounds[rows[-1] + 1])
        block = a_col * mixed[None, lo:hi]
        block += b_col
        # rows are consecutive among the texts with shingles: their starts, relative to lo
        out[rows] = np.minimum.reduceat(block, bounds[rows] - lo, axis=1).T
        k = stop
    return out


def signatures(texts, num_perm: int = NUM_PERM, seed: int = MINHASH_SEED, values: int | None = None) -> np.ndarray:
    """MinHash signature of each text (n x num_perm uint32), equal to datasketch's
    MinHash(num_perm, seed, hashfunc=shingle_hash) updated with `shingles(text)` (or its first
    `values` columns: signatures_from_hashes)."""
    hashes, bounds = shingle_hashes(texts)
    return signatures_from_hashes(hashes, bounds, num_perm, seed, values)


def lean_minhashes(sigs: np.ndarray, seed: int = MINHASH_SEED) -> list[LeanMinHash]:
    """datasketch LeanMinHash objects of signatures (for datasketch's own indexes and estimators)."""
    return [LeanMinHash(seed=seed, hashvalues=row, scheme="affine32") for row in np.asarray(sigs)]


def has_shingles(sigs: np.ndarray) -> np.ndarray:
    """Per signature: False for a text without shingles (nothing to compare)."""
    return ~(np.asarray(sigs) == NO_SHINGLES).all(axis=1)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values, row by row: MinHash's estimate of Jaccard similarity."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


def text_hashes(texts) -> np.ndarray:
    """The 64-bit identity of each text (stable_hashes of its UTF-8, seed 0), as int64 (Spark's long).

    The same hash sketches.DistinctCounts counts texts by. Nulls hash as the empty text.
    """
    return stable_hashes(_as_string_array(texts)).view(np.int64)


# --- LSH banding ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float = THRESHOLD, num_perm: int = NUM_PERM, false_positive_weight: float = 0.5,
               false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) datasketch's MinHashLSH picks for the threshold: the b x r <= num_perm that
    minimise the weighted areas of false positives below and false negatives above it."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(false_positive_weight, false_negative_weight))
    return lsh.b, lsh.r


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> np.ndarray:
    """P(two texts of this Jaccard similarity share at least one band key): 1 - (1 - s^r)^b."""
    s = np.asarray(similarity, dtype=np.float64)
    return 1.0 - (1.0 - s ** rows) ** bands


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n x bands) int64 keys: band j's key is the stable hash of its r signature values (their
    4r little-endian bytes) seeded by BAND_SEED + j, so equal keys mean equal bands (up to
    2^-64) and no two bands share a key. One vectorised pass over all bands."""
    sigs = np.asarray(sigs, dtype=np.uint32)
    n, num_perm = sigs.shape
    if bands * rows > num_perm:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} signature values, have {num_perm}")
    words = (rows + 1) // 2
    block = np.zeros((n, bands, 2 * words), dtype=np.uint32)  # an odd row count pads one zero value
    block[:, :, :rows] = sigs[:, :bands * rows].reshape(n, bands, rows)
    keys = hash_rows(block.view(np.uint64), 4 * rows, BAND_SEED + np.arange(bands))
    return keys.view(np.int64)


def band_rows(sigs: np.ndarray, hashes: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(band_key, text_hash) rows of a batch, both int64, unsorted: `bands` rows per text with
    shingles, in text order (what the curate job's state stores; the exchange sorts them).

    Texts without shingles have no rows (they can only be exact duplicates). For distinct
    texts the rows are distinct: a text's bands have different keys (BAND_SEED + j).
    """
    sigs = np.asarray(sigs)
    hashes = np.asarray(hashes, dtype=np.int64)
    keep = has_shingles(sigs)
    if not keep.all():
        sigs, hashes = sigs[keep], hashes[keep]
    return band_keys(sigs, bands, rows).ravel(), np.repeat(hashes, bands)


def band_pairs(sigs: np.ndarray, hashes: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(band_key, text_hash) rows of a batch for the exchange, both int64, sorted and unique.

    Texts without shingles have no rows (they can only be exact duplicates); a text repeated in
    the batch (equal hash) has its rows once. Group the rows of all inputs by band_key: texts of
    one group are candidate near-duplicates (`star_edges`).
    """
    return unique_pairs(*band_rows(sigs, hashes, bands, rows))


def pair_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The permutation that sorts rows (a, b) by a then b (integer arrays of one kind).

    numpy's argsort of one column is ~10x faster than np.lexsort of two; rows tied on `a` (band
    collisions, the same text from two inputs: a small share) are then ordered by `b` apart.
    """
    order = np.argsort(a)
    sa = a[order]
    tie = sa[1:] == sa[:-1]
    if tie.any():
        in_tie = np.zeros(len(sa), dtype=bool)
        in_tie[1:] = tie
        in_tie[:-1] |= tie
        at = np.flatnonzero(in_tie)
        # tied rows form contiguous runs of equal `a` (sorted), so sorting them by (a, b) moves
        # rows only inside their run
        order[at] = order[at][np.lexsort((b[order[at]], sa[at]))]
    return order


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) rows sorted by a then b (int64 arrays)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    order = pair_order(a, b)
    a, b = a[order], b[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first]


# --- clusters -------------------------------------------------------------------------------


def star_edges(keys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining the members of each key's group: (smallest member, other member) per
    member of a group of two or more, unique, as int64 (src, dst) with src < dst.

    A star per group instead of every pair: the same components with edges linear in the
    group sizes (a template shared by a million texts is one group of a million).
    """
    keys = np.asarray(keys, dtype=np.int64)
    members = np.asarray(members, dtype=np.int64)
    # only keys held by two or more rows can join texts: most band keys are one text's
    order = np.argsort(keys)
    sk = keys[order]
    repeated = sk[1:] == sk[:-1]
    in_group = np.zeros(len(sk), dtype=bool)
    in_group[1:] = repeated
    in_group[:-1] |= repeated
    keys, members = unique_pairs(sk[in_group], members[order[in_group]])
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    sizes = np.diff(np.append(starts, len(keys)))
    root = np.repeat(members[starts], sizes)  # members are sorted within a key: the first is the smallest
    other = members != root
    return unique_pairs(root[other], members[other])


def components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of an undirected graph given as edges: (nodes, cluster_ids), int64.

    `nodes` are the distinct endpoints, sorted; a node's cluster id is the smallest node of its
    component. Vectorised union-find: every edge hooks the larger of its two roots under the
    smaller, then pointer jumping flattens the trees; repeated until no edge joins two roots.
    Labels only decrease, so this ends, and the result depends on the edge set alone.
    Feeding (node, cluster_id) rows of parts back in as edges merges parts' components.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} edge sources but {len(dst)} destinations")
    nodes, inverse = np.unique(np.concatenate((src, dst)), return_inverse=True)
    u, v = inverse[:len(src)], inverse[len(src):]
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        joins = pu != pv
        if not joins.any():
            break
        pu, pv = pu[joins], pv[joins]
        low = np.minimum(pu, pv)
        np.minimum.at(parent, pu, low)
        np.minimum.at(parent, pv, low)
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return nodes, nodes[parent]


def cluster_ids(hashes: np.ndarray, nodes: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Each text hash's cluster id: its root where it is a node of the components, else itself."""
    hashes = np.asarray(hashes, dtype=np.int64)
    if len(nodes) == 0:
        return hashes.copy()
    at = np.searchsorted(nodes, hashes)
    at = np.minimum(at, len(nodes) - 1)
    found = nodes[at] == hashes
    return np.where(found, roots[at], hashes)


def near_duplicate_clusters(texts, threshold: float = THRESHOLD, num_perm: int = NUM_PERM,
                            seed: int = MINHASH_SEED) -> np.ndarray:
    """All three steps on one batch (small runs, tests): each text's cluster id (int64).

    Texts that are near-duplicates of no other have their own hash as id.
    """
    bands, rows = lsh_params(threshold, num_perm)
    hashes = text_hashes(texts)
    keys, members = band_pairs(signatures(texts, num_perm, seed), hashes, bands, rows)
    nodes, roots = components(*star_edges(keys, members))
    return cluster_ids(hashes, nodes, roots)


# --- the exact reference ----------------------------------------------------------------------


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets, which only exact duplicates can be)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def exact_pairs(texts: Sequence[str], threshold: float = THRESHOLD) -> list[tuple[int, int, float]]:
    """Every pair (i, j, J) of distinct texts, i < j, with exact shingle Jaccard J >= threshold.

    Candidates are the pairs that share a shingle (an inverted index), so this is exact and
    fast enough for thousands of texts; the reference MinHash + LSH is measured against.
    """
    sets = [shingles(t) for t in texts]
    index: dict[bytes, list[int]] = {}
    for i, s in enumerate(sets):
        for sh in s:
            index.setdefault(sh, []).append(i)
    out = []
    for i, s in enumerate(sets):
        if not s:
            continue
        seen: set[int] = set()
        for sh in s:
            seen.update(j for j in index[sh] if j > i)
        for j in sorted(seen):
            if texts[j] == texts[i]:
                continue
            sim = jaccard(s, sets[j])
            if sim >= threshold:
                out.append((i, j, sim))
    return out


def exact_clusters(texts: Sequence[str], threshold: float = THRESHOLD) -> np.ndarray:
    """Cluster id per text from exact Jaccard: components of the pairs at or above the threshold,
    id = smallest member text hash (a plain union-find, independent of `components`)."""
    hashes = text_hashes(texts).tolist()
    parent = {h: h for h in hashes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _sim in exact_pairs(texts, threshold):
        ri, rj = find(hashes[i]), find(hashes[j])
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(h) for h in hashes], dtype=np.int64)


def same_cluster_pairs(ids: Iterable[int]) -> set[tuple[int, int]]:
    """The pairs (i, j), i < j, of positions whose cluster ids are equal (to compare clusterings)."""
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(ids):
        groups.setdefault(int(c), []).append(i)
    return {(a, b) for members in groups.values() for k, a in enumerate(members) for b in members[k + 1:]}
