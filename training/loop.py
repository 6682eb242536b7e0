"""The step loop of a run: batches in; optimiser steps, metrics records and checkpoints out.

The data stream never ends (each DataLoader worker rolls over into the next epoch by itself),
so the loop counts optimiser steps, not epochs: every DDP rank takes the same number of steps
whatever its share of an epoch, and a checkpoint's (step, per-worker position) pair resumes
mid-epoch exactly. Step losses stay on the device and are averaged once per log window, so a
step costs no host sync on GPUs; the window mean is averaged over ranks for the record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TextIO

import torch

from training.config import OptimConfig, RunConfig
from training.data import REJECT_REASONS, positions_from_batch
from training.distributed import Dist, all_reduce_sum


@dataclass
class Tally:
    """What a loop consumed, for the run's report."""

    step: int
    first_loss: float | None = None  # mean loss of the first and the last log window
    last_loss: float | None = None
    images: int = 0
    dropped: torch.Tensor = field(default_factory=lambda: torch.zeros(len(REJECT_REASONS), dtype=torch.long))


@dataclass
class Loop:
    model: torch.nn.Module  # the CLIP module: its parameters and logit scale
    fwd: torch.nn.Module  # what runs the forward pass: the model or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: torch.nn.Module
    d: Dist
    optim: OptimConfig
    run: RunConfig
    autocast: Callable[[], AbstractContextManager]
    train_flops_per_sample: float
    checkpoint: Callable[[int, dict], None]  # (step, positions); a collective, every rank calls it
    metrics: TextIO | None = None  # rank 0: metrics.jsonl
    progress: object | None = None  # rank 0: a tqdm bar
    sample_log: TextIO | None = None  # (step, epoch, uuid) of every consumed sample

    def step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch: (loss, grad norm), both left on the device."""
        images = batch["image"].to(self.d.device, non_blocking=True)
        texts = batch["text"].to(self.d.device, non_blocking=True)
        with self.autocast():
            img_f, txt_f, scale = self.fwd(images, texts)
        loss = self.loss_fn(img_f, txt_f, scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.optim.grad_clip if self.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), grad_norm

    def train(self, batches: Iterator[dict], step: int, stop_at: int,
              positions: dict[int, tuple[int, int]]) -> Tally:
        """Steps step+1 .. stop_at; `positions` ({worker: (epoch, next index)}) is updated in place."""
        tally = Tally(step)
        window: list[torch.Tensor] = []
        t_window, n_window = time.time(), 0
        self.model.train()
        while tally.step < stop_at:
            batch = next(batches)
            loss, grad_norm = self.step(batch)
            tally.step += 1
            if self.sample_log is not None:
                self.sample_log.writelines(f"{tally.step}\t{e}\t{u}\n"
                                           for e, u in zip(batch["epoch"].tolist(), batch["uuid"], strict=True))
            for w, pos in positions_from_batch(batch).items():
                positions[w] = max(positions.get(w, pos), pos)
            n = batch["image"].shape[0]
            n_window += n
            tally.images += n
            tally.dropped += batch["dropped"].sum(0)
            window.append(loss)
            if tally.step % self.run.log_every == 0 or tally.step == stop_at:
                mean = all_reduce_sum(torch.stack(window).float().mean().reshape(1), self.d)
                lv = float(mean) / self.d.world_size
                tally.last_loss = lv
                if tally.first_loss is None:
                    tally.first_loss = lv
                sps = n_window * self.d.world_size / max(time.time() - t_window, 1e-9)
                self.record(tally.step, lv, float(grad_norm), sps, positions)
                window, t_window, n_window = [], time.time(), 0
            if self.progress is not None:
                self.progress.update(1)
            if tally.step % self.run.checkpoint_every == 0 or tally.step == stop_at:
                self.checkpoint(tally.step, positions)
        return tally

    def record(self, step: int, loss: float, grad_norm: float, sps: float,
               positions: dict[int, tuple[int, int]]) -> None:
        """One metrics.jsonl record (rank 0) and the progress bar's figures."""
        if not self.d.main:
            return
        rec = {"step": step, "loss": round(loss, 5), "lr": self.scheduler.get_last_lr()[0],
               "logit_scale": round(float(self.model.logit_scale.detach().exp()), 4),
               "grad_norm": round(grad_norm, 4), "samples_per_s": round(sps, 1),
               "epoch": max(e for e, _ in positions.values()),
               "achieved_tflops": round(sps * self.train_flops_per_sample / 1e12, 4)}
        if self.metrics is not None:
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{loss:.3f}", lr=f"{rec['lr']:.2e}", sps=f"{sps:.0f}")
