"""Vision Transformer encoders in plain torch (Dosovitskiy et al., 2021), attention by
``torch.nn.functional.scaled_dot_product_attention``.

* ``vit_base``: ViT-Base as in the companion blog's Fig. 6 (hidden size 768, depth 12, 12 heads, MLP 3072,
  pre-norm blocks, learned position embeddings, CLS token): 85,798,656 parameters at patch 16 on 224 x 224,
  the published ViT-B/16 without its classification head. The blog does not give the patch size for 32 x 32 images; we use
  :func:`auto_patch_size` (4 for CIFAR: 8 x 8 = 64 tokens).
* ``vit_tiny``: a small ViT for CPU runs (hidden 128 x width, depth 4, 4 heads, MLP ratio 2).

Both return the final-LayerNorm CLS token as the feature: Shape (B, C, H, W) -> (B, feature_dim).
``width`` multiplies the hidden size (rounded to a multiple of the head count). Registered as ``--arch vit_base``
/ ``--arch vit_tiny`` in experiments.models; ``build_encoder`` initialises Linear / Conv (patch embedding) layers
like every other encoder and the CLS token and position table from the same generator (N(0, 0.02^2)).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VIT_ARCHS", "VIT_SPECS", "auto_patch_size", "Attention", "Block", "VisionTransformer", "vit_tiny",
           "vit_base", "build_vit", "reference_attention"]

#: name -> (hidden size at width 1, depth, heads, MLP ratio)
VIT_SPECS = {"vit_tiny": (128, 4, 4, 2.0), "vit_base": (768, 12, 12, 4.0)}
VIT_ARCHS = tuple(VIT_SPECS)


def auto_patch_size(image_size: int) -> int:
    """The largest patch in (16, 8, 4, 2, 1) that divides ``image_size`` and leaves >= 7 patches per side
    (224 -> 16, 64 -> 8, 32 -> 4, 28 -> 4, 84 -> 4, 8 -> 1)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an integer >= 1, got image_size={image_size!r}")
    for p in (16, 8, 4, 2):
        if image_size % p == 0 and image_size // p >= 7:
            return p
    return 1


def reference_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V by explicit loops over batch, head and query (the test reference).

    Shape: q, k, v (B, H, N, d) -> (B, H, N, d).
    """
    B, H, N, d = q.shape
    out = torch.empty_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                s = torch.stack([torch.dot(q[b, h, i], k[b, h, j]) for j in range(k.shape[2])]) / math.sqrt(d)
                w = torch.exp(s - s.max())
                w = w / w.sum()
                out[b, h, i] = sum(w[j] * v[b, h, j] for j in range(k.shape[2]))
    return out


class Attention(nn.Module):
    """Multi-head self-attention: qkv Linear(dim, 3 dim) -> SDPA per head -> proj Linear(dim, dim).

    Shape: (B, N, dim) -> (B, N, dim).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads={heads}, got dim={dim}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, dim) -> q, k, v each (B, heads, N, dim / heads)."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.split_heads(x)
        o = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(o.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with MLP Linear-GELU-Linear."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding (Conv p x p, stride p) + CLS token + learned position table, ``depth`` pre-norm blocks,
    final LayerNorm; the feature is the CLS token.

    Shape: (B, in_channels, image_size, image_size) -> (B, feature_dim), feature_dim = dim.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, patch_size: int | None = None, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        p = auto_patch_size(image_size) if patch_size is None else patch_size
        if isinstance(p, bool) or not isinstance(p, int) or p < 1 or image_size % p:
            raise ValueError(f"patch_size must be an integer >= 1 dividing image_size={image_size}, got patch_size={p!r}")
        for name, v in (("dim", dim), ("depth", depth), ("heads", heads), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={v!r}")
        self.patch_size = p
        self.image_size = image_size
        self.num_patches = (image_size // p) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_dim = dim

    @torch.no_grad()
    def reset_tokens(self, generator: torch.Generator, std: float = 0.02) -> None:
        """CLS token and position table ~ N(0, std^2) from ``generator`` (drawn on the CPU, then copied)."""
        for t in (self.cls_token, self.pos_embed):
            t.copy_(torch.empty(t.shape).normal_(0.0, std, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"ViT built for {self.image_size} x {self.image_size} images, got shape {tuple(x.shape)}")
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        return self.norm(self.blocks(t))[:, 0]


def build_vit(arch: str, in_channels: int = 3, image_size: int = 32, width: float = 1.0,
              patch_size: int | None = None) -> VisionTransformer:
    """``vit_tiny`` or ``vit_base`` (VIT_SPECS) with the hidden size scaled by ``width`` (multiple of the heads)."""
    if arch not in VIT_SPECS:
        raise ValueError(f"arch must be one of {VIT_ARCHS}, got arch={arch!r}")
    dim, depth, heads, ratio = VIT_SPECS[arch]
    d = max(heads, int(round(dim * width / heads)) * heads)
    return VisionTransformer(in_channels, image_size, patch_size, d, depth, heads, ratio)


def vit_tiny(in_channels: int = 3, image_size: int = 32, width: float = 1.0) -> VisionTransformer:
    """Small CPU ViT: hidden 128 x width, depth 4, 4 heads, MLP ratio 2."""
    return build_vit("vit_tiny", in_channels, image_size, width)


def vit_base(in_channels: int = 3, image_size: int = 224, width: float = 1.0) -> VisionTransformer:
    """ViT-Base: hidden 768, depth 12, 12 heads, MLP 3072 (blog Fig. 6)."""
    return build_vit("vit_base", in_channels, image_size, width)
