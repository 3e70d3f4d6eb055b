"""Input checks of the loss functions (cheap: shapes and dtypes only, never a device synchronisation), the
loss kinds and reductions, and the compute dtype rule (half / bfloat16 computed in float32).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "LOSS_KINDS",
    "REDUCTIONS",
]

LOSS_KINDS = ("CL", "DCL", "NSCL", "SCL")
REDUCTIONS = ("mean", "batch", "sum", "none")


def _check_kind(kind: object) -> str:
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LOSS_KINDS)}, got kind={kind!r}")
    return kind


def _check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got reduction={reduction!r}")
    return reduction


def _check_sim(sim: object) -> Tensor:
    if not isinstance(sim, Tensor):
        raise ValueError(f"sim must be a torch.Tensor of shape (A, K), got {type(sim).__name__}")
    if sim.dim() != 2:
        raise ValueError(f"sim must have shape (A, K), got shape {tuple(sim.shape)}")
    if not sim.is_floating_point():
        raise ValueError(f"sim must be a floating-point tensor, got dtype={sim.dtype}")
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"sim must have at least one anchor row and one key column, got shape {tuple(sim.shape)}")
    return sim


def _check_mask(name: str, mask: object, shape: torch.Size) -> Tensor:
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} must be a bool torch.Tensor of shape {tuple(shape)}, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must have dtype torch.bool, got dtype={mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)} (same as sim), got shape {tuple(mask.shape)}")
    return mask


def _check_vector(name: str, v: object, n: int | None = None) -> Tensor:
    if not isinstance(v, Tensor):
        raise ValueError(f"{name} must be a 1-D integer torch.Tensor, got {type(v).__name__}")
    if v.dim() != 1 or (n is not None and v.shape[0] != n):
        want = f"({n},)" if n is not None else "1-D"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(v.shape)}")
    if v.is_floating_point() or v.is_complex():
        raise ValueError(f"{name} must be an integer (or bool) tensor, got dtype={v.dtype}")
    return v


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half / bfloat16 (logsumexp precision), else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
