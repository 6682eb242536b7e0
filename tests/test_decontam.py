"""curation.decontam: an index of the real XTD captions (11 languages), their COCO image URLs and the
pHashes of generated eval images rejects copies and near-copies and nothing else.

Every text rejection is checked against the exact definition: a shingle Jaccard >= the
threshold with some eval caption, computed here by brute force over all captions.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import decontam as dc
from curation import image_hash as ih
from curation import near_dup as nd
from tests.conftest import shared_file
from tests.test_image_hash import copies, scene

COCO = "http://images.cocodataset.org/train2014/"


@pytest.fixture(scope="module")
def xtd():
    data = json.loads(shared_file("eval/babel-imagenet/xtd.json").read_text(encoding="utf-8"))
    captions = {lang: [c for caps in per_image for c in caps] for lang, per_image in sorted(data["captions"].items())}
    return data["images"], captions


@pytest.fixture(scope="module")
def eval_images():
    return [scene(1000 + k) for k in range(8)]


@pytest.fixture(scope="module")
def index(xtd, eval_images):
    images, captions = xtd
    all_captions = [c for caps in captions.values() for c in caps]
    return dc.DecontamIndex(all_captions, urls=[COCO + name for name in images],
                            phashes=ih.phashes(eval_images).tolist())


@pytest.fixture(scope="module")
def caption_sets(xtd):
    """Every caption's shingle set, and an inverted index shingle -> captions (exact: a caption
    sharing no shingle with a text has Jaccard 0 with it)."""
    _images, captions = xtd
    sets = [nd.shingles(c) for caps in captions.values() for c in caps]
    inverted: dict[bytes, list[int]] = {}
    for i, sh in enumerate(sets):
        for x in sh:
            inverted.setdefault(x, []).append(i)
    return sets, inverted


def _best_jaccard(text: str, caption_sets) -> float:
    """The largest shingle Jaccard of the text with any eval caption, by brute force."""
    sets, inverted = caption_sets
    mine = nd.shingles(text)
    sharing = {i for x in mine for i in inverted.get(x, ())}
    return max((nd.jaccard(mine, sets[i]) for i in sharing), default=0.0)


def near_copies(captions: dict[str, list[str]]) -> list[str]:
    """Generated near-copies of real captions: capitals, punctuation, a site suffix, a word dropped."""
    out = []
    for lang, caps in captions.items():
        for k, cap in enumerate(caps[:60]):
            kind = k % 4
            if kind == 0:
                out.append(cap.upper() if lang not in ("de", "tr") else cap.title())
            elif kind == 1:
                out.append(f"\u201c{cap}\u201d \u2014 ")
            elif kind == 2:
                out.append(f"{cap} | stock photo")
            else:
                words = cap.split()
                out.append(" ".join(words[:-1]) if len(words) > 6 else f"{cap}!")
    return out


def test_index_holds_the_eval_sets(index, xtd):
    images, captions = xtd
    stats = index.stats()
    assert stats["urls"] == len(set(images)) and stats["images"] == 8
    distinct = {c for caps in captions.values() for c in caps}
    assert stats["captions"] + stats["captions_too_short"] == len(distinct)
    assert 0 < stats["captions_too_short"] < 0.02 * len(distinct)
    assert (stats["bands"], stats["rows"]) == nd.lsh_params(dc.TEXT_THRESHOLD, nd.NUM_PERM, *dc.LSH_WEIGHTS)


def test_eval_captions_and_near_copies_are_rejected_exactly(index, xtd, caption_sets):
    _images, captions = xtd
    exact = [c for caps in captions.values() for c in caps[::50]]
    copies_ = near_copies(captions)
    texts = exact + copies_
    hits = index.text_matches(texts)
    best = np.array([_best_jaccard(t, caption_sets) for t in texts])
    long_enough = np.array([len(nd.shingles(t)) >= dc.MIN_SHINGLES for t in texts])
    # no false positive: every rejection has an eval caption at or above the threshold
    assert np.all(best[hits] >= dc.TEXT_THRESHOLD)
    # the eval captions themselves, and every copy at J >= 0.9, are all caught
    assert hits[:len(exact)][long_enough[:len(exact)]].all()
    clear = (best >= 0.9) & long_enough
    assert hits[clear].all()
    # near the threshold the bands find most (95% by design at J = 0.8)
    near = (best >= dc.TEXT_THRESHOLD) & long_enough
    assert hits[near].mean() >= 0.9, hits[near].mean()
    assert np.array_equal(index.text_matches(texts, signatures=nd.signatures(texts)), hits)
    assert np.array_equal(index.text_matches(pa.array(texts)), hits)


def test_real_web_alt_texts_are_kept(index, caption_sets):
    texts = pq.read_table(shared_file("web/alt-text-1000.parquet"), columns=["TEXT"]).column("TEXT").to_pylist()
    hits = index.text_matches(texts)
    for t in np.array(texts, dtype=object)[hits]:  # any rejection must be a real near-copy
        assert _best_jaccard(t, caption_sets) >= dc.TEXT_THRESHOLD
    assert hits.mean() < 0.01


def test_short_generic_captions_are_not_indexed():
    index = dc.DecontamIndex(["a cat", "dog", "a large brown dog running along a sandy beach at sunset"])
    assert index.stats()["captions"] == 1 and index.stats()["captions_too_short"] == 2
    got = index.text_matches(["a cat", "Dog!", "A large brown dog running along a sandy beach at sunset."])
    assert got.tolist() == [False, False, True]


def test_urls_match_after_normalisation(index, xtd):
    images, _ = xtd
    urls = [COCO + images[3], COCO.replace("http://images", "HTTP://Images") + images[4],
            "http://images.cocodataset.org:80/train2014/" + images[5] + "#frag",
            COCO + "not-an-eval-image.jpg", None, "javascript:void(0)"]
    assert index.url_matches(urls).tolist() == [True, True, True, False, False, False]
    assert index.url_matches([COCO + images[3], None], normalized=True).tolist() == [True, False]
    assert index.url_matches(pa.array([COCO + images[3]]), normalized=True).tolist() == [True]


def test_images_match_by_phash(index, eval_images):
    near = [ih.phash(c) for img in eval_images[:3] for c in copies(img).values()]
    others = ih.phashes([scene(5000 + k) for k in range(20)]).tolist()
    got = index.image_matches(near + others + [None])
    assert got[:len(near)].all() and not got[len(near):].any()
    assert index.image_matches(np.array(near[:2], dtype=np.uint64)).all()
    assert index.image_matches(ih.as_int64(near[:2])).all()


def test_check_gives_one_reason_per_record_in_order(index, xtd, eval_images):
    images, captions = xtd
    cap = captions["en"][7]
    ph = ih.phash(eval_images[0])
    other = ih.phash(scene(9999))
    urls = [COCO + images[0], COCO + "x.jpg", "https://shop.example/a.jpg", "https://shop.example/b.jpg", None]
    texts = [cap, cap, "a red bicycle", "Rooster Royalty Free Stock Photos", "Rooster Royalty Free Stock Photos"]
    phashes = [ph, ph, ph, other, None]
    assert index.check(urls, texts, phashes) == ["eval_url", "eval_text", "eval_image", None, None]
    assert index.check(urls[:2], texts[:2]) == ["eval_url", "eval_text"]
    assert set(dc.REASONS) == {"eval_url", "eval_text", "eval_image"}
    with pytest.raises(ValueError, match="one entry per record"):
        index.check(urls, texts[:2])


def test_bytes_round_trip(index, xtd):
    _images, captions = xtd
    data = index.to_bytes()
    back = dc.DecontamIndex.from_bytes(data)
    assert back.stats() == index.stats()
    texts = near_copies(captions)[:200] + ["unrelated words about a bicycle shop"]
    assert np.array_equal(back.text_matches(texts), index.text_matches(texts))
    with pytest.raises(ValueError):
        dc.DecontamIndex.from_bytes(b"not an index")


def test_empty_index_keeps_everything():
    index = dc.DecontamIndex()
    assert index.check(["http://a.example/x.jpg"], ["anything at all"], [0]) == [None]
