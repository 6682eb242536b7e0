"""Contrastive (InfoNCE) loss with a learnable temperature, gathered across ranks with gradients.

Local-loss variant (open_clip's local_loss): each rank scores only its own b features against
all W*b gathered ones, so the logits take b x W*b memory (linear in the per-rank batch) instead
of (W*b)^2, and the positives sit at offset rank*b. Features are gathered with
torch.distributed.nn.functional.all_gather, whose backward returns each rank the summed
gradient of its slice; DDP then averages parameter gradients over ranks, which together equal
the gradient of the global mean loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every rank along dim 0, keeping the autograd graph."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


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
