"""The reference set and Sigma_0 (synthetic class-structured embeddings or loaded .npy embeddings).

Sigma_0: class-structured random unit embeddings (class means of norm ``separation`` plus isotropic noise,
normalised; ``separation = 0``: no class structure), view slot v = normalise(x_j + aug_noise * xi_jv) (default
aug_noise 2: the two views start at cosine ~0.2, leaving room for the positives to move before the clip at 1),
and Sigma_0 = cosine Gram of the N V items (diagonal set to exactly 1, entries clipped to [-1, 1] against
rounding), or loaded from ``init_path`` (.npy, (N, d) or (N, V, d)) with labels from ``labels_path``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from theory.constants import check_classes

from .config import SigmaConfig


@dataclass
class Reference:
    """Reference set: Sigma_0 over the N V items and the sample labels.

    Shape: sigma0 (N V, N V) of SigmaConfig.dtype on SigmaConfig.device; labels (N,) long (CPU); item labels =
    labels repeated V times.
    """

    sigma0: Tensor
    labels: Tensor
    views: int
    classes: int
    balanced: bool
    source: str

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def item_labels(self) -> Tensor:
        return self.labels.repeat_interleave(self.views)


def _gram(X: Tensor, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
          block_rows: int | None = None) -> Tensor:
    """Cosine Gram of unit rows (float64 rows X (M, d) on the CPU) as an (M, M) ``dtype`` matrix on ``device``:
    exactly symmetric (X X^T is not, bitwise, from BLAS), diagonal exactly 1, clipped to [-1, 1] (rounding of
    unit vectors). Computed in float64 and rounded once to ``dtype``. Small CPU float64 matrices in one product;
    otherwise (a GPU, float32, or more than 2^25 entries) by (block_rows x block_rows) tiles on ``device``, the
    tile (I, J), I < J, mirrored to (J, I), so that no (M, M) float64 temporary is ever formed."""
    M = X.shape[0]
    device = torch.device(device)
    if device.type == "cpu" and dtype == torch.float64 and M * M <= (1 << 25) and block_rows is None:
        S = X @ X.T
        S = 0.5 * (S + S.T)
        S.clamp_(-1.0, 1.0)
        S.fill_diagonal_(1.0)
        return S
    # tiles: 2^24 entries per row band on the CPU; 4096 x 4096 float64 tiles (128 MB) on a GPU (few launches)
    b = int(block_rows or (min(M, 4096) if device.type == "cuda" else max(1, min(M, (1 << 24) // max(1, M)))))
    Xd = X.to(device=device, dtype=torch.float64)
    S = torch.empty(M, M, dtype=dtype, device=device)
    for r0 in range(0, M, b):
        r1 = min(M, r0 + b)
        for c0 in range(r0, M, b):
            c1 = min(M, c0 + b)
            P = Xd[r0:r1] @ Xd[c0:c1].T
            if c0 == r0:
                P = 0.5 * (P + P.T)
            P.clamp_(-1.0, 1.0)
            S[r0:r1, c0:c1] = P
            if c0 != r0:
                S[c0:c1, r0:r1] = P.T
    S.fill_diagonal_(1.0)
    return S


def _normalise(X: Tensor, what: str) -> Tensor:
    nrm = torch.linalg.vector_norm(X, dim=-1, keepdim=True)
    if bool((nrm == 0).any()) or not bool(torch.isfinite(X).all()):
        raise ValueError(f"{what} has a zero or non-finite row (cosine undefined)")
    return X / nrm


def _dtype(cfg: SigmaConfig) -> torch.dtype:
    return torch.float32 if cfg.dtype == "float32" else torch.float64


def make_reference(cfg: SigmaConfig) -> Reference:
    """Sigma_0 and labels: synthetic class-structured embeddings or loaded ``init_path`` / ``labels_path``."""
    V = 1 if cfg.views == "identity" else cfg.view_slots
    if cfg.init_path is not None:
        return _load_reference(cfg)
    gen = torch.Generator().manual_seed(int(cfg.init_seed))
    N, C, d = cfg.n, cfg.classes, cfg.embed_dim
    labels = torch.arange(N) // (N // C)  # class blocks of N / C samples
    means = _normalise(torch.randn(C, d, generator=gen, dtype=torch.float64), "class means") * cfg.separation
    noise = torch.randn(N, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    x = _normalise(means[labels] + noise, "embeddings")
    if cfg.views == "identity":
        items = x
    else:
        xi = torch.randn(N, V, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
        items = _normalise(x[:, None, :] + cfg.aug_noise * xi, "view embeddings").reshape(N * V, d)
    return Reference(_gram(items, _dtype(cfg), cfg.device), labels, V, C, True, "synthetic")


def _load_reference(cfg: SigmaConfig) -> Reference:
    for name, p in (("init_path", cfg.init_path), ("labels_path", cfg.labels_path)):
        if not os.path.isfile(str(p)):
            raise ValueError(f"{name} file not found: {p}")
    try:
        E = np.load(cfg.init_path, allow_pickle=False)
        y = np.load(cfg.labels_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read .npy file: {e}".splitlines()[0]) from None
    if E.ndim not in (2, 3) or not np.issubdtype(E.dtype, np.number):
        raise ValueError(f"init_path must hold an (N, d) or (N, V, d) numeric array, got shape {E.shape}")
    N = E.shape[0]
    if y.ndim != 1 or y.shape[0] != N or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels_path must hold ({N},) integer labels, got shape {y.shape} dtype {y.dtype}")
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    C = check_classes(int(counts.size))
    labels = torch.as_tensor(inv.reshape(-1), dtype=torch.long)
    Et = torch.as_tensor(np.asarray(E, dtype=np.float64))
    if Et.dim() == 3:
        if cfg.views == "identity":
            raise ValueError(f"views=identity needs (N, d) embeddings, got shape {tuple(E.shape)}")
        V = Et.shape[1]
        if V < 2:
            raise ValueError(f"(N, V, d) embeddings need V >= 2 view slots, got V={V}")
        items = _normalise(Et, "embeddings").reshape(N * V, -1)
    else:
        x = _normalise(Et, "embeddings")
        if cfg.views == "identity":
            V, items = 1, x
        else:
            V = cfg.view_slots
            gen = torch.Generator().manual_seed(int(cfg.init_seed))
            d = x.shape[1]
            xi = torch.randn(N, V, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
            items = _normalise(x[:, None, :] + cfg.aug_noise * xi, "view embeddings").reshape(N * V, d)
    return Reference(_gram(items, _dtype(cfg), cfg.device), labels, V, C,
                     bool(np.all(counts == counts[0])), str(cfg.init_path))
