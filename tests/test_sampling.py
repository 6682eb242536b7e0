"""curation.balance sampling: decisions are hashes of (seed, uuid, epoch, purpose), rates are right."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.balance import keep_decisions, pick_index, uniforms, uuid_keys

PROPS = settings(derandomize=True, max_examples=100, deadline=None)


def make_uuids(n: int, salt: str = "") -> list[str]:
    """Image uuids as the pipeline makes them: hex digests (24 chars, like urls.image_uuid)."""
    return [hashlib.sha224(f"{salt}{i}".encode()).hexdigest()[:24] for i in range(n)]


uuid_st = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    st.text(max_size=40),  # any string, non-hex included
)


@PROPS
@given(
    st.lists(uuid_st, min_size=1, max_size=60, unique=True),
    st.integers(0, 2**31),
    st.integers(0, 50),
    st.randoms(use_true_random=False),
    st.integers(1, 7),
)
def test_decisions_do_not_depend_on_order_or_batching(uuids, seed, epoch, rnd, n_batches):
    n = [len(u) % 4 + 1 for u in uuids]
    probs = [(len(u) * 37 % 100) / 100 for u in uuids]
    ref_u = uniforms(uuids, seed, epoch, "keep")
    ref_pick = pick_index(uuids, n, seed, epoch)
    ref_keep = keep_decisions(uuids, probs, seed, epoch)
    order = list(range(len(uuids)))
    rnd.shuffle(order)
    cuts = sorted(rnd.sample(range(1, len(order)), min(n_batches, len(order)) - 1)) if len(order) > 1 else []
    batches = np.split(np.array(order), cuts)
    for batch in batches:
        idx = batch.tolist()
        sub = [uuids[i] for i in idx]
        assert uniforms(sub, seed, epoch, "keep").tolist() == ref_u[idx].tolist()
        assert pick_index(sub, [n[i] for i in idx], seed, epoch).tolist() == ref_pick[idx].tolist()
        assert keep_decisions(sub, [probs[i] for i in idx], seed, epoch).tolist() == ref_keep[idx].tolist()
    # One at a time too (a streaming reader).
    for i in order[:5]:
        assert uniforms([uuids[i]], seed, epoch, "keep")[0] == ref_u[i]


def test_uniforms_in_unit_interval_and_equal_for_equal_inputs():
    uuids = make_uuids(5000) + ["", "not-hex", "0", "ffffffffffffffffffffffffffffffff"]
    u = uniforms(uuids, 7, 3, "keep")
    assert u.dtype == np.float64 and u.shape == (len(uuids),)
    assert ((u >= 0) & (u < 1)).all()
    assert np.array_equal(u, uniforms(list(uuids), 7, 3, "keep"))
    assert uniforms([], 7, 3, "keep").shape == (0,)


def test_streams_differ_by_epoch_seed_and_purpose():
    uuids = make_uuids(20_000)
    base = uniforms(uuids, 0, 0, "keep")
    for other in (uniforms(uuids, 0, 1, "keep"), uniforms(uuids, 1, 0, "keep"), uniforms(uuids, 0, 0, "pick")):
        assert not np.any(other == base)
        # independent streams: correlation within sampling error (5 sigma of 1/sqrt(n))
        assert abs(np.corrcoef(base, other)[0, 1]) < 5 / math.sqrt(len(uuids))
    kept_e0 = keep_decisions(uuids, np.full(len(uuids), 0.5), 0, 0)
    kept_e1 = keep_decisions(uuids, np.full(len(uuids), 0.5), 0, 1)
    both = np.mean(kept_e0 & kept_e1)
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / len(uuids))  # a fresh sample each epoch


def test_structured_uuids_are_independent():
    # Ids that differ only in their last hex digits (sequential ids) must not share decisions.
    for uuids in ([f"{i:032x}" for i in range(10_000)], [f"{i:024x}" for i in range(10_000)],
                  [f"{i << 64:032x}" for i in range(10_000)], [f"img-{i}" for i in range(10_000)]):
        u = uniforms(uuids, 0, 0, "keep")
        assert len(np.unique(u)) == len(uuids)
        assert len(np.unique(uuid_keys(uuids))) == len(uuids)
        counts, _ = np.histogram(u, bins=20, range=(0.0, 1.0))
        expected = len(uuids) / 20
        assert ((counts - expected) ** 2 / expected).sum() < 19 + 5 * math.sqrt(2 * 19)


def test_uniformity_chi_square():
    u = uniforms(make_uuids(200_000, "chi"), 42, 0, "keep")
    buckets = 100
    counts = np.bincount((u * buckets).astype(np.int64), minlength=buckets)
    expected = len(u) / buckets
    chi2 = ((counts - expected) ** 2 / expected).sum()
    dof = buckets - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)  # 5 sigma above the mean of chi2(dof)
    assert chi2 > dof - 5 * math.sqrt(2 * dof)  # and not suspiciously flat


def test_keep_rate_matches_probabilities():
    n = 200_000
    uuids = make_uuids(n, "rate")
    rng = np.random.default_rng(1234)  # only to generate the probabilities; sampling itself hashes
    probs = np.concatenate([rng.random(n // 2), rng.choice([0.0, 0.01, 0.3, 1.0], size=n - n // 2)])
    kept = keep_decisions(uuids, probs, seed=3, epoch=5)
    assert kept.dtype == bool
    assert not kept[probs == 0.0].any()
    assert kept[probs == 1.0].all()
    mean, var = probs.sum(), (probs * (1 - probs)).sum()
    assert abs(kept.sum() - mean) < 5 * math.sqrt(var)
    for p in (0.01, 0.3):  # per-probability groups too
        sel = probs == p
        k = sel.sum()
        assert abs(kept[sel].sum() - k * p) < 5 * math.sqrt(k * p * (1 - p))


def test_pick_index_is_uniform_over_choices():
    n = 120_000
    uuids = make_uuids(n, "pick")
    choices = np.array([1, 2, 3, 5] * (n // 4))
    picked = pick_index(uuids, choices, seed=0, epoch=0)
    assert ((picked >= 0) & (picked < choices)).all()
    assert (picked[choices == 1] == 0).all()
    for k in (2, 3, 5):
        sel = picked[choices == k]
        counts = np.bincount(sel, minlength=k)
        expected = len(sel) / k
        sd = math.sqrt(len(sel) * (1 / k) * (1 - 1 / k))
        assert (np.abs(counts - expected) < 5 * sd).all()
    # Pick and keep are independent draws: the same uuid's pick says nothing about its keep.
    keep = keep_decisions(uuids, np.full(n, 0.5), 0, 0)
    sel = choices == 2
    agree = np.mean((picked[sel] == 1) == keep[sel])
    assert abs(agree - 0.5) < 5 * math.sqrt(0.25 / sel.sum())


@PROPS
@given(st.integers(1, 16).map(lambda k: 2 * k), st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=30),
       st.booleans())
def test_uuid_keys_same_in_uniform_and_mixed_batches(length, values, upper):
    # A batch of same-length hex uuids takes a vectorised path; it must agree with the general one.
    uuids = [f"{v:032x}"[-length:] for v in values]
    if upper:
        uuids = [u.upper() for u in uuids]
    alone = uuid_keys(uuids)
    mixed = uuid_keys(uuids + ["not hex", "abc"])[: len(uuids)]
    assert alone.tolist() == mixed.tolist()
    assert [int(uuid_keys([u])[0]) for u in uuids] == alone.tolist()
    # case does not matter; whitespace does (it is not a hex uuid then)
    assert uuid_keys([uuids[0].lower()]).tolist() == uuid_keys([uuids[0].upper()]).tolist()
    assert uuid_keys([" " + uuids[0][1:]]).tolist() != uuid_keys(["0" + uuids[0][1:]]).tolist()


def test_non_string_uuid_is_a_clear_error():
    with pytest.raises(TypeError, match="uuids must be strings"):
        uniforms(["ab", None], 0, 0, "keep")
    with pytest.raises(TypeError, match="uuids must be strings"):
        uuid_keys([b"ab"])
