"""The per-anchor masked contrastive loss and its batch reduction (Sec. 3, Eq. of the CL / NSCL losses):
loss_a = -(1/|P_a|) sum_{P_a} s_ak / tau + logsumexp_{D_a} s_ak / tau, with the softmax p over D_a.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..constants import check_tau
from ._checks import _check_kind, _check_mask, _check_reduction, _check_sim, _check_vector, _compute_dtype
from .masks import contrastive_masks

__all__ = [
    "PerAnchorLoss",
    "masked_contrastive_loss",
    "contrastive_loss",
]


class PerAnchorLoss(NamedTuple):
    """Per-anchor result of ``masked_contrastive_loss``.

    Shape: loss (A,), valid (A,) bool, p (A, K), n_pos (A,) long, n_den (A,) long.
    ``loss`` is 0 and ``p`` is an all-zero row for invalid anchors; ``p`` is the softmax of s_a / tau over D_a
    (zeros off D_a).
    """

    loss: Tensor
    valid: Tensor
    p: Tensor
    n_pos: Tensor
    n_den: Tensor


def _core(sim: Tensor, pos_mask: Tensor, den_mask: Tensor, tau: float):
    """Shared vectorised core (one exp pass, arithmetic masking: no slow masked `where` over (A, K) on CPU).

    With x = s/tau, 1_D the float denominator mask and m_a = max_{k in D_a} x_ak (detached; the max-shift is
    exact and gradient-free):  e = exp((x - m) 1_D) 1_D,  Z_a = sum_k e_ak,  p = e / Z,  lse = m + log Z.
    Inside D_a the exponent is x - m <= 0 exactly; outside it is 0, so no exp overflow and no inf * 0 can
    occur (sim must be finite). Invalid rows (no positive or empty D_a) get p = 0, lse = 0 and, because Z is
    replaced by Z + 1 there, every intermediate stays finite in the forward and the backward pass.
    Returns (x, lse, p, valid, n_pos, n_den, pos_f) with n_pos, n_den, pos_f in the compute dtype.
    """
    track = torch.is_grad_enabled() and sim.requires_grad
    cd = _compute_dtype(sim.dtype)
    x = sim.to(cd) / tau
    den_f = den_mask.to(cd)
    pos_f = pos_mask.to(cd)
    n_den = den_f.sum(dim=1)
    n_pos = pos_f.sum(dim=1)
    valid = (n_pos > 0) & (n_den > 0)
    with torch.no_grad():
        # x on D_a, -finfo.max off D_a (exact: x * 1 + 0); m = -finfo.max for an empty D_a
        on_d = (den_f - 1.0).mul_(torch.finfo(cd).max).addcmul_(x, den_f)
        m = on_d.amax(dim=1, keepdim=True)
    if track:
        e = torch.exp((x - m) * den_f) * den_f
    else:
        e = (x - m).mul_(den_f).exp_().mul_(den_f)
    Z = e.sum(dim=1) + (~valid).to(cd)
    zero = torch.zeros((), dtype=cd, device=x.device)
    lse = torch.where(valid, m.squeeze(1) + torch.log(Z), zero)
    scale = torch.where(valid, 1.0 / Z, zero)
    p = e * scale[:, None] if track else e.mul_(scale[:, None])
    return x, lse, p, valid, n_pos, n_den, pos_f


def masked_contrastive_loss(sim: Tensor, pos_mask: Tensor, den_mask: Tensor, tau: float) -> PerAnchorLoss:
    """Per-anchor masked contrastive loss (generic form of Sec. 3 CL / NSCL, DCL, SupCon L_out).

        loss_a = -(1/|P_a|) sum_{k in P_a} s_ak / tau + logsumexp_{k in D_a} s_ak / tau      (valid anchors)
        loss_a = 0                                                                           (invalid anchors)

    With a single positive k = a' this is -log( exp(s_aa'/tau) / sum_{k in D_a} exp(s_ak/tau) ), i.e.
    ell_{i,B} (CL, a' in D_a) or ell_{i,B_i^-} (NSCL, a' not in D_a) of Sec. 3 / App. D.1.
    Invalid anchors (|P_a| = 0 or |D_a| = 0) have loss 0, p = 0 and exactly-zero gradients.

    Shape: sim (A, K) finite floating (cosines, not divided by tau); pos_mask, den_mask (A, K) bool.
    Returns PerAnchorLoss(loss (A,), valid (A,), p (A, K), n_pos (A,), n_den (A,)); float32 for half input.
    """
    tau = check_tau(tau)
    sim = _check_sim(sim)
    _check_mask("pos_mask", pos_mask, sim.shape)
    _check_mask("den_mask", den_mask, sim.shape)
    x, lse, p, valid, n_pos, n_den, pos_f = _core(sim, pos_mask, den_mask, tau)
    pos_mean = (x * pos_f).sum(dim=1) / n_pos.clamp(min=1.0)
    loss = torch.where(valid, lse - pos_mean, torch.zeros((), dtype=x.dtype, device=x.device))
    return PerAnchorLoss(loss=loss, valid=valid, p=p, n_pos=n_pos.long(), n_den=n_den.long())


def _no_valid_message(kind: str, res: PerAnchorLoss, anchor_labels: Tensor | None) -> str:
    A = res.loss.shape[0]
    no_pos = int((res.n_pos == 0).sum())
    no_den = int((res.n_den == 0).sum())
    what = {
        "CL": ("a positive (same-id key)", "a key in its denominator"),
        "DCL": ("a positive (same-id key)", "a different-id key in its denominator"),
        "NSCL": ("a positive (same-id key)", "a negative (different-label key) in its denominator"),
        "SCL": ("a positive (same-label key other than itself)", "a key in its denominator"),
    }[kind]
    if no_den == A:
        head = f"{kind}: no anchor has {what[1]}"
    elif no_pos == A:
        head = f"{kind}: no anchor has {what[0]}"
    else:
        head = f"{kind}: no valid anchor ({no_pos} without {what[0]}, {no_den} without {what[1]})"
    detail = f"batch of {A} anchors"
    if anchor_labels is not None and A > 0:
        classes = torch.unique(anchor_labels).tolist()
        if len(classes) == 1:
            detail += f", all of class {classes[0]}"
        elif len(classes) <= 5:
            detail += f", classes {classes}"
        else:
            detail += f", {len(classes)} classes"
    return f"{head} ({detail})"


def _reduce(per_anchor: Tensor, valid: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_anchor
    total = per_anchor.sum(dim=0)
    if reduction == "sum":
        return total
    if reduction == "batch":
        return total / per_anchor.shape[0]
    return total / valid.sum().to(per_anchor.dtype)


def contrastive_loss(
    sim: Tensor,
    kind: str,
    tau: float,
    anchor_ids: Tensor,
    key_ids: Tensor,
    anchor_labels: Tensor | None = None,
    key_labels: Tensor | None = None,
    self_mask: Tensor | None = None,
    reduction: str = "mean",
    return_details: bool = False,
) -> Tensor | tuple[Tensor, PerAnchorLoss]:
    """Batch contrastive loss of ``kind`` in {CL, DCL, NSCL, SCL} (Sec. 3; masks per ``contrastive_masks``).

    reduction: "mean" = (1/#valid) sum_{valid a} loss_a (default);
               "batch" = (1/A) sum_a loss_a with loss_a = 0 for invalid anchors (the paper's 1/B batch loss
                         bar-ell_B when every anchor is valid and A = B);
               "sum"; "none" = the (A,) per-anchor losses (0 for invalid anchors).
    Raises ValueError (one line) if no anchor is valid, e.g. NSCL on a batch of a single class, if ``sim``
    is empty (0 rows or 0 columns) or if the loss is not finite (a NaN / inf similarity). With ``return_details=True`` returns (loss, PerAnchorLoss).

    Shape: sim (A, K); anchor_ids (A,); key_ids (K,); anchor_labels (A,); key_labels (K,); self_mask (A, K).
    """
    kind = _check_kind(kind)
    reduction = _check_reduction(reduction)
    tau = check_tau(tau)
    sim = _check_sim(sim)
    _check_vector("anchor_ids", anchor_ids, sim.shape[0])  # one id per row of sim
    _check_vector("key_ids", key_ids, sim.shape[1])  # one id per column of sim
    pos, den = contrastive_masks(kind, anchor_ids, key_ids, anchor_labels, key_labels, self_mask)
    res = masked_contrastive_loss(sim, pos, den, tau)
    if not bool(res.valid.any()):
        raise ValueError(_no_valid_message(kind, res, anchor_labels))
    out = _reduce(res.loss, res.valid, reduction)
    if not bool(torch.isfinite(out.detach()).all()):  # a NaN / inf similarity: one line, never a NaN loss
        bad = ~torch.isfinite(sim.detach())
        raise ValueError(f"sim must be finite, got {int(bad.sum())} of {sim.numel()} entries NaN or inf "
                         f"(first at {tuple(int(i) for i in bad.nonzero()[0])})" if bool(bad.any()) else
                         f"{kind} loss is not finite (tau={tau!r} too small for these similarities?)")
    return (out, res) if return_details else out
