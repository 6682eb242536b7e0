"""curation.balance: the balancing maths equals a direct pure-Python computation of the definitions.

DESIGN section 3 steps 4-5 and the paper's code:
    t_to_p(t, c) = sum(c[c < t]) / sum(c)
    p_to_t(p, c) = sorted(c)[argmin |cumsum(sorted c) / sum(c) - p|]   (first index on ties)
    prob[e] = t / max(c_e, t);   keep = 1 - prod(1 - prob[e] for e in entry_ids)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.balance import (
    T_EN_CLIP400M,
    T_EN_METACLIP2,
    entry_probabilities,
    keep_probabilities,
    keep_probability,
    language_thresholds,
    tail_proportion,
    threshold_for_proportion,
)

PROPS = settings(derandomize=True, max_examples=300, deadline=None)


# --- the definitions, written out in plain Python --------------------------------------------------


def ref_t_to_p(counts: list[int], t: float) -> float:
    total = sum(counts)
    return 0.0 if total == 0 else sum(c for c in counts if c < t) / total


def ref_p_to_t(counts: list[int], p: float) -> int:
    s = sorted(counts)
    total = sum(s)
    if not s or total == 0:
        return 0
    best_i, best_d, run = 0, math.inf, 0
    for i, c in enumerate(s):
        run += c
        d = abs(run / total - p)
        if d < best_d:  # strict: the first index wins ties
            best_i, best_d = i, d
    return s[best_i]


def ref_probs(counts: list[int], t: float) -> list[float]:
    """t / max(c, t); an entry at or below t (including t == 0 with c == 0) keeps everything."""
    return [1.0 if c <= t else t / c for c in counts]


def ref_keep(ids: list[int], probs: list[float]) -> float:
    miss = 1.0
    for e in sorted(set(ids)):
        miss *= 1.0 - float(probs[e])
    return 0.0 if not ids else 1.0 - miss


# --- strategies ------------------------------------------------------------------------------------

counts_st = st.one_of(
    st.lists(st.integers(0, 10), min_size=1, max_size=30),  # many ties and zeros
    st.lists(st.integers(0, 2_000_000), min_size=1, max_size=60),
    st.lists(st.integers(1, 300), min_size=1, max_size=1).map(lambda c: c * 7),  # all counts equal
    st.integers(1, 10**9).map(lambda c: [c]),  # one entry
)
t_st = st.one_of(st.integers(0, 2_000_001), st.sampled_from([T_EN_CLIP400M, T_EN_METACLIP2, 10**12]))


@PROPS
@given(counts_st, t_st)
def test_tail_proportion(counts, t):
    assert tail_proportion(np.array(counts), t) == ref_t_to_p(counts, t)


@PROPS
@given(counts_st, st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0])))
def test_threshold_for_proportion(counts, p):
    t = threshold_for_proportion(np.array(counts), p)
    assert t == ref_p_to_t(counts, p)
    assert isinstance(t, int)
    assert t in counts


@PROPS
@given(counts_st, t_st)
def test_entry_probabilities(counts, t):
    probs = entry_probabilities(np.array(counts), t)
    assert probs.dtype == np.float32
    assert probs.tolist() == np.array(ref_probs(counts, t), dtype=np.float32).tolist()
    assert ((probs > 0) | (np.array(counts) > t)).all()
    assert (probs <= 1).all()


def test_threshold_edge_cases():
    assert threshold_for_proportion(np.array([], dtype=np.int64), 0.3) == 0
    assert threshold_for_proportion(np.zeros(5, dtype=np.int64), 0.3) == 0  # a language with no matches
    assert threshold_for_proportion(np.array([42]), 0.0) == 42  # one entry: its count, whatever p
    assert threshold_for_proportion(np.array([42]), 1.0) == 42
    assert threshold_for_proportion(np.array([5, 5, 5, 5]), 0.5) == 5
    # shares 0.25, 1.0: p = 0.625 is equally close to both -> the first (count 1, not 3).
    assert threshold_for_proportion(np.array([3, 1]), 0.625) == 1
    assert threshold_for_proportion(np.array([1, 2, 3, 4]), 0.0) == 1
    assert threshold_for_proportion(np.array([1, 2, 3, 4]), 1.0) == 4
    assert tail_proportion(np.array([0, 0]), 5) == 0.0
    assert tail_proportion(np.array([1, 2, 3, 4]), 100) == 1.0  # t above every count
    assert tail_proportion(np.array([1, 2, 3, 4]), 1) == 0.0
    assert entry_probabilities(np.array([0, 3, 10]), 0).tolist() == [1.0, 0.0, 0.0]
    assert entry_probabilities(np.array([0, 5, 10, 20]), 10).tolist() == [1.0, 1.0, 1.0, 0.5]


# --- language thresholds ---------------------------------------------------------------------------

langs_st = st.dictionaries(
    st.sampled_from(["de", "zh", "th", "ru", "el", "ja", "xx"]),
    st.one_of(counts_st, st.just([]), st.lists(st.just(0), min_size=1, max_size=5)),
    max_size=5,
)


@PROPS
@given(counts_st, langs_st, t_st)
def test_language_thresholds(en_counts, others, t_en):
    counts_by_lang = {"en": en_counts, **others}
    got = language_thresholds({k: np.array(v, dtype=np.int64) for k, v in counts_by_lang.items()}, t_en)
    p = ref_t_to_p(en_counts, t_en)
    assert sorted(got) == sorted(counts_by_lang)
    for lang, c in counts_by_lang.items():
        row = got[lang]
        t = int(t_en) if lang == "en" else ref_p_to_t(c, p)
        assert row["t"] == t
        assert row["p"] == p
        assert row["tail_proportion"] == ref_t_to_p(c, t)
        assert row["total_count"] == sum(c)
        assert row["entries"] == len(c)
        assert row["matched_entries"] == sum(1 for x in c if x > 0)
        assert row["drops_language"] == (t == 0 and sum(c) > 0)
        if c and sum(c) and lang != "en":
            assert t in c


def test_language_thresholds_edge_cases():
    # t_en above every English count: p = 1, so every language keeps everything (t = its max count).
    out = language_thresholds({"en": np.array([1, 2, 3]), "de": np.array([0, 7, 9, 9])}, t_en=1000)
    assert out["en"]["p"] == 1.0 and out["en"]["t"] == 1000
    assert out["de"]["t"] == 9
    assert entry_probabilities(np.array([0, 7, 9, 9]), out["de"]["t"]).tolist() == [1.0] * 4
    # A language with no matches gets t = 0 and counts of zero.
    out = language_thresholds({"en": np.array([10, 20]), "th": np.zeros(4, dtype=np.int64), "xx": np.array([])}, 15)
    assert out["th"]["t"] == 0 and out["th"]["total_count"] == 0 and out["th"]["matched_entries"] == 0
    assert out["xx"]["t"] == 0 and out["xx"]["entries"] == 0
    assert not out["th"]["drops_language"] and not out["en"]["drops_language"]
    # p ~ 0.001 is closer to the zero counts' share (0) than to 5/10: t = 0 drops all of de's texts
    out = language_thresholds({"en": np.array([1, 1000]), "de": np.array([0, 0, 5, 5])}, t_en=2)
    assert out["de"]["t"] == 0 and out["de"]["drops_language"]
    assert entry_probabilities(np.array([0, 0, 5, 5]), 0).tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="'en'"):
        language_thresholds({"de": np.array([1])}, 10)


# --- keep probabilities ------------------------------------------------------------------------------

probs_st = st.lists(
    st.one_of(st.floats(0.0, 1.0, width=32), st.sampled_from([0.0, 1.0, 0.5])), min_size=1, max_size=40
)


@PROPS
@given(probs_st, st.data())
def test_keep_probability(probs, data):
    n = len(probs)
    id_lists = data.draw(st.lists(st.lists(st.integers(0, n - 1), max_size=8), max_size=20))
    parr = np.array(probs, dtype=np.float32)
    expected = [ref_keep(ids, parr.tolist()) for ids in id_lists]
    singles = [keep_probability(ids, parr) for ids in id_lists]
    assert singles == pytest.approx(expected, rel=1e-12, abs=1e-15)
    batch = keep_probabilities(id_lists, parr)
    assert batch.shape == (len(id_lists),)
    assert batch.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    for ids, k in zip(id_lists, batch.tolist(), strict=True):
        if not ids:
            assert k == 0.0
        if any(parr[e] == 1.0 for e in ids):
            assert k == 1.0  # an entry kept with certainty keeps the text with certainty
        assert 0.0 <= k <= 1.0


def test_keep_probability_examples():
    probs = np.array([1.0, 0.5, 0.25, 0.0], dtype=np.float32)
    assert keep_probability([], probs) == 0.0
    assert keep_probability([1], probs) == 0.5
    assert keep_probability([1, 1, 1], probs) == 0.5  # duplicates count once
    assert keep_probability([1, 2], probs) == 1 - 0.5 * 0.75
    assert keep_probability([0, 3], probs) == 1.0
    assert keep_probability([3], probs) == 0.0
    assert keep_probabilities([], probs).tolist() == []
    assert keep_probabilities([[], []], probs).tolist() == [0.0, 0.0]
    assert keep_probabilities([np.array([1, 2], dtype=np.int32), [0], []], probs).tolist() == [
        pytest.approx(1 - 0.5 * 0.75), 1.0, 0.0
    ]


def test_keep_probabilities_input_forms_and_bad_ids():
    probs = np.array([0.5, 0.25, 1.0], dtype=np.float32)
    forms = [[0, 1], (1, 0, 0), np.array([1, 0], dtype=np.int32), np.array([[0, 1]], dtype=np.uint16), [], ()]
    out = keep_probabilities(forms, probs)
    assert out.tolist() == pytest.approx([1 - 0.5 * 0.75] * 4 + [0.0, 0.0])
    with pytest.raises(IndexError, match="out of range"):
        keep_probabilities([[0], [3]], probs)
    with pytest.raises(IndexError, match="out of range"):
        keep_probabilities([[-1]], probs)
