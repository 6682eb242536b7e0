"""2-process DDP on CPU through torchrun (gloo): disjoint data per rank, identical weights at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from training import sample_shards

ROOT = Path(__file__).resolve().parents[1]


def _config(path: Path, steps: int) -> Path:
    path.write_text(json.dumps({
        "model": {"embed_dim": 32,
                  "vision": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2},
                  "text": {"context_length": 16, "vocab_size": None, "width": 32, "layers": 1, "heads": 2}},
        "data": {"shuffle_buffer": 32, "workers": 1},
        "optim": {"steps": steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": 2},
        "run": {"checkpoint_every": 1000, "log_every": 2, "threads": 1},
        "tokenizer": {"vocab_size": 300},
    }))
    return path


@pytest.mark.slow
def test_two_process_ddp_gloo(tmp_path):
    data = tmp_path / "sample"
    # 2 shards x 3 row groups: 6 units dealt to 2 ranks; ~200 kept images per epoch, 16 per step
    sample_shards.generate(data, sample_shards.SampleConfig(seed=4, train_images=300, shards=2, row_group_rows=50))
    out = tmp_path / "run"
    steps = 12  # > one epoch per rank, so epochs roll over mid-run
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--config", str(_config(tmp_path / "c.json", steps)), "--data", str(data),
           "--output", str(out), "--quiet", "--no-eval", "--log-samples", "--cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # 2 cores under load
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # identical weights on both ranks (bitwise digest written by each rank)
    digests = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert digests[0]["step"] == digests[1]["step"] == steps
    assert digests[0]["weights_sha256"] == digests[1]["weights_sha256"]

    # each rank consumed steps x batch samples; within any epoch the ranks' samples are disjoint
    seen = {}
    for r in range(2):
        by_epoch = defaultdict(list)
        lines = (out / "samples" / f"rank-{r}.tsv").read_text().splitlines()
        assert len(lines) == steps * 16
        for line in lines:
            _step, epoch, uuid = line.split("\t")
            by_epoch[int(epoch)].append(uuid)
        for uuids in by_epoch.values():
            assert len(uuids) == len(set(uuids)), "a rank never repeats a sample within an epoch"
        seen[r] = by_epoch
    assert max(seen[0]) >= 1, "the run crossed an epoch boundary"
    for epoch in set(seen[0]) & set(seen[1]):
        assert not set(seen[0][epoch]) & set(seen[1][epoch]), f"ranks overlap in epoch {epoch}"

    # the checkpoint (rank 0) holds the same weights and both ranks' data positions
    ck = torch.load(out / "checkpoints" / f"step-{steps:08d}.pt", map_location="cpu", weights_only=True)
    assert sorted(ck["positions"]) == [0, 1] and ck["layout"] == {"world_size": 2, "workers": 1}
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == steps


def _init_gloo(rank: int, world: int, init_file: str):
    """A gloo group over a file:// store (no port to pick, so none another process can take);
    returns a weak reference to the group, dead once nothing holds it."""
    import faulthandler
    import weakref
    from datetime import timedelta

    import torch.distributed as dist

    faulthandler.enable()  # a rank killed by a signal prints where it was (pytest shows it on failure)
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback, whatever this host's name resolves to
    # a lost peer is an error with a traceback within minutes, not a 30-minute hang
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(minutes=5))
    return weakref.ref(dist.group.WORLD)


def _assert_released(group_ref) -> None:
    """The group is gone after teardown. A group something still holds keeps gloo's worker and
    socket-loop threads running into interpreter exit, whose teardown of them now and then aborts
    the rank after its work is done (SIGABRT, "terminate called without an active exception": the
    flake of issue 17 item 17)."""
    import gc

    gc.collect()
    assert group_ref() is None, "the process group outlived destroy_process_group"


def _loss_worker(rank: int, world: int, init_file: str, local_loss: bool, out_dir: str) -> None:
    import torch.distributed as dist

    from training.loss import ContrastiveLoss

    group = _init_gloo(rank, world, init_file)
    g = torch.Generator().manual_seed(0)
    img_all = torch.randn(world * 4, 8, generator=g)
    txt_all = torch.randn(world * 4, 8, generator=g)
    img = img_all[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    txt = txt_all[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    loss = ContrastiveLoss(local_loss=local_loss)(img, txt, torch.tensor(5.0))
    loss.backward()
    torch.save({"loss": loss.detach(), "gi": img.grad, "gt": txt.grad}, f"{out_dir}/r{rank}.pt")
    # both ranks leave the backward collectives before either tears gloo down: a rank that
    # destroys its group while the other still talks to it aborts ("terminate called ...")
    dist.barrier()
    dist.destroy_process_group()
    _assert_released(group)


@pytest.mark.parametrize("local_loss", [True, False])
def test_gathered_loss_gradients_match_single_process(tmp_path, local_loss):
    """Mean over ranks of the per-rank loss gradients == gradient of the one-process loss on the full batch."""
    import torch.multiprocessing as mp

    from training.loss import ContrastiveLoss

    world = 2
    mp.spawn(_loss_worker, args=(world, str(tmp_path / "init"), local_loss, str(tmp_path)), nprocs=world, join=True)
    res = [torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(world)]
    g = torch.Generator().manual_seed(0)
    img = torch.randn(world * 4, 8, generator=g).requires_grad_(True)
    txt = torch.randn(world * 4, 8, generator=g).requires_grad_(True)
    full = ContrastiveLoss()(img, txt, torch.tensor(5.0))
    full.backward()
    mean_loss = sum(r["loss"] for r in res) / world
    assert torch.allclose(mean_loss, full.detach(), atol=1e-5)
    # DDP averages gradients over ranks: each rank's local gradient / world is its share
    gi = torch.cat([r["gi"] for r in res]) / world
    gt = torch.cat([r["gt"] for r in res]) / world
    assert torch.allclose(gi, img.grad, atol=1e-5) and torch.allclose(gt, txt.grad, atol=1e-5)


def _ddp_teardown_worker(rank: int, world: int, init_file: str) -> None:
    from training.distributed import Dist, teardown  # first, as training.train imports it

    group = _init_gloo(rank, world, init_file)
    model = torch.nn.Linear(4, 2)
    ddp = torch.nn.parallel.DistributedDataParallel(model)  # imports torch.distributed.nn lazily
    ddp(torch.randn(3, 4)).sum().backward()
    del ddp  # before teardown, as training.train does (see training.distributed.teardown)
    teardown(Dist(rank, world, rank, torch.device("cpu")))
    _assert_released(group)


@pytest.mark.slow
def test_teardown_releases_the_process_group_after_ddp(tmp_path):
    """What training.train does at the end of a DDP run leaves no process group (and so no gloo
    thread or socket) behind for interpreter exit."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_teardown_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)
