"""AdamW with CLIP's parameter groups and the warmup + cosine learning-rate schedule.

Weight decay applies to every parameter of 2 or more dims, the embedding tables included, and
never to gains, biases or the logit scale (training.model.no_weight_decay): the rule of MetaCLIP's
training code, whose worldwide H/14 the vit_h14 config reproduces; decaying the temperature or the
LayerNorm gains hurts. `optim.decay_embeddings = false` also exempts the token and positional
embeddings. The schedule is a picklable object rather than a lambda so the
scheduler's state_dict round-trips through a checkpoint and a resumed run continues the curve.
"""

from __future__ import annotations

import math

import torch

from training.config import OptimConfig
from training.model import no_weight_decay


def build_optimizer(model: torch.nn.Module, o: OptimConfig, fused: bool = False) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if no_weight_decay(name, p, o.decay_embeddings) else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, **kw)


class WarmupCosine:
    """lr multiplier: linear warmup from 0, then cosine to min_lr_ratio at the last step (picklable)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def build_scheduler(optimizer: torch.optim.Optimizer, o: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(o.warmup_steps, o.steps, o.min_lr_ratio))
