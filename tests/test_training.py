"""Training module: tokenizer, sample shards, dataset split and online curation, model/loss, resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from curation.schemas import IMAGES
from training import sample_shards
from training.data import ShardDataset, curate_rows, load_curated, load_entry_probs, positions_from_batch
from training.tokenizer import Tokenizer, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training") / "sample"
    sample_shards.generate(root, sample_shards.SampleConfig(seed=3, train_images=320, shards=2, row_group_rows=40))
    return root


def micro_config(path: Path, steps: int = 6, workers: int = 2, batch: int = 16) -> Path:
    cfg = {
        "model": {"embed_dim": 32,
                  "vision": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2},
                  "text": {"context_length": 16, "vocab_size": None, "width": 32, "layers": 1, "heads": 2}},
        "data": {"shuffle_buffer": 64, "workers": workers},
        "optim": {"steps": steps, "batch_size": batch, "lr": 1e-3, "warmup_steps": 2},
        "run": {"checkpoint_every": 1000, "log_every": 2, "threads": 1},
        "tokenizer": {"vocab_size": 300},
    }
    path.write_text(json.dumps(cfg))
    return path


# --- sample shards ----------------------------------------------------------------------------


def test_sample_shards_follow_the_contracts(sample_root):
    t = pq.read_table(sample_root / "images")
    assert t.schema.equals(IMAGES)
    assert t.num_rows == 320 and len(set(t.column("uuid").to_pylist())) == 320
    meta = json.loads((sample_root / "concepts.json").read_text())
    assert len(meta["languages"]) >= 4
    scripts = {"en": "a", "ru": "к", "zh": "红", "ar": "ر", "hi": "ल"}
    texts_by_lang: dict[str, list[str]] = {}
    for texts in t.column("texts").to_pylist():
        assert texts, "every sample image has at least one matched text"
        for x in texts:
            assert x["entry_ids"], "every sample text matched metadata entries"
            texts_by_lang.setdefault(x["lang"], []).append(x["text"])
    for lang, ch in scripts.items():
        assert any(ch in s for s in texts_by_lang[lang]), lang
    probs = load_entry_probs(sample_root / "entry_probs")
    assert set(probs) == set(meta["languages"])
    for lang, p in probs.items():
        assert p.dtype == np.float32 and len(p) == len(meta["entries"][lang])
        assert ((p > 0) & (p <= 1)).all() and (p < 1).any()
    held = pq.read_table(sample_root / "heldout")
    assert held.num_rows == len(meta["languages"]) * len(meta["concepts"])
    assert not set(held.column("uuid").to_pylist()) & set(t.column("uuid").to_pylist())


def test_sample_shards_are_deterministic(tmp_path):
    cfg = sample_shards.SampleConfig(seed=5, train_images=30, shards=1)
    a = sample_shards.generate(tmp_path / "a", cfg)
    b = sample_shards.generate(tmp_path / "b", cfg)
    assert a["rows"] == b["rows"]
    ta, tb = (pq.read_table(p / "images") for p in (tmp_path / "a", tmp_path / "b"))
    assert ta.equals(tb)


# --- tokenizer --------------------------------------------------------------------------------


def test_tokenizer_round_trip_many_scripts(sample_root, tmp_path):
    texts = sample_shards.sample_texts(sample_root)
    tok = Tokenizer.from_hf(train_tokenizer(texts, vocab_size=400), context_length=32)
    tok.save(tmp_path / "tok.json")
    loaded = Tokenizer(tmp_path / "tok.json", context_length=32)
    samples = ["a photo of a red circle", "фото: синий квадрат", "一张黄色三角形的照片", "صورة دائرة حمراء",
               "नीला त्रिभुज की तस्वीर", "A Photo Of A Green Diamond"]
    for s in samples:
        ids = loaded.encode(s)
        assert ids.shape == (32,) and ids.dtype == torch.int64
        assert loaded.decode(ids) == loaded.normalize(s)
        assert torch.equal(ids, tok.encode(s))
    assert loaded.normalize("A Photo") == "a photo"
    # truncation keeps the end-of-text token last; padding fills the rest
    short = Tokenizer(tmp_path / "tok.json", context_length=5)
    ids = short.encode("a photo of a red circle on a grey background").tolist()
    assert len(ids) == 5 and ids[0] == short.bos_id and ids[-1] == short.eos_id
    assert short.encode("red").tolist()[-1] == short.pad_id
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "missing.json", 8)


def test_tokenizer_cli_trains_on_sample_captions(sample_root, tmp_path):
    from training import tokenizer as tokmod

    out = tmp_path / "t.json"
    tokmod.main(["--output", str(out), "--shards", str(sample_root), "--vocab-size", "300"])
    tok = Tokenizer(out, 16)
    assert tok.decode(tok.encode("红色圆形")) == "红色圆形"


# --- dataset: split, curation, positions --------------------------------------------------------------


def _epoch_items(sample_root, rank, world, workers, epoch=0, **kw):
    """Raw items of one epoch from a real DataLoader with `workers` worker processes."""
    ds = ShardDataset(sample_root / "images", entry_probs=load_entry_probs(sample_root / "entry_probs"),
                      seed=11, rank=rank, world_size=world, shuffle_buffer=16, decode=False,
                      start_epoch=epoch, max_epochs=1, **kw)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return list(loader)


@pytest.mark.parametrize("world,workers", [(2, 2), (3, 2)])
def test_split_is_disjoint_across_rank_and_worker(sample_root, world, workers):
    seen: dict[tuple, list[str]] = {}
    for rank in range(world):
        for item in _epoch_items(sample_root, rank, world, workers):
            seen.setdefault((rank, item["worker"]), []).append(item["uuid"])
    assert len(seen) == world * workers, "every (rank, worker) reads data"
    flat = [u for us in seen.values() for u in us]
    assert len(flat) == len(set(flat)), "no sample is read twice within an epoch"
    # the union is exactly what the epoch's curation keeps, independent of the partitioning
    t = pq.read_table(sample_root / "images", columns=["uuid", "texts"])
    uuids, texts = t.column("uuid").to_pylist(), t.column("texts").to_pylist()
    _, keep = curate_rows(uuids, texts, load_entry_probs(sample_root / "entry_probs"), 11, 0)
    assert set(flat) == {u for u, k in zip(uuids, keep, strict=True) if k}


def test_split_with_fewer_row_groups_than_workers(tmp_path):
    root = tmp_path / "s"
    sample_shards.generate(root, sample_shards.SampleConfig(seed=1, train_images=60, shards=1, row_group_rows=60))
    seen = []
    for rank in range(2):
        items = _epoch_items(root, rank, 2, 2)
        assert {i["worker"] for i in items} == {rank * 2, rank * 2 + 1}
        seen += [i["uuid"] for i in items]
    assert len(seen) == len(set(seen)) and len(seen) > 0


def _one_text_shard(path: Path, probs: np.ndarray, per_entry: int) -> None:
    rows = []
    for e in range(len(probs)):
        for k in range(per_entry):
            uuid = f"{e:04d}{k:04d}" + "0" * 24
            text = {"text": f"t{e}", "source": "alt", "page_url": None, "lid": "xx", "lid_prob": 1.0,
                    "lang": "xx", "entry_ids": [e]}
            rows.append({"uuid": uuid, "url": "u", "image": b"", "width": 1, "height": 1, "original_size": 0,
                         "sha256": "", "texts": [text]})
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGES), path, row_group_size=100)


def test_online_curation_frequencies_match_entry_probabilities(tmp_path):
    probs = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0], dtype=np.float32)
    per_entry, epochs = 40, 60
    _one_text_shard(tmp_path / "p.parquet", probs, per_entry)
    ds = ShardDataset(tmp_path / "p.parquet", entry_probs={"xx": probs}, seed=7, shuffle_buffer=50,
                      decode=False, max_epochs=epochs)
    kept = Counter()
    per_epoch_sets = {}
    for item in ds:
        kept[item["entry_ids"][0]] += 1
        per_epoch_sets.setdefault(item["epoch"], set()).add(item["uuid"])
    n = per_entry * epochs
    for e, p in enumerate(probs):
        freq = kept[e] / n
        sigma = np.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(freq - p) <= 5 * sigma + 1e-9, (e, p, freq)
    assert len(per_epoch_sets) == epochs
    assert len({frozenset(s) for s in per_epoch_sets.values()}) > epochs // 2, "each epoch draws a fresh sample"


def test_curation_picks_texts_uniformly_and_combines_entries():
    probs = {"a": np.array([0.5, 0.2], dtype=np.float32), "b": np.array([0.0], dtype=np.float32)}
    n = 20000
    uuids = [f"{i:032x}" for i in range(n)]
    texts = [[{"lang": "a", "entry_ids": [0, 1]}, {"lang": "b", "entry_ids": [0]}, {"lang": "zz", "entry_ids": [0]}]
             for _ in range(n)]
    picked, keep = curate_rows(uuids, texts, probs, seed=1, epoch=3)
    counts = np.bincount(picked, minlength=3) / n
    assert np.allclose(counts, 1 / 3, atol=0.02)
    first = picked == 0
    assert abs(keep[first].mean() - (1 - 0.5 * 0.8)) < 0.03  # 1 - prod(1 - p)
    assert not keep[~first].any(), "prob 0 and unknown languages are never kept"
    p2, k2 = curate_rows(uuids[::-1], texts, probs, seed=1, epoch=3)
    assert np.array_equal(p2[::-1], picked) and np.array_equal(k2[::-1], keep), "independent of order"


def test_offline_mode_reads_curated_texts(sample_root):
    curated = load_curated(sample_root / "curated")
    ds = ShardDataset(sample_root / "images", mode="offline", curated=curated, seed=0, decode=False, max_epochs=1)
    items = list(ds)
    assert {i["uuid"] for i in items} == set(curated)
    assert all(curated[i["uuid"]][0] == i["text"] for i in items)


def test_resume_position_skips_exactly(sample_root):
    probs = load_entry_probs(sample_root / "entry_probs")
    make = lambda **kw: ShardDataset(sample_root / "images", entry_probs=probs, seed=2, shuffle_buffer=32,  # noqa
                                     decode=False, max_epochs=3, **kw)
    full = [(i["epoch"], i["uuid"]) for i in make()]
    cut = 150
    batch = {"worker": torch.zeros(cut, dtype=torch.long),
             "epoch": torch.tensor([e for e, _ in full[:cut]]),
             "index": torch.tensor([sum(1 for e2, _ in full[:j] if e2 == e) for j, (e, _) in enumerate(full[:cut])])}
    pos = positions_from_batch(batch)
    rest = [(i["epoch"], i["uuid"]) for i in make(positions=pos)]
    assert rest == full[cut:]


def test_bad_image_bytes_are_counted_not_fatal(tmp_path):
    probs = np.array([1.0], dtype=np.float32)
    _one_text_shard(tmp_path / "bad.parquet", probs, 5)  # image bytes are empty: undecodable
    from training.transforms import ImageTransform

    ds = ShardDataset(tmp_path / "bad.parquet", entry_probs={"xx": probs}, transform=ImageTransform(16, False),
                      max_epochs=1)
    assert list(ds) == []
    assert ds.rejects["bad_image"] == 5


# --- model and loss -------------------------------------------------------------------------------


def test_model_shapes_checkpointing_and_weight_decay_groups():
    from training.config import OptimConfig
    from training.model import CLIP, ModelConfig, count_flops_per_sample
    from training.optim import build_optimizer

    cfg = ModelConfig.from_dict({"embed_dim": 16, "quick_gelu": False,
                                 "vision": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 2, "heads": 2},
                                 "text": {"context_length": 8, "vocab_size": 50, "width": 16, "layers": 2,
                                          "heads": 2}})
    m = CLIP(cfg, init_seed=1)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), CLIP(cfg, init_seed=1).state_dict().values(), strict=True))
    img = torch.randn(3, 3, 16, 16)
    tok = torch.tensor([[1, 5, 2, 0, 0, 0, 0, 0], [1, 6, 7, 2, 0, 0, 0, 0], [1, 9, 9, 9, 9, 9, 9, 2]])
    i, t, s = m(img, tok)
    assert i.shape == t.shape == (3, 16) and torch.allclose(i.norm(dim=-1), torch.ones(3))
    # padding after the end token does not change a text's embedding (causal mask + pooling)
    t2 = m.encode_text(tok[:1, :4])
    assert torch.allclose(t[:1], t2, atol=1e-5)
    (i.sum() + t.sum() + s).backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)
    i, t, s = m(img, tok)
    (i.sum() + t.sum() + s).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(g1, m.parameters(), strict=True))
    opt = build_optimizer(m, OptimConfig(weight_decay=0.2))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    names = {n for n, p in m.named_parameters() if id(p) in decayed}
    assert "logit_scale" not in names and "visual.class_embedding" not in names
    assert not any(n.endswith(".bias") or "ln_" in n for n in names)
    assert "visual.transformer.blocks.0.qkv.weight" in names
    assert count_flops_per_sample(cfg)["train"] == 3 * count_flops_per_sample(cfg)["fwd"] > 0


def _decay_groups(model, optim) -> tuple[set[str], set[str]]:
    """(decayed, undecayed) parameter names of the optimiser build_optimizer makes for `model`."""
    from training.optim import build_optimizer

    opt = build_optimizer(model, optim)
    by_id = {id(p): n for n, p in model.named_parameters()}
    decayed, undecayed = ({by_id[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [optim.weight_decay, 0.0]
    assert all(g["betas"] == tuple(optim.betas) for g in opt.param_groups)
    return decayed, undecayed


def test_worldwide_h14_trains_with_the_reference_optimiser_settings():
    """vit_h14.json: MetaCLIP's h14_worldwide (AdamW beta2 0.95, weight decay 0.1, no clipping), and
    decay on every parameter of >= 2 dims, the token and positional embeddings included."""
    from training.config import OptimConfig, TrainConfig
    from training.model import CLIP, EMBEDDING_TABLES, ModelConfig

    configs = Path(__file__).resolve().parents[1] / "training" / "configs"
    h14 = TrainConfig.from_json(configs / "vit_h14.json")
    o = h14.optim
    assert (tuple(o.betas), o.weight_decay, o.lr, o.warmup_steps, o.eps) == ((0.9, 0.95), 0.1, 4e-4, 2000, 1e-6)
    assert o.grad_clip <= 0, "the reference does not clip gradients (norm_gradient_clip None)"
    assert o.decay_embeddings and h14.run.grad_checkpointing and h14.model.quick_gelu
    # the same rule for every worldwide config, and by default
    for path in configs.glob("*.json"):
        assert TrainConfig.from_json(path).optim.decay_embeddings, path.name
    assert OptimConfig().decay_embeddings

    # the groups, on a small model of the same structure (the H/14 itself has 1.9B parameters)
    small = ModelConfig.from_dict({**h14.model.to_dict(), "embed_dim": 16,
                                   "vision": {"image_size": 28, "patch_size": 14, "width": 16, "layers": 2, "heads": 2},
                                   "text": {"context_length": 8, "vocab_size": 50, "width": 16, "layers": 2,
                                            "heads": 2}})
    m = CLIP(small)
    params = dict(m.named_parameters())
    decayed, undecayed = _decay_groups(m, o)
    assert decayed == {n for n, p in params.items() if p.ndim >= 2}
    assert set(EMBEDDING_TABLES) <= decayed
    assert {"visual.patch_embed.weight", "visual.proj", "text.text_projection"} <= decayed
    assert undecayed == {n for n, p in params.items() if p.ndim < 2}
    assert {"logit_scale", "visual.class_embedding", "text.ln_final.weight", "visual.ln_pre.bias"} <= undecayed

    # --no-decay-embeddings: the embedding tables join the gains and biases
    decayed2, undecayed2 = _decay_groups(m, OptimConfig(weight_decay=0.1, decay_embeddings=False))
    assert decayed2 == decayed - set(EMBEDDING_TABLES) and undecayed2 == undecayed | set(EMBEDDING_TABLES)


def test_contrastive_loss_single_process():
    from training.loss import ContrastiveLoss

    f = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    good = ContrastiveLoss()(f, f, torch.tensor(20.0))
    bad = ContrastiveLoss()(f, f.roll(1, 0), torch.tensor(20.0))
    assert good < bad


def test_lr_schedule_warmup_then_cosine():
    from training.optim import WarmupCosine

    s = WarmupCosine(10, 100, 0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(100) == pytest.approx(0.1)
    assert all(s(k) >= s(k + 1) for k in range(10, 100))


# --- training: exact resume ----------------------------------------------------------------------------


def _final_state(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"step-{step:08d}.pt", map_location="cpu", weights_only=True)


def test_stop_and_resume_equals_uninterrupted_run(sample_root, tmp_path):
    from training.train import train

    cfg = micro_config(tmp_path / "micro.json", steps=6, workers=2)
    common = ["--config", str(cfg), "--data", str(sample_root), "--quiet", "--no-eval"]
    full = train(common + ["--output", str(tmp_path / "full")])
    assert full["finished"] and full["steps"] == 6
    part = train(common + ["--output", str(tmp_path / "resumed"), "--stop-after", "3"])
    assert not part["finished"] and part["steps"] == 3
    resumed = train(common + ["--output", str(tmp_path / "resumed")])
    assert resumed["finished"]
    a, b = _final_state(tmp_path / "full", 6), _final_state(tmp_path / "resumed", 6)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["positions"] == b["positions"]
    assert a["scheduler"] == b["scheduler"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[x], sb[x]) for x in sa)
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6] and all(np.isfinite(r["loss"]) for r in lines)
    # a checkpoint from another layout is refused rather than resumed inexactly
    with pytest.raises(RuntimeError, match="same world size and workers"):
        train(common + ["--output", str(tmp_path / "resumed"), "--workers", "1", "--steps", "8"])


def test_evaluate_reports_every_language(sample_root, tmp_path):
    from training.evaluate import evaluate, retrieval_recall
    from training.model import CLIP, ModelConfig

    perfect = torch.eye(5)
    r = retrieval_recall(perfect, perfect)
    assert r["i2t_r1"] == r["t2i_r1"] == 1.0 and r["chance_r1"] == 0.2
    texts = sample_shards.sample_texts(sample_root)
    tok = Tokenizer.from_hf(train_tokenizer(texts, 300), 16)
    cfg = ModelConfig.from_dict({"embed_dim": 16,
                                 "vision": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2},
                                 "text": {"context_length": 16, "vocab_size": tok.vocab_size, "width": 16,
                                          "layers": 1, "heads": 2}})
    concepts = json.loads((sample_root / "concepts.json").read_text())
    res = evaluate(CLIP(cfg), tok, sample_root / "heldout", 16, torch.device("cpu"), concepts)
    assert set(res["retrieval"]) == set(concepts["languages"]) == set(res["zero_shot"])
    for v in res["retrieval"].values():
        assert v["n"] == len(concepts["concepts"]) and 0 <= v["i2t_r1"] <= v["i2t_r5"] <= v["i2t_r10"] <= 1


def test_offline_training_loss_falls_and_reports(sample_root, tmp_path):
    from training.train import train

    cfg = micro_config(tmp_path / "micro.json", steps=30, workers=0, batch=32)
    rep = train(["--config", str(cfg), "--data", str(sample_root), "--output", str(tmp_path / "off"), "--quiet",
                 "--mode", "offline", "--lr", "3e-3", "--warmup-steps", "3"])
    assert rep["finished"] and rep["last_loss"] < rep["first_loss"] - 0.3
    d = rep["data"]
    assert d["images_out"] == 30 * 32
    assert d["images_in"] == d["images_out"] + sum(d["images_rejected"].values())
    assert d["images_rejected"]["not_curated"] > 0 and d["images_rejected"]["not_sampled"] == 0
    meta = json.loads((sample_root / "concepts.json").read_text())
    assert set(rep["eval"]["retrieval"]) == set(meta["languages"])
    saved = json.loads((tmp_path / "off" / "report.json").read_text())
    assert saved["steps"] == 30 and (tmp_path / "off" / "eval.json").exists()


def test_online_mode_without_entry_probs_is_a_clear_error(sample_root, tmp_path, capsys):
    from training.train import main, train

    cfg = micro_config(tmp_path / "micro.json", steps=1, workers=0)
    args = ["--config", str(cfg), "--shards", str(sample_root / "images"), "--output", str(tmp_path / "x"), "--quiet"]
    with pytest.raises(ValueError, match="entry probabilities"):
        train(args)
    capsys.readouterr()
    assert main(args) == 2  # the command line: one line on stderr, exit 2, as the jobs do
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train: error: online curation needs entry probabilities")


def test_shards_without_a_source_train_online_with_a_warning(sample_root, tmp_path, capsys):
    """The sample shards say they hold matched texts; a copy without the manifest (an older
    download, or shards of one's own) still trains online, with a warning."""
    from training.train import train

    cfg = micro_config(tmp_path / "micro.json", steps=1, workers=0)
    common = ["--config", str(cfg), "--entry-probs", str(sample_root / "entry_probs"), "--quiet", "--no-eval"]
    assert json.loads((sample_root / "images" / "_MANIFEST.json").read_text())["source"] == "matched"
    assert train(common + ["--shards", str(sample_root / "images"), "--output", str(tmp_path / "a")])["finished"]
    assert "warning" not in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in (sample_root / "images").glob("*.parquet"):
        (bare / p.name).write_bytes(p.read_bytes())
    assert train(common + ["--shards", str(bare), "--output", str(tmp_path / "b")])["finished"]
    err = capsys.readouterr().err.splitlines()
    assert [x for x in err if x.startswith("train: warning: ")] == [x for x in err if "warning" in x]
    assert len([x for x in err if x.startswith("train: warning: ") and str(bare) in x]) == 1


def test_resume_under_another_decay_rule_is_refused(sample_root, tmp_path):
    """The optimiser state is grouped by the decay rule; resuming under the other rule is an error
    that names the flag, not an obscure load failure or state on the wrong parameters."""
    from training.train import train

    cfg = micro_config(tmp_path / "micro.json", steps=2, workers=0)
    common = ["--config", str(cfg), "--data", str(sample_root), "--output", str(tmp_path / "r"), "--quiet",
              "--no-eval"]
    assert train(common + ["--stop-after", "1"])["steps"] == 1
    with pytest.raises(RuntimeError, match="decay_embeddings=True; resume it with --decay-embeddings"):
        train(common + ["--no-decay-embeddings"])
    assert train(common)["finished"]


def test_training_reads_shards_from_s3(sample_root, tmp_path, s3_server, s3_bucket):
    """The same run from an s3:// root (real S3 API on loopback) reads the same data as from disk."""
    import boto3

    from training.train import train

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for p in sample_root.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), s3_bucket, f"sample/{p.relative_to(sample_root).as_posix()}")
    uri = f"s3://{s3_bucket}/sample"
    probs_s3 = load_entry_probs(f"{uri}/entry_probs")
    probs_local = load_entry_probs(sample_root / "entry_probs")
    assert probs_s3.keys() == probs_local.keys() and all(np.array_equal(probs_s3[k], probs_local[k]) for k in probs_s3)
    remote = [i["uuid"] for i in ShardDataset(f"{uri}/images", entry_probs=probs_s3, seed=1, decode=False, max_epochs=1)]
    local = [i["uuid"] for i in ShardDataset(sample_root / "images", entry_probs=probs_local, seed=1, decode=False,
                                             max_epochs=1)]
    assert remote == local and remote
    cfg = micro_config(tmp_path / "micro.json", steps=3, workers=0)
    rep = train(["--config", str(cfg), "--data", uri, "--output", str(tmp_path / "s3run"), "--quiet"])
    assert rep["finished"] and set(rep["eval"]["retrieval"]) == set(probs_local)
    assert "zero_shot" in rep["eval"]


# --- shard listing and the command line ------------------------------------------------------------


def _dataset_dir(root: Path) -> list[str]:
    """A download-style images/ directory: two shards, one nested, and the side files readers skip."""
    names = ["shard-00000.parquet", "more/shard-00001.parquet", "_failed/shard-00000.parquet",
             "_dedup/duplicates.parquet", "_SUCCESS", ".shard-00002.parquet.tmp", "notes.txt"]
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")
    return names


def test_shard_listing_skips_side_files_locally_and_on_s3(tmp_path, s3_server, s3_bucket):
    import boto3

    from curation import storage

    images = tmp_path / "images"
    names = _dataset_dir(images)
    want = [str(images / "more/shard-00001.parquet"), str(images / "shard-00000.parquet")]
    assert storage.expand(images, suffix=".parquet") == want
    assert storage.expand(str(images / "*.parquet"), suffix=".parquet") == want[1:]
    assert storage.expand(images / "notes.txt", suffix=".parquet") == [str(images / "notes.txt")], "named: kept"
    with pytest.raises(FileNotFoundError):
        storage.expand([images, tmp_path / "typo"], suffix=".parquet")
    with pytest.raises(FileNotFoundError, match="no files ending in .parquet"):
        storage.expand(str(tmp_path / "images/*.npy"), suffix=".parquet")
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for n in names:
        s3.put_object(Bucket=s3_bucket, Key=f"run/images/{n}", Body=b"x")
    remote = [f"s3://{s3_bucket}/run/images/more/shard-00001.parquet", f"s3://{s3_bucket}/run/images/shard-00000.parquet"]
    assert storage.expand(f"s3://{s3_bucket}/run/images", suffix=".parquet") == remote
    assert storage.expand(f"s3a://{s3_bucket}/run/images/", suffix=".parquet") == remote


def test_training_cli_layers_defaults_file_set_and_flags(tmp_path):
    from training.config import OptimConfig, TrainConfig
    from training.train import parse_args

    cfg_file = micro_config(tmp_path / "micro.json", steps=7, workers=1)
    _, cfg = parse_args(["--output", "o"])
    assert cfg == TrainConfig() and cfg.optim.steps == OptimConfig().steps
    _, cfg = parse_args(["--output", "o", "--config", str(cfg_file)])
    assert (cfg.optim.steps, cfg.data.workers, cfg.model.embed_dim, cfg.run.evaluate) == (7, 1, 32, True)
    _, cfg = parse_args(["--output", "o", "--config", str(cfg_file), "--set", "optim.steps=9", "--set", "lr=0.5",
                         "--steps", "11", "--no-eval", "--no-local-loss", "--data", "d", "--tokenizer", "t.json",
                         "--set", "data.crop_scale=0.5,1"])
    assert (cfg.optim.steps, cfg.optim.lr, cfg.run.evaluate, cfg.run.local_loss) == (11, 0.5, False, False)
    assert (cfg.data.root, cfg.tokenizer.path, cfg.data.crop_scale) == ("d", "t.json", (0.5, 1.0))
    assert cfg.optim.warmup_steps == 2, "the file's value stays where nothing overrides it"
    for bad in (["--set", "optim.nope=1"], ["--set", "nope=1"], ["--mode", "sideways"], ["--steps", "x"]):
        with pytest.raises(SystemExit):
            parse_args(["--output", "o", "--config", str(cfg_file), *bad])
    typo = json.loads(cfg_file.read_text())
    typo["optim"]["step"] = 3
    (tmp_path / "typo.json").write_text(json.dumps(typo))
    with pytest.raises(ValueError, match="step"):
        TrainConfig.from_json(tmp_path / "typo.json")
