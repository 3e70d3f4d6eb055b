"""Contrastive losses on similarity logits: CL, DCL, NSCL, SCL (the ONE implementation in this project).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 3 (CL and NSCL
per-anchor and batch losses) and App. D.1 (Lemmas 1-4, 6).

Every loss is written in one generic masked form. For anchor ``a`` with similarity logits ``s_a`` (row ``a``
of ``sim``; cosines, NOT divided by tau), positive set ``P_a`` and denominator set ``D_a``:

    loss_a = -(1/|P_a|) sum_{k in P_a} s_ak / tau  +  logsumexp_{k in D_a} s_ak / tau

Which keys are positives / denominator keys depends on the loss ``kind`` (``contrastive_masks``):

    kind  P_a (positives)                        D_a (denominator)
    CL    same id, not the anchor itself          every key except the anchor (positive included; paper's loss)
    DCL   same id, not the anchor itself          keys with a different id (Yeh et al., decoupled)
    NSCL  same id, not the anchor itself          keys with a different label (negatives only, Sec. 3)
    SCL   same label, not the anchor itself       every key except the anchor (SupCon "L_out", Khosla et al.)

An anchor is *valid* when |P_a| >= 1 and |D_a| >= 1. Invalid anchors get loss 0, ``valid=False`` and
exactly-zero gradients (never NaN / inf); ``contrastive_loss`` raises if no anchor of the batch is valid.

Derivatives (Lemmas 2-3): with p_a = softmax over D_a of s_a / tau (zero off D_a),

    d loss_a / d s_a   = (p_a - 1_{P_a} / |P_a|) / tau
    d^2 loss_a / d s_a^2 = (Diag p_a - p_a p_a^T) / tau^2      (the positive term is linear)

Repeated evaluations on one batch (the Sigma-space simulation): ``prepare_masks`` turns (P_a, D_a) into an
additive bias (0 on D_a, -inf off it) and a list of positives; ``contrastive_softmax_prepared`` is then one
fused softmax pass (x = s/tau + bias), ``contrastive_grad_from_softmax`` the gradient (p - 1_P/|P|)/tau
(optionally times a per-row scale), ``softmax_lse`` the logsumexp and ``class_split_from_softmax`` the Lemma 4 /
Lemma 6 class masses, both without another exp pass. A bias of log(m) on a column makes the softmax count it m
times (a multiset of identical keys: simulate/step.py works on unique Sigma entries this way).

Precision: half / bfloat16 inputs are computed in float32 (losses, ``p`` and gradients come back in float32);
float32 / float64 inputs are computed in their own dtype. All functions are vectorised over anchors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .constants import check_tau

__all__ = [
    "LOSS_KINDS",
    "REDUCTIONS",
    "PerAnchorLoss",
    "MassSplit",
    "ReweightingGap",
    "SimCLRBatch",
    "contrastive_masks",
    "masked_contrastive_loss",
    "contrastive_loss",
    "contrastive_grad",
    "PreparedMasks",
    "SoftmaxGrad",
    "MaskedSoftmax",
    "ClassSplit",
    "prepare_masks",
    "contrastive_grad_prepared",
    "contrastive_softmax_prepared",
    "contrastive_grad_from_softmax",
    "softmax_lse",
    "class_split_from_softmax",
    "contrastive_hessian",
    "jacobian_inf_norm",
    "softmax_mass_split",
    "reweighting_gap",
    "simclr_sim",
]

LOSS_KINDS = ("CL", "DCL", "NSCL", "SCL")
REDUCTIONS = ("mean", "batch", "sum", "none")


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


class SimCLRBatch(NamedTuple):
    """Two-view similarity batch from ``simclr_sim``; all fields are keyword arguments of ``contrastive_loss``.

    Shape: sim (A, K); anchor_ids (A,); key_ids (K,); anchor_labels (A,) or None; key_labels (K,) or None;
    self_mask (A, K) bool. Use ``batch.loss(kind, tau)`` or ``contrastive_loss(**batch._asdict(), kind=..,
    tau=..)``.
    """

    sim: Tensor
    anchor_ids: Tensor
    key_ids: Tensor
    anchor_labels: Tensor | None
    key_labels: Tensor | None
    self_mask: Tensor

    def masks(self, kind: str) -> tuple[Tensor, Tensor]:
        """(pos_mask, den_mask) of this batch for ``kind``; see ``contrastive_masks``."""
        return contrastive_masks(
            kind, self.anchor_ids, self.key_ids, self.anchor_labels, self.key_labels, self.self_mask
        )

    def loss(self, kind: str, tau: float, reduction: str = "mean") -> Tensor:
        """``contrastive_loss`` of this batch."""
        return contrastive_loss(**self._asdict(), kind=kind, tau=tau, reduction=reduction)


# ----------------------------------------------------------------------------------------------------------
# validation helpers (cheap: shapes and dtypes only, never a device synchronisation)


def _check_kind(kind: object) -> str:
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LOSS_KINDS)}, got kind={kind!r}")
    return kind  # type: ignore[return-value]


def _check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got reduction={reduction!r}")
    return reduction  # type: ignore[return-value]


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


# ----------------------------------------------------------------------------------------------------------
# masks


def contrastive_masks(
    kind: str,
    anchor_ids: Tensor,
    key_ids: Tensor,
    anchor_labels: Tensor | None = None,
    key_labels: Tensor | None = None,
    self_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Positive and denominator masks (P_a, D_a) of the loss ``kind`` (table in the module docstring).

    CL / DCL / NSCL: P_a = {k : key_ids[k] == anchor_ids[a]} minus the anchor itself.
    SCL:             P_a = {k : key_labels[k] == anchor_labels[a]} minus the anchor itself.
    CL, SCL: D_a = all keys but the anchor itself; DCL: D_a = keys with a different id; NSCL: D_a = keys with a
    different label (Sec. 3, B_i^-). ``self_mask`` (True where key k IS anchor a) is removed from both masks;
    ``None`` means no key is an anchor (then an anchor's own copy among the keys would count as a positive).

    Shape: anchor_ids, anchor_labels (A,) integer; key_ids, key_labels (K,) integer; self_mask (A, K) bool.
    Returns (pos_mask, den_mask), both (A, K) bool.
    """
    kind = _check_kind(kind)
    anchor_ids = _check_vector("anchor_ids", anchor_ids)
    key_ids = _check_vector("key_ids", key_ids)
    A, K = anchor_ids.shape[0], key_ids.shape[0]
    if kind in ("NSCL", "SCL"):
        if anchor_labels is None or key_labels is None:
            raise ValueError(f"{kind} needs class labels, got anchor_labels=None or key_labels=None")
    if anchor_labels is not None:
        anchor_labels = _check_vector("anchor_labels", anchor_labels, A)
    if key_labels is not None:
        key_labels = _check_vector("key_labels", key_labels, K)
    not_self = None
    if self_mask is not None:
        not_self = ~_check_mask("self_mask", self_mask, torch.Size((A, K)))

    same_id = anchor_ids[:, None] == key_ids[None, :]
    if kind == "SCL":
        pos = anchor_labels[:, None] == key_labels[None, :]  # type: ignore[index]
    else:
        pos = same_id
    if kind in ("CL", "SCL"):
        den = torch.ones_like(same_id) if not_self is None else not_self.clone()
    elif kind == "DCL":
        den = ~same_id
    else:  # NSCL
        den = anchor_labels[:, None] != key_labels[None, :]  # type: ignore[index]
    if not_self is not None:
        pos = pos & not_self
        den = den & not_self
    return pos, den


# ----------------------------------------------------------------------------------------------------------
# core


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
    return total / valid.sum().to(per_anchor.dtype)  # "mean" over valid anchors


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


# ----------------------------------------------------------------------------------------------------------
# derivatives


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


# ----------------------------------------------------------------------------------------------------------
# reweighting quantities (Lemma 4, Cor. 3, Lemma 6)


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


# ----------------------------------------------------------------------------------------------------------
# encoder training helper


def simclr_sim(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    normalize: bool = True,
    anchors: str = "both",
) -> SimCLRBatch:
    """Two-view SimCLR similarity batch for encoder training (Sec. 3; Chen et al. 2020).

    Keys are the 2B views [z1; z2]; ids = sample position in the batch (0..B-1, repeated for the two views),
    labels repeated likewise. sim = cosine similarities (F.normalize, eps 1e-12, then matmul) or raw dot
    products if ``normalize=False``.
      anchors="both":  rows = [z1; z2], sim (2B, 2B): SimCLR / NT-Xent symmetrised (every view is an anchor).
      anchors="first": rows = z1, sim (B, 2B): the paper's form, one anchor x_i per sample with denominator
                       {x_j : j != i} + {x'_j : all j} (Sec. 3).
    self_mask marks each anchor's own column. ``batch.loss(kind, tau)`` then gives SimCLR/NT-Xent ("CL"),
    DCL ("DCL"), NSCL ("NSCL", needs labels) and SupCon L_out ("SCL", needs labels).

    Shape: z1, z2 (B, d); labels (B,) integer or None. Returns SimCLRBatch.
    """
    if not isinstance(z1, Tensor) or not isinstance(z2, Tensor):
        raise ValueError(f"z1 and z2 must be torch.Tensors, got {type(z1).__name__} and {type(z2).__name__}")
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both have shape (B, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if anchors not in ("both", "first"):
        raise ValueError(f"anchors must be 'both' or 'first', got anchors={anchors!r}")
    B = z1.shape[0]
    if B < 1:
        raise ValueError(f"batch size must be >= 1, got z1 of shape {tuple(z1.shape)}")
    if labels is not None:
        labels = _check_vector("labels", labels, B)
    if normalize:
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
    keys = torch.cat([z1, z2], dim=0)
    rows = keys if anchors == "both" else z1
    sim = rows @ keys.T
    A = rows.shape[0]
    dev = z1.device
    ids = torch.arange(B, device=dev)
    key_ids = torch.cat([ids, ids])
    anchor_ids = key_ids if anchors == "both" else ids
    self_mask = torch.eye(A, 2 * B, dtype=torch.bool, device=dev)
    if labels is None:
        key_labels = anchor_labels = None
    else:
        labels = labels.to(dev)
        key_labels = torch.cat([labels, labels])
        anchor_labels = key_labels if anchors == "both" else labels
    return SimCLRBatch(sim, anchor_ids, key_ids, anchor_labels, key_labels, self_mask)
