"""Reweighting quantities (Lemma 4, Cor. 3, Lemma 6): the class split of the CL denominator mass and the
per-anchor gap ||p_CL - q_NSCL|| between the CL and NSCL softmaxes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..constants import check_tau
from ._checks import _check_mask, _check_sim, _compute_dtype

__all__ = [
    "MassSplit",
    "ReweightingGap",
    "softmax_mass_split",
    "reweighting_gap",
]


class MassSplit(NamedTuple):
    """Softmax masses of an anchor's denominator split by class (Lemma 4, Lemma 6, Cor. 3).

    Shape: every field (A,). z_pos = sum_{k in D_a, same class} exp(s_ak/tau), z_neg likewise over other-class
    keys, alpha = z_pos / (z_pos + z_neg); log_z_* are the logs (-inf for an empty set); n_pos / n_neg are the
    set sizes. alpha is 0 for an anchor with an empty denominator (n_pos = n_neg = 0).
    """

    z_pos: Tensor
    z_neg: Tensor
    alpha: Tensor
    log_z_pos: Tensor
    log_z_neg: Tensor
    n_pos: Tensor
    n_neg: Tensor


class ReweightingGap(NamedTuple):
    """||p - q||_1 and ||p - q||_2 per anchor (Lemma 6). Shape: l1 (A,), l2 (A,)."""

    l1: Tensor
    l2: Tensor


def softmax_mass_split(sim: Tensor, den_mask: Tensor, same_class_mask: Tensor, tau: float) -> MassSplit:
    """Split an anchor's CL denominator mass into same-class and other-class parts (Lemma 4, Cor. 3, Lemma 6).

        Z_pos = sum_{k in D_a, same class} exp(s_ak/tau),  Z_neg = sum_{k in D_a, other class} exp(s_ak/tau),
        alpha = Z_pos / (Z_pos + Z_neg)  =  total CL softmax mass on same-class keys.

    "Same class" includes the designated positive a' (App. D.1: D_i^pos). Computed in log space (alpha =
    sigmoid(log Z_pos - log Z_neg)), so alpha is exact even where Z overflows (tiny tau, float32).
    Lemma 6: ||p_CL - q_NSCL||_1 = 2 alpha when q is the softmax over the other-class keys of D_a.

    Shape: sim (A, K); den_mask, same_class_mask (A, K) bool. Returns MassSplit of (A,) tensors.
    """
    tau = check_tau(tau)
    sim = _check_sim(sim)
    _check_mask("den_mask", den_mask, sim.shape)
    _check_mask("same_class_mask", same_class_mask, sim.shape)
    x = sim.to(_compute_dtype(sim.dtype)) / tau
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    pos_set = den_mask & same_class_mask
    neg_set = den_mask & ~same_class_mask
    log_z_pos = torch.logsumexp(torch.where(pos_set, x, neg_inf), dim=1)
    log_z_neg = torch.logsumexp(torch.where(neg_set, x, neg_inf), dim=1)
    n_pos = pos_set.sum(dim=1)
    n_neg = neg_set.sum(dim=1)
    alpha = torch.where(n_pos == 0, torch.zeros_like(log_z_pos), torch.sigmoid(log_z_pos - log_z_neg))
    return MassSplit(
        z_pos=torch.exp(log_z_pos),
        z_neg=torch.exp(log_z_neg),
        alpha=alpha,
        log_z_pos=log_z_pos,
        log_z_neg=log_z_neg,
        n_pos=n_pos,
        n_neg=n_neg,
    )


def reweighting_gap(p_cl: Tensor, q_nscl: Tensor) -> ReweightingGap:
    """Per-anchor reweighting gap ||p - q||_1 and ||p - q||_2 (Lemma 6; Lemma 6 bounds both by Delta_{C,delta}).

    Shape: p_cl, q_nscl (A, K) (or (K,)), e.g. the ``p`` fields of the CL and NSCL PerAnchorLoss on the same sim.
    Returns ReweightingGap(l1 (A,), l2 (A,)).
    """
    if not isinstance(p_cl, Tensor) or not isinstance(q_nscl, Tensor):
        raise ValueError(
            f"p_cl and q_nscl must be torch.Tensors, got {type(p_cl).__name__} and {type(q_nscl).__name__}"
        )
    if p_cl.shape != q_nscl.shape or p_cl.dim() < 1:
        raise ValueError(
            f"p_cl and q_nscl must have the same shape (A, K), got {tuple(p_cl.shape)} and {tuple(q_nscl.shape)}"
        )
    d = p_cl - q_nscl
    return ReweightingGap(l1=d.abs().sum(dim=-1), l2=torch.linalg.vector_norm(d, dim=-1))
