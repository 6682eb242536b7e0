"""Contrastive (InfoNCE) loss with a learnable temperature, gathered across ranks with gradients.

Local-loss variant (open_clip's local_loss): each rank scores only its own b features against
all W*b gathered ones, so the logits take b x W*b memory (linear in the per-rank batch) instead
of (W*b)^2, and the positives sit at offset rank*b. Features are gathered by GatherWithGrad,
whose backward returns each rank the summed gradient of its slice; DDP then averages parameter
gradients over ranks, which together equal the gradient of the global mean loss.

GatherWithGrad does what torch.distributed.nn.functional.all_gather does (deprecated in torch
2.13), without that module: its functions take `group=group.WORLD` as a default argument,
evaluated at its first import, so importing it after init_process_group (as a lazy import here
did) pins the default process group for the life of the interpreter. destroy_process_group then
cannot free it: gloo's worker and socket-loop threads are still running when the interpreter
exits, and their teardown there races with the exit (a rank aborts now and then, "terminate
called without an active exception", SIGABRT, after its work is done). training.distributed
imports the module before any group exists, for DistributedDataParallel, which imports it lazily.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


class GatherWithGrad(torch.autograd.Function):
    """Concatenation of x (b x ... on every rank) over the ranks along dim 0; backward gives each
    rank the sum over ranks of the gradient of its own slice (a reduce-scatter: one code path for
    gloo, which the CPU tests run, and NCCL)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty((dist.get_world_size() * x.shape[0], *x.shape[1:]))
        dist.all_gather_single(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        mine = grad.new_empty((grad.shape[0] // dist.get_world_size(), *grad.shape[1:]))
        dist.reduce_scatter_single(mine, grad.contiguous())
        return mine


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every rank along dim 0, keeping the autograd graph."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return GatherWithGrad.apply(x)


class ContrastiveLoss(torch.nn.Module):
    def __init__(self, local_loss: bool = True):
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        img = image_features.float()
        txt = text_features.float()
        b = img.shape[0]
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not distributed:
            logits = logit_scale * img @ txt.t()
            labels = torch.arange(b, device=img.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        all_img = gather_with_grad(img)
        all_txt = gather_with_grad(txt)
        rank = dist.get_rank()
        if self.local_loss:
            labels = torch.arange(b, device=img.device) + rank * b
            li = logit_scale * img @ all_txt.t()  # b x W*b
            lt = logit_scale * txt @ all_img.t()
            return (F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2
        # global variant: every rank computes the full W*b x W*b matrix (memory quadratic)
        logits = logit_scale * all_img @ all_txt.t()
        labels = torch.arange(all_img.shape[0], device=img.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
