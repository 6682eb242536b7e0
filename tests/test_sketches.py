"""curation.sketches: the stable hash, HyperLogLog registers as datasketch builds them, merges that
equal one sketch over everything, estimates within HyperLogLog's error, and the byte format.

Values are real: alt-texts and image URLs of web/alt-text-1000.parquet, XTD captions in 11
languages; larger sets are variations of them.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import HyperLogLogPlusPlus
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.sketches import (
    ALL,
    DEFAULT_P,
    KEYS,
    DistinctCounts,
    exact_counts,
    hash_rows,
    hash_short,
    registers_update,
    relative_error,
    stable_hash,
    stable_hashes,
    url_hosts,
)
from curation.urls import normalize_url
from tests.conftest import shared_file

PROPS = settings(derandomize=True, max_examples=200, deadline=None)


@pytest.fixture(scope="module")
def alt_texts():
    table = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["URL", "TEXT"])
    return table.column("URL").to_pylist(), table.column("TEXT").to_pylist()


@pytest.fixture(scope="module")
def xtd():
    """(caption, language) pairs of XTD: 1,000 captions in each of 11 languages."""
    data = json.loads(shared_file("eval/babel-imagenet/xtd.json").read_text(encoding="utf-8"))
    return [(c, lang) for lang, per_image in sorted(data["captions"].items()) for caps in per_image for c in caps]


def variations(texts: list[str], n: int) -> list[str]:
    """n distinct strings made from real ones: the text, a separator and a running number."""
    return [f"{texts[i % len(texts)]} #{i // len(texts)}" for i in range(n)]


# --- the stable hash -------------------------------------------------------------------------


def test_vectorised_hash_equals_the_scalar_definition_on_real_values(alt_texts, xtd):
    urls, texts = alt_texts
    values = urls + texts + [c for c, _ in xtd] + ["", "a", "x" * 7, "x" * 8, "x" * 9, "x" * 16, "x" * 17, "ß€𝄞"]
    got = stable_hashes(values)
    assert got.dtype == np.uint64
    assert got.tolist() == [stable_hash(v) for v in values]
    # the same bytes give the same hash whatever the container: Arrow string, large_string, binary, a slice
    arr = pa.array(values)
    assert stable_hashes(arr).tolist() == got.tolist()
    assert stable_hashes(arr.cast(pa.large_string())).tolist() == got.tolist()
    assert stable_hashes(pa.array([v.encode() for v in values], pa.binary())).tolist() == got.tolist()
    assert stable_hashes(arr.slice(1000, 50)).tolist() == got[1000:1050].tolist()
    assert stable_hashes(pa.chunked_array([arr.slice(0, 3), arr.slice(3, 4)])).tolist() == got[:7].tolist()


def test_hash_depends_on_every_byte_the_length_and_the_seed():
    assert len({stable_hash(v) for v in ("", "\x00", "\x00\x00", "a", "a\x00")}) == 5
    assert stable_hash("abc", seed=1) != stable_hash("abc", seed=2)
    assert stable_hashes(["abc"], seed=7).tolist() == [stable_hash("abc", seed=7)]
    # fixed constants, not Python's per-process hash(): this value is part of every stored sketch
    assert stable_hash("") == stable_hashes([""]).tolist()[0]
    with pytest.raises(ValueError, match="null"):
        stable_hashes(pa.array(["a", None]))


@PROPS
@given(st.lists(st.binary(max_size=16), min_size=1, max_size=40), st.integers(0, 2**64 - 1))
def test_word_helpers_equal_the_stable_hash(values, seed):
    """hash_short (values as two words) and hash_rows (fixed-width records) are the same hash."""
    lengths = np.array([len(v) for v in values])
    padded = np.frombuffer(b"".join(v.ljust(16, b"\x00") for v in values), dtype="<u8").reshape(-1, 2)
    want = [stable_hash(v, seed) for v in values]
    assert hash_short(lengths, padded[:, 0], padded[:, 1], seed).tolist() == want
    width = max(lengths.max(), 1)
    rows = np.zeros((len(values), (width + 7) // 8 * 8), dtype=np.uint8)
    for i, v in enumerate(values):
        rows[i, :len(v)] = np.frombuffer(v, dtype=np.uint8)
    same_length = [v.ljust(width, b"\x00") for v in values]  # hash_rows: every record has `width` bytes
    assert hash_rows(rows.view("<u8"), width, seed).tolist() == [stable_hash(v, seed) for v in same_length]


def test_no_collisions_and_uniform_register_use_on_a_million_values(alt_texts):
    urls, _texts = alt_texts
    values = variations(urls, 1_000_000)
    h = stable_hashes(values)
    assert len(np.unique(h)) == len(values)
    # every register index equally likely: the low 10 bits over 1,024 bins, chi-square within 5 sigma
    counts = np.bincount((h & np.uint64(1023)).astype(np.int64), minlength=1024)
    expected = len(values) / 1024
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - 1023) < 5 * np.sqrt(2 * 1023), chi2


# --- registers and estimates ------------------------------------------------------------------


@pytest.mark.parametrize("p", [4, 10, 14, 16])
def test_registers_equal_datasketch_hyperloglog_plus_plus(alt_texts, p):
    urls, texts = alt_texts
    values = variations(urls + texts, 5000)
    values += values[:700]  # repeats within the batch: each distinct value is hashed once
    ref = HyperLogLogPlusPlus(p=p, hashfunc=stable_hash)
    for v in values:
        ref.update(v)
    reg = np.zeros(1 << p, dtype=np.int8)
    registers_update(reg, stable_hashes(values), p)
    assert np.array_equal(reg, ref.reg)
    counts = DistinctCounts(p)
    counts.update("text", values)
    assert counts.estimate("text") == ref.count()


@pytest.mark.parametrize("p", [10, DEFAULT_P])
@pytest.mark.parametrize("n", [1, 7, 100, 1000, 20_000, 200_000])
def test_estimate_within_hyperloglog_error(alt_texts, p, n):
    """Deterministic (fixed hash), so a 3-sigma bound cannot flake; small sets are counted
    almost exactly by linear counting."""
    _urls, texts = alt_texts
    values = variations(sorted(set(texts)), n)
    counts = DistinctCounts(p)
    counts.update("text", values)
    est = counts.estimate("text")
    assert abs(est - n) <= max(3 * relative_error(p) * n, 0.5), (est, n)
    # repeating every value changes nothing
    counts.update("text", values[::-1])
    assert counts.estimate("text") == est


def test_real_data_distinct_counts_per_language(xtd):
    counts = DistinctCounts()
    captions = [c for c, _ in xtd]
    langs = [lang for _, lang in xtd]
    counts.update("text", captions, langs)
    exact = exact_counts({"text": captions}, langs)["text"]
    assert counts.languages("text") == sorted(exact["by_lang"])
    assert abs(counts.estimate("text") - exact["all"]) <= 3 * counts.relative_error * exact["all"]
    for lang, n in exact["by_lang"].items():
        assert abs(counts.estimate("text", lang) - n) <= 3 * counts.relative_error * n, lang
    summary = counts.summary()
    assert summary["text"]["by_lang"].keys() == exact["by_lang"].keys()
    assert summary["image_url"] == {"all": 0, "by_lang": {}}
    assert summary["relative_error"] == pytest.approx(1.04 / 128)


def test_nulls_and_missing_languages(alt_texts):
    urls, _ = alt_texts
    counts = DistinctCounts(12)
    counts.update("image_url", [urls[0], None, urls[1], urls[2]], ["en", "de", None, "en"])
    assert round(counts.estimate("image_url")) == 3  # the null value is skipped
    assert round(counts.estimate("image_url", "en")) == 2
    assert counts.estimate("image_url", "de") == 0.0  # its only value was null
    assert round(counts.estimate("image_url", "fr")) == 0
    counts.update("page_url", [None, None])
    counts.update("host", urls[:10], "en")  # one language for the whole batch
    assert round(counts.estimate("host", "en")) == round(counts.estimate("host")) == 10
    with pytest.raises(ValueError, match="unknown key"):
        counts.update("uuid", ["x"])
    with pytest.raises(ValueError, match="languages"):
        counts.update("text", ["a", "b"], ["en"])


def test_update_hashes_takes_precomputed_keys(alt_texts):
    urls, _ = alt_texts
    a, b = DistinctCounts(), DistinctCounts()
    a.update("image_url", urls, ["en"] * len(urls))
    b.update_hashes("image_url", stable_hashes(urls), pa.array(["en"] * len(urls)))
    assert a == b


# --- merging ------------------------------------------------------------------------------------


def _parts(values, langs, k):
    """k parts by a hash of the value (a value can land in several parts: inputs overlap)."""
    h = stable_hashes(values, seed=99)
    parts = []
    for j in range(k):
        sel = np.flatnonzero((h % np.uint64(k) == j) | (h % np.uint64(7) == j % 7))
        part = DistinctCounts(12)
        for key in KEYS:
            part.update(key, [values[i] for i in sel], [langs[i] for i in sel])
        parts.append(part)
    return parts


def test_merge_equals_one_sketch_over_everything_in_any_order(xtd):
    values = [c for c, _ in xtd]
    langs = [lang for _, lang in xtd]
    whole = DistinctCounts(12)
    for key in KEYS:
        whole.update(key, values, langs)
    parts = _parts(values, langs, 5)
    forward = DistinctCounts.merged(parts)
    backward = DistinctCounts.merged(parts[::-1])
    tree = DistinctCounts.merged([DistinctCounts.merged(parts[:2]), DistinctCounts.merged(parts[2:])])
    assert forward == backward == tree == whole
    # idempotent: merging a part again changes nothing; merging never alters the argument
    before = parts[0].to_bytes()
    again = DistinctCounts.merged(parts).merge(parts[0])
    assert again == whole and parts[0].to_bytes() == before
    assert DistinctCounts.merged([]) == DistinctCounts()
    with pytest.raises(ValueError, match="precision"):
        DistinctCounts(12).merge(DistinctCounts(14))


# --- bytes --------------------------------------------------------------------------------------


def test_bytes_round_trip_compact_and_deterministic(xtd, alt_texts):
    urls, texts = alt_texts
    counts = DistinctCounts()
    counts.update("text", [c for c, _ in xtd], [lang for _, lang in xtd])
    counts.update("image_url", urls, ["en"] * len(urls))
    data = counts.to_bytes()
    back = DistinctCounts.from_bytes(data)
    assert back == counts and back.to_bytes() == data
    assert back.summary() == counts.summary()
    # the same values in another order and batching: the same bytes
    other = DistinctCounts()
    other.update("image_url", urls[::-1], ["en"] * len(urls))
    pairs = xtd[::-1]
    for k in range(0, len(pairs), 999):
        other.update("text", [c for c, _ in pairs[k:k + 999]], [lang for _, lang in pairs[k:k + 999]])
    assert other.to_bytes() == data
    # small sketches are stored sparse: a few values cost bytes, not the 16 KiB of registers
    tiny = DistinctCounts()
    tiny.update("host", texts[:10], "en")
    assert len(tiny.to_bytes()) < 200
    # 14 sketches of up to 11,000 values in about what two dense sketches would take
    assert len(data) < 2 * (1 << DEFAULT_P), len(data)


@pytest.mark.parametrize("bad", [b"", b"junk", b"WCDC\x01\x0e\x00\x00\x00\x00"])
def test_from_bytes_refuses_foreign_or_damaged_data(bad):
    with pytest.raises(ValueError):
        DistinctCounts.from_bytes(bad)


def test_from_bytes_refuses_truncated_and_out_of_range_registers(xtd):
    import zlib

    counts = DistinctCounts(10)
    counts.update("text", [c for c, _ in xtd], [lang for _, lang in xtd])
    raw = zlib.decompress(counts.to_bytes())
    with pytest.raises(ValueError):
        DistinctCounts.from_bytes(zlib.compress(raw[:-3]))
    with pytest.raises(ValueError):
        DistinctCounts.from_bytes(zlib.compress(raw + b"x"))
    broken = bytearray(raw)
    broken[-1] = 200  # a register value no 64-bit hash can give
    with pytest.raises(ValueError, match="out of range"):
        DistinctCounts.from_bytes(zlib.compress(bytes(broken)))


def test_precision_bounds():
    for p in (3, 17, "14"):
        with pytest.raises(ValueError):
            DistinctCounts(p)
    assert DistinctCounts(4).m == 16 and DistinctCounts().m == 1 << DEFAULT_P
    assert DistinctCounts().estimate("text") == 0.0 and DistinctCounts().registers("text", ALL).sum() == 0


# --- hosts ----------------------------------------------------------------------------------------


def test_url_hosts_of_real_normalised_urls(alt_texts):
    urls, _ = alt_texts
    normalised = [u for u in (normalize_url(u)[0] for u in urls) if u]
    assert url_hosts(normalised).to_pylist() == [urlsplit(u).hostname for u in normalised]
    assert url_hosts(["https://user@Host.example:8080/p?q#f", "not a url", None, "http://[::1]/x"]).to_pylist() == [
        "Host.example", None, None, "[::1]"]
