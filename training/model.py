"""CLIP: a ViT image tower and a causal transformer text tower, built from a JSON config.

Shapes follow OpenAI CLIP / open_clip (pre-LN blocks, class token, ln_post + projection; text
pooled at the last token, causal mask). The worldwide configs (training/configs/*.json) use
QuickGELU and the XLM-V vocabulary size as MetaCLIP 2 does. Attention runs through
scaled_dot_product_attention (flash / memory-efficient kernels on CUDA); gradient
checkpointing recomputes each block in backward.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class VisionConfig:
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0


@dataclass
class TextConfig:
    context_length: int = 77
    vocab_size: int | None = 901629  # None: take it from the tokenizer
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0


@dataclass
class ModelConfig:
    embed_dim: int = 512
    quick_gelu: bool = True
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        v = VisionConfig(**d.pop("vision", {}))
        t = TextConfig(**d.pop("text", {}))
        return cls(vision=v, text=t, **d)

    def to_dict(self) -> dict:
        return asdict(self)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LN transformer block (attention + MLP), batch-first."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), QuickGELU() if quick_gelu else nn.GELU(),
                                 nn.Linear(hidden, width))

    def attention(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, w))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_ratio, quick_gelu):
        super().__init__()
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)])
        self.grad_checkpointing = False

    def forward(self, x, causal: bool = False):
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, causal, use_reentrant=False)
            else:
                x = blk(x, causal)
        return x


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        self.cfg = cfg
        w = cfg.width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(n + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # B, N, W
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool, pad_id: int = 0):
        super().__init__()
        if not cfg.vocab_size:
            raise ValueError("text.vocab_size is not set (take it from the tokenizer before building the model)")
        self.cfg, self.pad_id = cfg, pad_id
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.zeros(cfg.width, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]].to(
            self.token_embedding.weight.dtype)
        x = self.ln_final(self.transformer(x, causal=True))
        # pool at the last non-pad token (the </s> of a right-padded sequence)
        last = ((tokens != self.pad_id).long().cumsum(1).argmax(1))
        return x[torch.arange(x.shape[0], device=x.device), last] @ self.text_projection


class CLIP(nn.Module):
    def __init__(self, cfg: ModelConfig, pad_id: int = 0, init_seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTower(cfg.vision, cfg.embed_dim, cfg.quick_gelu)
        self.text = TextTower(cfg.text, cfg.embed_dim, cfg.quick_gelu, pad_id)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.reset_parameters(init_seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """CLIP's initialisation, drawn from an explicit generator (no global RNG)."""
        g = torch.Generator().manual_seed(int(seed))

        def normal_(p, std):
            p.copy_(torch.randn(p.shape, generator=g) * std)

        for tower, width, layers in ((self.visual, self.cfg.vision.width, self.cfg.vision.layers),
                                     (self.text, self.cfg.text.width, self.cfg.text.layers)):
            proj_std = width ** -0.5 * (2 * layers) ** -0.5
            for blk in tower.transformer.blocks:
                normal_(blk.qkv.weight, width ** -0.5)
                normal_(blk.out_proj.weight, proj_std)
                normal_(blk.mlp[0].weight, (2 * width) ** -0.5)
                normal_(blk.mlp[2].weight, proj_std)
                for m in (blk.qkv, blk.out_proj, blk.mlp[0], blk.mlp[2]):
                    m.bias.zero_()
        v = self.visual
        normal_(v.patch_embed.weight, (3 * self.cfg.vision.patch_size ** 2) ** -0.5)
        normal_(v.class_embedding, self.cfg.vision.width ** -0.5)
        normal_(v.positional_embedding, self.cfg.vision.width ** -0.5)
        normal_(v.proj, self.cfg.vision.width ** -0.5)
        t = self.text
        normal_(t.token_embedding.weight, 0.02)
        normal_(t.positional_embedding, 0.01)
        normal_(t.text_projection, self.cfg.text.width ** -0.5)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.visual.transformer.grad_checkpointing = enabled
        self.text.transformer.grad_checkpointing = enabled

    def encode_image(self, images, normalize: bool = True):
        f = self.visual(images)
        return F.normalize(f, dim=-1) if normalize else f

    def encode_text(self, tokens, normalize: bool = True):
        f = self.text(tokens)
        return F.normalize(f, dim=-1) if normalize else f

    def forward(self, images, tokens):
        return (self.encode_image(images), self.encode_text(tokens),
                self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp())


# the embedding tables: the token embedding and both towers' positional embeddings (the class
# embedding is a vector, excluded with the gains and biases)
EMBEDDING_TABLES = ("text.token_embedding.weight", "text.positional_embedding", "visual.positional_embedding")


def no_weight_decay(name: str, p: torch.nn.Parameter, decay_embeddings: bool = True) -> bool:
    """Whether AdamW leaves parameter `name` undecayed.

    Gains, biases and the temperature (every parameter with fewer than 2 dims: LayerNorm weights
    and biases, linear biases, the class embedding, logit_scale) are never decayed. Everything
    else is, including the embedding tables, as MetaCLIP / open_clip's training does (its rule
    excludes by ndim < 2 and by name: bn, ln, bias, norm, logit_scale, which in this model are
    all 1-d); decay_embeddings=False also excludes the embedding tables.
    """
    if p.ndim < 2 or name.endswith("logit_scale"):
        return True
    return not decay_embeddings and name.removeprefix("module.") in EMBEDDING_TABLES


def count_flops_per_sample(cfg: ModelConfig) -> dict:
    """Analytic forward FLOPs (multiply-add = 2 FLOPs) per image-text pair; training = 3x forward.

    Counts matmuls only (patch embed, qkv/out projections, attention scores and values, MLP,
    projections); norms, softmax and the contrastive logits are ignored (< 1%).
    """

    def tower(tokens, width, layers, mlp_ratio):
        per_layer = 2 * tokens * width * (3 * width + width + 2 * int(width * mlp_ratio))
        per_layer += 2 * 2 * tokens * tokens * width
        return layers * per_layer

    v, t = cfg.vision, cfg.text
    n = (v.image_size // v.patch_size) ** 2
    img = 2 * n * (3 * v.patch_size ** 2) * v.width + tower(n + 1, v.width, v.layers, v.mlp_ratio)
    img += 2 * v.width * cfg.embed_dim
    txt = tower(t.context_length, t.width, t.layers, t.mlp_ratio) + 2 * t.width * cfg.embed_dim
    fwd = img + txt
    return {"image_fwd": img, "text_fwd": txt, "fwd": fwd, "train": 3 * fwd}
