"""Perceptual hashes at download (jobs/download.py, curation/download_shards.py): a pHash per stored
image, near-duplicate groups across the run, and decontamination against evaluation images.

Real local Spark, a real loopback HTTP server, images drawn by tests/test_image_hash.scene: a
few drawings each served as several near-copies (re-encoded, resized, stretched, noised), more
drawings served once, an evaluation folder in ImageNet layout, and a near-copy of one evaluation
image planted among the downloads.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_download_job import write_curated
from test_fetch import HostileServer
from test_image_hash import scene

from curation import download_shards as ds
from curation import image_hash as ih
from curation.download_config import DownloadConfig
from curation.images import process_image, resolve_resizer
from curation.urls import image_uuid
from jobs import download as download_job

pytestmark = pytest.mark.spark

# generous timeouts with retries: a loaded 2-core machine can stall the loopback server for
# seconds, and no test here is about timeouts
CFG = DownloadConfig(
    allow_loopback=True, connect_timeout=10.0, read_timeout=15.0, total_timeout=30.0, retries=2,
    threads=8, per_host_concurrency=8, image_size=128, shard_size=100,
)
FAMILIES = range(4)  # drawings served as near-copies
SINGLES = range(10, 22)  # drawings served once
EVAL = (500, 501, 502)  # drawings of the evaluation folder; 500 is planted among the downloads


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def noised(img: Image.Image, seed: int, amount: int = 6) -> Image.Image:
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    noise = np.random.default_rng([seed, 0x0153]).integers(-amount, amount + 1, a.shape)
    return Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8))


def variants(img: Image.Image, seed: int) -> dict[str, bytes]:
    return {"orig": jpeg(img), "q35": jpeg(img, 35), "small": jpeg(img.resize((180, 180), Image.Resampling.BILINEAR), 80),
            "stretched": jpeg(img.resize((300, 240))), "noised": jpeg(noised(img, seed))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(server, curated dir, eval dir, {url: family or None}, planted url, exact-duplicate url)."""
    base = tmp_path_factory.mktemp("phash")
    with HostileServer() as srv:
        family = {}
        for f in FAMILIES:
            for name, body in variants(scene(f), f).items():
                family[srv.add(f"f{f}-{name}.jpg", body)] = f
        for s in SINGLES:
            family[srv.add(f"s{s}.jpg", jpeg(scene(s)))] = None
        exact = srv.add("f0-orig-again.jpg", variants(scene(0), 0)["orig"])  # same bytes: an exact duplicate
        planted = srv.add("leak.jpg", jpeg(scene(EVAL[0]).resize((220, 200)), 60))
        urls = [*family, exact, planted]
        write_curated(str(base / "curated"), urls)
        for k, s in enumerate(EVAL):
            d = base / "eval" / f"{k:04d}"
            d.mkdir(parents=True)
            scene(s, 300).save(d / f"ILSVRC_val_{k:04d}.JPEG", "JPEG", quality=92)
        (base / "eval" / "labels.txt").write_text("not an image\n")  # skipped: not an image file name
        (base / "eval" / "broken.jpg").write_bytes(b"not a jpeg")  # counted as unreadable
        yield srv, str(base / "curated"), str(base / "eval"), family, planted, exact, base


def _run(spark, world, name: str, **overrides) -> tuple[str, dict]:
    _srv, curated, eval_dir, *_rest, base = world
    out = str(base / name)
    cfg = DownloadConfig(**{**CFG.to_dict(), "eval_images": eval_dir, **overrides})
    return out, download_job.run(spark, curated, out, cfg, progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def one_shard(spark, world):
    return _run(spark, world, "one")


@pytest.fixture(scope="module")
def many_shards(spark, world):
    return _run(spark, world, "many", shard_size=1)  # 34 shards: the Spark exchange, not the driver


def _groups(out: str) -> dict[str, str]:
    t = pq.read_table(os.path.join(out, ds.NEAR_DUPLICATES))
    assert t.schema.equals(ds.NEAR_DUPS, check_metadata=False)
    return dict(zip(t.column("uuid").to_pylist(), t.column("group").to_pylist(), strict=True))


def test_near_copies_share_a_group_distinct_drawings_do_not(world, one_shard):
    _srv, _c, _e, family, _planted, exact, _base = world
    out, report = one_shard
    groups = _groups(out)
    by_family: dict[int, set] = {}
    for url, f in family.items():
        u = image_uuid(url)
        if f is None:
            assert u not in groups, url  # a drawing served once is in no group
        else:
            by_family.setdefault(f, set()).add(u)
    # the exact duplicate of f0-orig was dropped by the sha256 pass (the larger uuid of the two);
    # the one kept stands in its group
    orig = image_uuid(next(u for u, f in family.items() if f == 0 and u.endswith("/f0-orig.jpg")))
    dropped = max(orig, image_uuid(exact))
    assert report["duplicates"] == 1
    by_family[0] = (by_family[0] | {image_uuid(exact)}) - {dropped}
    for f, members in sorted(by_family.items()):
        assert {groups.get(u) for u in members} == {min(members)}, f  # one group, named by its smallest uuid
    assert len({min(m) for m in by_family.values()}) == len(FAMILIES)
    assert set(groups) == set().union(*by_family.values())
    t = pq.read_table(os.path.join(out, ds.NEAR_DUPLICATES)).to_pylist()
    assert all(r["group_size"] == 5 and 0 <= r["distance"] <= CFG.near_duplicate_distance for r in t)
    assert all(r["distance"] == 0 for r in t if r["uuid"] == r["group"])
    near = report["near_duplicates"]
    assert near["groups"] == 4 and near["images_in_groups"] == 20 and near["images_beyond_first"] == 16
    assert near["images_hashed"] == report["succeeded"] == report["images_phashed"]
    assert near["largest_groups"][0]["size"] == 5


def test_phash_side_tables_match_the_shards(one_shard):
    out, report = one_shard
    shards = sorted(n for n in os.listdir(out) if n.startswith("shard-"))
    for n in shards:
        images = pq.read_table(os.path.join(out, n), columns=["uuid", "image"]).to_pylist()
        hashes = pq.read_table(os.path.join(out, ds.PHASH_DIR, n))
        assert hashes.schema.equals(ds.PHASHES, check_metadata=False)
        assert hashes.column("uuid").to_pylist() == [r["uuid"] for r in images]  # same rows, same order
        for r, h in zip(images, hashes.column("phash").to_pylist(), strict=True):
            # the hash of the stored pixels: the stored JPEG hashes within a bit or two of it
            assert ih.hamming(h, ih.phash(Image.open(io.BytesIO(r["image"])))) <= 2
    stats = json.load(open(os.path.join(out, "_stats", shards[0].replace(".parquet", ".json"))))
    assert stats["phashed"] == report["succeeded"] and stats["near_duplicates"] == 20
    manifest = json.load(open(os.path.join(out, "_MANIFEST.json")))
    assert manifest["near_duplicates"] == report["near_duplicates"]
    assert manifest["layout"]["near_duplicates"] == ds.NEAR_DUPLICATES and manifest["config"]["phash"] is True


def test_groups_are_the_same_for_one_and_many_shards(one_shard, many_shards):
    (out1, r1), (out2, r2) = one_shard, many_shards
    assert r1["shards"] == 1 and r2["shards"] > download_job.DRIVER_NEAR_DUP_MAX_SHARDS
    assert _groups(out1) == _groups(out2)
    assert r1["near_duplicates"] == r2["near_duplicates"]
    per_shard = sum(json.load(open(os.path.join(out2, "_stats", n)))["near_duplicates"]
                    for n in os.listdir(os.path.join(out2, "_stats")))
    assert per_shard == r2["near_duplicates"]["images_in_groups"]


def test_a_copy_of_an_evaluation_image_is_rejected_and_listed(world, one_shard, many_shards):
    _srv, _c, eval_dir, _family, planted, _exact, _base = world
    for out, report in (one_shard, many_shards):
        assert report["accounting_ok"] and report["failures"] == {"duplicate": 1, "eval_image": 1}
        assert image_uuid(planted) not in set(pq.read_table(out, columns=["uuid"]).column("uuid").to_pylist())
        failed = [r for n in sorted(os.listdir(os.path.join(out, "_failed")))
                  for r in pq.read_table(os.path.join(out, "_failed", n)).to_pylist()]
        assert [(r["uuid"], r["reason"]) for r in failed] == [(image_uuid(planted), "eval_image")]
        assert failed[0]["detail"].startswith("eval image 0000/ILSVRC_val_0000.JPEG at distance ")
        dc = report["decontam"]
        assert dc["rejected"] == 1 and dc["images"] == len(EVAL) and dc["unreadable"] == 1
        assert dc["shards_not_checked"] == 0
        assert [e["uuid"] for e in dc["examples"]] == [image_uuid(planted)] and dc["folder"] == eval_dir
        ev = pq.read_table(os.path.join(out, ds.EVAL_IMAGES)).to_pylist()
        assert [r["name"] for r in ev] == [f"{k:04d}/ILSVRC_val_{k:04d}.JPEG" for k in range(len(EVAL))] + ["broken.jpg"]
        assert all(r["phash"] is not None and r["reason"] is None for r in ev[:-1])
        assert ev[-1]["phash"] is None and ev[-1]["reason"] == "not_an_image"
        manifest = json.load(open(os.path.join(out, "_MANIFEST.json")))
        assert manifest["decontam"]["rejected"] == 1 and manifest["failures"]["eval_image"] == 1


def test_retry_failed_does_not_refetch_eval_rejects(spark, world, one_shard):
    srv, curated, *_rest = world
    out, _report = one_shard
    before = len(srv.requests)
    cfg = DownloadConfig(**{**CFG.to_dict(), "eval_images": world[2]})
    report = download_job.run(spark, curated, out, cfg, retry_failed=True, progress=False, log=lambda *_: None)
    assert report["retried_urls"] == 0 and report["shards_retried"] == 0 and len(srv.requests) == before
    assert report["failures"] == {"duplicate": 1, "eval_image": 1} and report["near_duplicates"]["groups"] == 4


def test_without_eval_images_the_copy_is_kept_and_groups_with_nothing(spark, world):
    out, report = _run(spark, world, "noeval", eval_images="", near_duplicates=False)
    assert report["failures"] == {"duplicate": 1} and report["decontam"] is None
    assert report["near_duplicates"] is None and not os.path.exists(os.path.join(out, ds.NEAR_DUPLICATES))
    assert report["images_phashed"] == report["succeeded"]
    # a rerun with evaluation images finds every shard complete: it says they were not checked
    again = download_job.run(spark, world[1], out, DownloadConfig(**{**CFG.to_dict(), "eval_images": world[2]}),
                             progress=False, log=lambda *_: None)
    assert again["shards_run"] == 0 and again["decontam"]["shards_not_checked"] == 1
    assert any("not checked" in h for h in download_job.summary_hints(again))


def test_process_image_hashes_the_stored_pixels():
    data = jpeg(scene(7, 400))
    resizer = resolve_resizer("auto")
    img, _ = process_image(data, image_size=128, resizer=resizer, phash=True)
    plain, _ = process_image(data, image_size=128, resizer=resizer)
    assert plain.phash is None and plain.data == img.data  # hashing changes nothing stored
    assert 0 <= img.phash < 2 ** 64
    assert ih.hamming(img.phash, ih.phash(Image.open(io.BytesIO(img.data)))) <= 2
    assert ih.hamming(img.phash, ih.phash(scene(7, 400))) <= 2


def test_settings_are_checked():
    with pytest.raises(ValueError, match="need phash"):
        DownloadConfig(phash=False)
    with pytest.raises(ValueError, match="need phash"):
        DownloadConfig(phash=False, near_duplicates=False, eval_images="/x")
    DownloadConfig(phash=False, near_duplicates=False)
    with pytest.raises(ValueError, match="near_duplicate_distance"):
        DownloadConfig(near_duplicate_distance=40)


def test_eval_index_matches_by_distance_and_names_the_nearest():
    hashes = [0x0123456789ABCDEF, 0xFEDCBA9876543210]
    ev = ds.EvalImages(["b.jpg", "a.jpg"], hashes, max_distance=3)
    near = hashes[0] ^ 0b101  # 2 bits off b.jpg
    far = hashes[0] ^ 0b1111  # 4 bits off
    assert ev.matches([far, None, near, hashes[1]]) == [(2, "b.jpg", 2), (3, "a.jpg", 0)]
    assert ds.EvalImages([], [], 3).matches([near]) == []
