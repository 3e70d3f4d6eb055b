"""Derivatives of the losses wrt the similarity logits (Lemmas 2-3): gradient (p_a - 1_{P_a}/|P_a|)/tau,
Hessian (Diag p_a - p_a p_a^T)/tau^2, and the hot-loop forms for repeated evaluations on one batch (masks
prepared once, one fused softmax pass, the Lemma 4 / 6 class split read off that softmax).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..constants import check_tau
from ._checks import _check_mask, _check_reduction, _check_sim, _compute_dtype
from .masked_loss import _core
from .reweighting import MassSplit

__all__ = [
    "PreparedMasks",
    "SoftmaxGrad",
    "MaskedSoftmax",
    "ClassSplit",
    "prepare_masks",
    "contrastive_grad_from_softmax",
    "contrastive_softmax_prepared",
    "contrastive_grad_prepared",
    "softmax_lse",
    "class_split_from_softmax",
    "contrastive_grad",
    "contrastive_hessian",
    "jacobian_inf_norm",
]


class PreparedMasks(NamedTuple):
    """Masks of one batch prepared once for repeated gradient evaluations (``prepare_masks``).

    Shape: den_bias (A, K) float: 0 on D_a, -inf off D_a; more generally log(multiplicity) when a column stands
    for several identical keys (a multiset denominator: the softmax then weighs column k by its multiplicity);
    pos_rows, pos_cols, pos_w (P,): the positives of the VALID anchors (unique (row, column) pairs) and their
    weights (1/|P_a|, or count/|P_a| for a multiset of positives); valid (A,) bool; invalid_rows (I,) long
    (rows whose p and gradient are zero); n_pos, n_den (A,) long (sizes of P_a, D_a); pos_mask, den_mask the
    (A, K) bool masks they came from (None when built from a batch's structure, e.g. by simulate/layout.py).
    """

    pos_mask: Tensor | None
    den_mask: Tensor | None
    den_bias: Tensor
    pos_rows: Tensor
    pos_cols: Tensor
    pos_w: Tensor
    valid: Tensor
    invalid_rows: Tensor
    n_pos: Tensor
    n_den: Tensor


class SoftmaxGrad(NamedTuple):
    """Result of ``contrastive_grad_prepared``. Shape: grad, p, x (A, K).

    grad = (p - 1_{P_a}/|P_a|)/tau (Lemmas 2-3), p = softmax over D_a of s/tau (zero rows for invalid anchors),
    x = s/tau on D_a and -inf off D_a (the masked logits the softmax was taken of).
    """

    grad: Tensor
    p: Tensor
    x: Tensor


class MaskedSoftmax(NamedTuple):
    """Result of ``contrastive_softmax_prepared``. Shape: p, x (A, K): p = softmax over D_a of s/tau (zero rows
    for invalid anchors), x = s/tau + den_bias (the masked logits the softmax was taken of)."""

    p: Tensor
    x: Tensor


class ClassSplit(NamedTuple):
    """Result of ``class_split_from_softmax``: the class split of a softmax over D_a.

    Shape: mass = MassSplit of (A,) tensors (as ``softmax_mass_split``); q (A, K) = softmax over the other-class
    keys of D_a (the NSCL softmax when D_a^NSCL = D_a minus same-class keys), zero rows where there is none.
    """

    mass: MassSplit
    q: Tensor


def prepare_masks(pos_mask: Tensor, den_mask: Tensor, dtype: torch.dtype = torch.float64) -> PreparedMasks:
    """Prepare (pos_mask, den_mask) once for repeated ``contrastive_grad_prepared`` calls on the same batch.

    The denominator becomes an additive bias (0 on D_a, -inf off D_a, in ``dtype``: the compute dtype of the
    logits), the positives of the valid anchors a list of (row, column, 1/|P_a|). Validity as in
    ``masked_contrastive_loss``: |P_a| >= 1 and |D_a| >= 1.

    Shape: pos_mask, den_mask (A, K) bool. Returns PreparedMasks.
    """
    if not isinstance(den_mask, Tensor) or den_mask.dim() != 2:
        raise ValueError(f"den_mask must be a bool torch.Tensor of shape (A, K), got {getattr(den_mask, 'shape', type(den_mask).__name__)}")
    _check_mask("den_mask", den_mask, den_mask.shape)
    _check_mask("pos_mask", pos_mask, den_mask.shape)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got dtype={dtype!r}")
    n_pos = pos_mask.sum(dim=1)
    n_den = den_mask.sum(dim=1)
    valid = (n_pos > 0) & (n_den > 0)
    den_bias = torch.where(den_mask, torch.zeros((), dtype=dtype, device=den_mask.device),
                           torch.full((), float("-inf"), dtype=dtype, device=den_mask.device))
    pos_rows, pos_cols = (pos_mask & valid[:, None]).nonzero(as_tuple=True)
    pos_w = (1.0 / n_pos.clamp(min=1).to(dtype))[pos_rows]
    invalid_rows = (~valid).nonzero().squeeze(1)
    return PreparedMasks(pos_mask, den_mask, den_bias, pos_rows, pos_cols, pos_w, valid, invalid_rows, n_pos, n_den)


def contrastive_grad_from_softmax(
    p: Tensor, prepared: PreparedMasks, tau: float, row_scale: Tensor | None = None
) -> Tensor:
    """grad = (p - pos)/tau (Lemmas 2-3) from a softmax p over D_a with zero rows for invalid anchors, where pos
    is 1/|P_a| on the positives (``prepared.pos_w``); rows times ``row_scale`` if given.

    Off the positives this is p/tau (p * row_scale/tau); on the positives (p - w)/tau (times row_scale) is
    computed from the gathered p (no cancellation through p/tau - w/tau). Returns a new tensor.

    Shape: p (A, K); row_scale (A,) or None. Returns (A, K).
    """
    r, c = prepared.pos_rows, prepared.pos_cols
    if row_scale is None:
        g = torch.div(p, tau)
        if r.numel():
            g.index_put_((r, c), (p[r, c] - prepared.pos_w.to(p.dtype)) / tau)
    else:
        s = row_scale.to(p.dtype) / tau
        g = torch.mul(p, s[:, None])
        if r.numel():
            g.index_put_((r, c), (p[r, c] - prepared.pos_w.to(p.dtype)) * s[r])
    return g


def contrastive_softmax_prepared(sim: Tensor, prepared: PreparedMasks, tau: float) -> MaskedSoftmax:
    """The softmax of the masked contrastive loss with prepared masks (Lemma 2's p), one fused exp pass:

        x = s/tau + den_bias (0 on D_a, -inf off D_a; log multiplicity for repeated keys),  p = softmax(x),

    with zero rows for invalid anchors. sim must be finite. No autograd graph; never writes into ``sim``.

    Shape: sim (A, K). Returns MaskedSoftmax(p, x), each (A, K) (float32 for half input).
    """
    tau = check_tau(tau)
    sim = _check_sim(sim)
    if prepared.den_bias.shape != sim.shape:
        raise ValueError(f"prepared masks have shape {tuple(prepared.den_bias.shape)}, sim has shape {tuple(sim.shape)}")
    with torch.no_grad():
        cd = _compute_dtype(sim.dtype)
        bias = prepared.den_bias if prepared.den_bias.dtype == cd else prepared.den_bias.to(cd)
        # one pass: bias + s / tau (the division rounds exactly as s / tau; + 0 and + -inf are exact)
        x = torch.addcdiv(bias, sim.detach().to(cd), torch.tensor(tau, dtype=cd, device=sim.device))
        p = torch.softmax(x, dim=1)
        if prepared.invalid_rows.numel():
            p.index_fill_(0, prepared.invalid_rows, 0.0)  # NaN rows (empty D_a) and anchors without a positive
    return MaskedSoftmax(p, x)


def contrastive_grad_prepared(
    sim: Tensor, prepared: PreparedMasks, tau: float, row_scale: Tensor | None = None
) -> SoftmaxGrad:
    """Gradient of the masked contrastive loss wrt the logits with prepared masks (Lemmas 2-3), and its softmax:

        p = ``contrastive_softmax_prepared``,   grad = (p - pos)/tau [* row_scale]   (``contrastive_grad_from_softmax``).

    Same values as ``contrastive_grad(sim, pos_mask, den_mask, tau)`` (which calls this) for 0/-inf biases.

    Shape: sim (A, K); row_scale (A,) or None. Returns SoftmaxGrad(grad, p, x), each (A, K).
    """
    sm = contrastive_softmax_prepared(sim, prepared, tau)
    with torch.no_grad():
        g = contrastive_grad_from_softmax(sm.p, prepared, tau, row_scale)
    return SoftmaxGrad(g, sm.p, sm.x)


def softmax_lse(res: SoftmaxGrad | MaskedSoftmax) -> Tensor:
    """logsumexp_{k in D_a} s_ak/tau (with multiplicities) of a ``contrastive_softmax_prepared`` /
    ``contrastive_grad_prepared`` result, without another exp pass.

    At the largest logit m_a of D_a, p = exp(0)/Z_a, so lse_a = m_a + log Z_a = m_a - log max_k p_ak (max_k p_ak
    >= 1/|D_a|: no underflow). -inf for an empty D_a (the logsumexp of an empty set), as ``softmax_mass_split``.

    Shape: -> (A,).
    """
    with torch.no_grad():
        m = res.x.amax(dim=1)
        pm = res.p.amax(dim=1)
        ok = pm > 0
        return torch.where(ok, m - torch.log(torch.where(ok, pm, torch.ones_like(pm))), torch.full_like(m, float("-inf")))


# a class group whose softmax mass is below this is recomputed exactly (its entries may be subnormal)
_SPLIT_TINY = 2.0**-960


def class_split_from_softmax(
    p: Tensor,
    lse: Tensor,
    den_mask: Tensor,
    same_class_mask: Tensor,
    same_f: Tensor | None = None,
    other_f: Tensor | None = None,
    n_pos: Tensor | None = None,
    n_neg: Tensor | None = None,
    need_q: bool = True,
) -> ClassSplit | None:
    """Lemma 4 / Cor. 3 / Lemma 6 quantities from a softmax p over D_a (no further exp pass over (A, K)).

    With S_pos = sum_{D_a, same class} p and S_neg = sum_{D_a, other class} p (S_pos + S_neg = 1):
        log Z_pos = lse + log S_pos,  log Z_neg = lse + log S_neg,  alpha = S_pos / (S_pos + S_neg),
        q = p 1_{other class} / S_neg  (the softmax over the other-class keys of D_a; zero rows if there is none).
    Returns None when a non-empty class group has S < 2^-960 (its p entries may be subnormal): then use
    ``softmax_mass_split`` and a direct softmax instead. ``same_f`` / ``other_f`` are the float masks
    1{D_a, same class} and 1{D_a, other class} if the caller has them (then den_mask / same_class_mask may be
    None); ``n_pos`` / ``n_neg`` override the set sizes (default: the mask sums; pass the key counts when a
    column of p stands for several identical keys). ``need_q=False`` skips normalising q (ClassSplit.q is then
    the unnormalised p 1_{other class}).

    Shape: p (A, K); lse (A,); den_mask, same_class_mask (A, K) bool. Returns ClassSplit(MassSplit, q) or None.
    """
    if same_f is None:
        same_f = (den_mask & same_class_mask).to(p.dtype)
    if other_f is None:
        other_f = (den_mask & ~same_class_mask).to(p.dtype)
    n_pos = same_f.sum(dim=1) if n_pos is None else n_pos.to(p.dtype)
    n_neg = other_f.sum(dim=1) if n_neg is None else n_neg.to(p.dtype)
    s_pos = (p * same_f).sum(dim=1)
    q = p * other_f
    s_neg = q.sum(dim=1)
    if bool((((n_pos > 0) & (s_pos < _SPLIT_TINY)) | ((n_neg > 0) & (s_neg < _SPLIT_TINY))).any()):
        return None
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    if need_q:
        q.mul_(torch.where(s_neg > 0, 1.0 / torch.where(s_neg > 0, s_neg, torch.ones_like(s_neg)), zero)[:, None])
    log_z_pos = lse + torch.log(s_pos)  # log 0 = -inf for an empty group (and lse = -inf for an empty D_a)
    log_z_neg = lse + torch.log(s_neg)
    tot = s_pos + s_neg
    alpha = torch.where(n_pos > 0, s_pos / torch.where(tot > 0, tot, torch.ones_like(tot)), zero)
    mass = MassSplit(
        z_pos=torch.exp(log_z_pos), z_neg=torch.exp(log_z_neg), alpha=alpha, log_z_pos=log_z_pos,
        log_z_neg=log_z_neg, n_pos=n_pos.long(), n_neg=n_neg.long(),
    )
    return ClassSplit(mass, q)


def contrastive_grad(
    sim: Tensor, pos_mask: Tensor, den_mask: Tensor, tau: float, reduction: str = "none"
) -> Tensor:
    """Analytic gradient of the masked contrastive loss wrt the similarity logits (Lemmas 2-3).

        d loss_a / d s_ak = (p_ak - 1{k in P_a} / |P_a|) / tau,   p_a = softmax over D_a of s_a / tau,

    with all-zero rows for invalid anchors. Rows have disjoint supports in Sigma-space (Lemma 1).
    reduction: "none" -> per-anchor gradients g_a as rows (default);
               "mean" -> gradient of the "mean" loss: rows / #valid anchors (all-zero if none is valid);
               "batch" -> gradient of the paper's batch loss (1/B) sum_a loss_a: rows / A (A = B anchors);
               "sum" -> rows unscaled (same as "none").
    No autograd graph is needed; p is computed without tracking gradients (one fused softmax pass, see
    ``contrastive_grad_prepared``; for repeated calls on one batch prepare the masks once with ``prepare_masks``).

    Shape: sim (A, K); pos_mask, den_mask (A, K) bool. Returns (A, K) (float32 for half input).
    """
    tau = check_tau(tau)
    reduction = _check_reduction(reduction)
    sim = _check_sim(sim)
    _check_mask("pos_mask", pos_mask, sim.shape)
    _check_mask("den_mask", den_mask, sim.shape)
    prep = prepare_masks(pos_mask, den_mask, _compute_dtype(sim.dtype))
    g = contrastive_grad_prepared(sim, prep, tau).grad
    if reduction == "mean":
        g.div_(prep.valid.sum().clamp(min=1).to(g.dtype))  # tensor division: no device synchronisation
    elif reduction == "batch":
        g.div_(sim.shape[0])
    return g


def contrastive_hessian(
    sim: Tensor, den_mask: Tensor, tau: float, anchor: int, pos_mask: Tensor | None = None
) -> Tensor:
    """Per-anchor Hessian of loss_a wrt its logit row s_a (Lemma 2):

        d^2 loss_a / d s_a^2 = (Diag p_a - p_a p_a^T) / tau^2 = J(s_a) / tau^2,

    p_a = softmax over D_a (zeros off D_a), so rows / columns outside D_a are zero. The positive term of the
    loss is linear in s_a, so the Hessian does not depend on P_a; it is all-zero when D_a is empty or (if
    ``pos_mask`` is given) when the anchor has no positive (invalid anchor, loss defined as 0).

    Shape: sim (A, K); den_mask (A, K) bool; pos_mask (A, K) bool or None. Returns (K, K).
    """
    tau = check_tau(tau)
    sim = _check_sim(sim)
    _check_mask("den_mask", den_mask, sim.shape)
    A = sim.shape[0]
    if isinstance(anchor, bool) or not isinstance(anchor, int) or not (0 <= anchor < A):
        raise ValueError(f"anchor must be an integer in [0, {A - 1}], got anchor={anchor!r}")
    row_den = den_mask[anchor : anchor + 1]
    if pos_mask is None:
        row_pos = row_den.any(dim=1, keepdim=True).expand_as(row_den)  # treat as valid iff D_a non-empty
    else:
        row_pos = _check_mask("pos_mask", pos_mask, sim.shape)[anchor : anchor + 1]
    with torch.no_grad():
        p = _core(sim[anchor : anchor + 1].detach(), row_pos, row_den, tau)[2][0]
        return (torch.diag(p) - torch.outer(p, p)) / tau**2


def jacobian_inf_norm(p: Tensor) -> Tensor:
    """||J||_inf = max_r 2 p_r (1 - p_r) of J = Diag p - p p^T (Lemma 2); always <= 1/2 and >= ||J||_2.

    Shape: p (..., K) probability vectors (rows of PerAnchorLoss.p). Returns (...,).
    """
    if not isinstance(p, Tensor):
        p = torch.as_tensor(p, dtype=torch.float64)
    if p.dim() < 1:
        raise ValueError(f"p must have shape (..., K) with K >= 1, got shape {tuple(p.shape)}")
    return (2.0 * p * (1.0 - p)).amax(dim=-1)
