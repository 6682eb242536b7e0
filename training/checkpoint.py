"""Checkpoints that resume a run exactly: <output>/checkpoints/step-XXXXXXXX.pt.

Stopping at step k and resuming must reach the same weights at step n as one uninterrupted
run, so a checkpoint holds more than the weights: the optimiser and scheduler state, the data
position of every (rank, DataLoader worker) stream and every rank's RNG state. Positions and RNG
states are gathered from all ranks (a collective) and rank 0 writes the file through a
temporary name, so a reader never sees a half-written checkpoint. The data layout (world size,
workers) is recorded and a resume under another layout is refused: the positions would name
streams that no longer exist.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from curation.storage import atomic_local_path
from training.config import TrainConfig
from training.distributed import Dist, all_gather_object


def checkpoint_paths(out: Path) -> list[Path]:
    return sorted((Path(out) / "checkpoints").glob("step-*.pt"))


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_local_path(path) as tmp:
        torch.save(state, tmp)


def rng_state(d: Dist) -> dict:
    st = {"cpu": torch.get_rng_state()}
    if d.device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(d.device)
    return st


def set_rng_state(st: dict, d: Dist) -> None:
    torch.set_rng_state(st["cpu"])
    if d.device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], d.device)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the state dict (DDP replicas must agree bit for bit)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Checkpointer:
    """Saves and restores the state of one run under <output>/checkpoints."""

    def __init__(self, out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 cfg: TrainConfig, d: Dist):
        self.out, self.model, self.optimizer, self.scheduler, self.cfg, self.d = \
            Path(out), model, optimizer, scheduler, cfg, d
        self.layout = {"world_size": d.world_size, "workers": cfg.data.workers}

    def resume(self) -> tuple[int, dict[int, tuple[int, int]]]:
        """(step, data positions) of the newest checkpoint, its state loaded; (0, {}) when there is none."""
        ckpts = checkpoint_paths(self.out)
        if not ckpts:
            return 0, {}
        ck = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        if ck["layout"] != self.layout:
            raise RuntimeError(f"checkpoint {ckpts[-1]} was written with {ck['layout']}; exact resume needs the same "
                               f"world size and workers (now {self.d.world_size}, {self.cfg.data.workers})")
        # the optimiser state is matched to parameters by position within each decay group, so a
        # checkpoint grouped by another rule would load onto the wrong parameters or fail obscurely;
        # checkpoints from before optim.decay_embeddings existed exempted the embedding tables
        saved_rule = json.loads(ck.get("config") or "{}").get("optim", {}).get("decay_embeddings", False)
        if saved_rule != self.cfg.optim.decay_embeddings:
            flag = "--decay-embeddings" if saved_rule else "--no-decay-embeddings"
            raise RuntimeError(f"checkpoint {ckpts[-1]} was written with optim.decay_embeddings={saved_rule}; "
                               f"resume it with {flag} (its optimiser state is grouped that way)")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"][self.d.rank], self.d)
        if self.d.main:
            print(f"resumed from {ckpts[-1]} at step {ck['step']}", flush=True)
        return int(ck["step"]), {int(k): tuple(v) for k, v in ck["positions"].items()}

    def state(self, step: int, positions: dict[int, tuple[int, int]]) -> dict:
        """The checkpoint of this step; a collective (every rank's positions and RNG state)."""
        all_pos: dict[int, tuple[int, int]] = {}
        for p in all_gather_object(positions, self.d):
            all_pos.update(p)
        rngs = all_gather_object(rng_state(self.d), self.d)
        return {"step": step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "positions": {int(k): list(v) for k, v in all_pos.items()},
                "rng": rngs, "layout": self.layout, "model_config": self.cfg.model.to_dict(),
                "config": json.dumps(self.cfg.to_dict())}

    def save(self, step: int, positions: dict[int, tuple[int, int]]) -> None:
        """Every rank calls this; rank 0 writes step-<step>.pt and drops all but the newest keep_checkpoints."""
        st = self.state(step, positions)
        if self.d.main:
            save_checkpoint(self.out / "checkpoints" / f"step-{step:08d}.pt", st)
            for old in checkpoint_paths(self.out)[:-max(1, self.cfg.run.keep_checkpoints)]:
                old.unlink(missing_ok=True)
        self.d.barrier()
