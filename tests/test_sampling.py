"""Sampling: balance's decisions are hashes of (seed, uuid, epoch, purpose), rates are right; one
epoch of curation.sampling decides the same in the curate job and in training."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation import sampling
from curation.balance import keep_decisions, pick_index, uniforms, uuid_keys
from curation.schemas import IMAGES, MATCHED
from training.data import ShardDataset, curate_rows

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


# --- one epoch of sampling: the curate job's offline sample and training's online curation --------


def _images(n: int, rng: np.random.Generator, probs: dict[str, np.ndarray]) -> list[dict]:
    """Image rows (IMAGES) with 0-4 texts in en/de (with probabilities) or xx (without); some
    texts without entries, some images without texts (an empty or a null list)."""
    rows = []
    for i in range(n):
        texts = []
        for j in range(int(rng.integers(0, 5))):
            lang = str(rng.choice(["en", "de", "xx"], p=[0.5, 0.3, 0.2]))
            size = len(probs.get(lang, np.ones(50)))
            ids = sorted({int(x) for x in rng.integers(0, size, int(rng.integers(0, 4)))})
            texts.append({"text": f"text {i} {j}", "source": "alt", "page_url": None, "lid": lang, "lid_prob": 0.9,
                          "lang": lang, "entry_ids": ids})
        uuid = hashlib.sha224(f"img{i}".encode()).hexdigest()[:24] if i % 7 else f"img-{i}"
        rows.append({"uuid": uuid, "url": f"https://ex.com/{i}.jpg", "image": b"", "width": 1, "height": 1,
                     "original_size": 0, "sha256": "", "texts": None if i % 97 == 5 else texts})
    return rows


@pytest.mark.parametrize("seed,epoch", [(0, 0), (5, 0), (5, 1), (123, 7)])
def test_curate_job_and_training_make_the_same_decisions(tmp_path, seed, epoch):
    """For the same (seed, uuid, epoch) the curate job's sample (curate_batches, and the picks
    stored while grouping then keep_picked) and training's online curation (ShardDataset, whole
    row groups and every-W-th-row reads; curate_rows) pick the same text and keep the same images,
    including images whose picked text is in a language without probabilities (never kept) and
    images without texts."""
    rng = np.random.default_rng(seed)
    probs = {"en": rng.choice([0.0, 0.05, 0.4, 0.9, 1.0], 40).astype(np.float32),
             "de": rng.uniform(0.05, 1.0, 25).astype(np.float32)}
    rows = _images(3000, rng, probs)
    table = pa.Table.from_pylist(rows, schema=IMAGES)
    pq.write_table(table, tmp_path / "part-00000.parquet", row_group_size=700)
    pq.write_table(table, tmp_path / "one-group.parquet", row_group_size=len(rows))

    def as_dict(kept):
        return {r["uuid"]: (r["text"], r["lang"], list(r["entry_ids"] or [])) for r in kept}

    # the curate job: matched/ rows (sliced batches, as Spark may hand them over) ...
    matched = table.select(MATCHED.names).cast(MATCHED).combine_chunks().to_batches()[0]
    pieces = [matched.slice(0, 1000), matched.slice(1000, 1), matched.slice(1001)]
    direct = as_dict(r for out in sampling.curate_batches(pieces, probs_by_lang=probs, seed=seed, epoch=epoch)
                     for r in out.to_pylist())
    # ... or the picks stored while grouping, kept later
    picked = [sampling.pick_texts(b, seed, epoch) for b in pieces]
    stored = as_dict(r for p in picked for out in sampling.keep_picked(p, probs_by_lang=probs, seed=seed, epoch=epoch)
                     for r in out.to_pylist())
    assert stored == direct

    # training: ShardDataset over whole row groups, and over every 3rd row of one row group
    ds = ShardDataset(tmp_path / "part-00000.parquet", entry_probs=probs, seed=seed, shuffle_buffer=64, decode=False,
                      start_epoch=epoch, max_epochs=1)
    items = list(ds)
    assert {i["epoch"] for i in items} == {epoch}
    assert len(items) == len(direct)
    assert as_dict(items) == direct
    strided = [i for rank in range(3) for i in ShardDataset(
        tmp_path / "one-group.parquet", entry_probs=probs, seed=seed, rank=rank, world_size=3, shuffle_buffer=64,
        decode=False, start_epoch=epoch, max_epochs=1)]
    assert len(strided) == len(direct) and as_dict(strided) == direct
    # curate_rows (training's rows form) agrees image by image
    uuids = [r["uuid"] for r in rows]
    pick, keep = curate_rows(uuids, [r["texts"] for r in rows], probs, seed, epoch)
    assert {u for u, k in zip(uuids, keep, strict=True) if k} == set(direct)
    chosen = [r["texts"][j] if r["texts"] else None for r, j in zip(rows, pick, strict=True)]
    for u, t, k in zip(uuids, chosen, keep, strict=True):
        if k:
            assert direct[u] == (t["text"], t["lang"], t["entry_ids"])

    # the formula: pick_index among the image's texts, keep with 1 - prod(1 - p) (0 for xx / no entry)
    n = [len(r["texts"] or []) for r in rows]
    assert pick.tolist() == pick_index(uuids, n, seed, epoch).tolist()
    u_keep = uniforms(uuids, seed, epoch, "keep")
    expect = [bool(t is not None and t["lang"] in probs
                   and u < 1.0 - math.prod(1.0 - float(probs[t["lang"]][e]) for e in set(t["entry_ids"])))
              for t, u in zip(chosen, u_keep, strict=True)]
    assert keep.tolist() == expect
    # every case occurs: kept, not sampled, picked xx, no texts
    assert 0 < len(direct) < len(rows)
    assert sum(t is not None and t["lang"] == "xx" for t in chosen) > 100
    assert ds.rejects["no_texts"] == n.count(0) > 0
    assert ds.rejects["not_sampled"] == len(rows) - n.count(0) - len(direct)
