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

Modules (one idea each; every public name is re-exported here):
    masks        contrastive_masks: (P_a, D_a) of each kind
    masked_loss  masked_contrastive_loss, contrastive_loss (per-anchor loss, valid anchors, reductions)
    derivatives  gradient, Hessian, the prepared hot-loop forms, class_split_from_softmax
    reweighting  softmax_mass_split, reweighting_gap (Lemma 4, Cor. 3, Lemma 6)
    simclr       simclr_sim (the two-view batch of encoder training)
    _checks      input checks, LOSS_KINDS, REDUCTIONS, the compute dtype
"""

from __future__ import annotations

from ._checks import (
    LOSS_KINDS,
    REDUCTIONS,
)
from .derivatives import (
    PreparedMasks,
    SoftmaxGrad,
    MaskedSoftmax,
    ClassSplit,
    prepare_masks,
    contrastive_grad_from_softmax,
    contrastive_softmax_prepared,
    contrastive_grad_prepared,
    softmax_lse,
    class_split_from_softmax,
    contrastive_grad,
    contrastive_hessian,
    jacobian_inf_norm,
)
from .masked_loss import (
    PerAnchorLoss,
    masked_contrastive_loss,
    contrastive_loss,
)
from .masks import (
    contrastive_masks,
)
from .reweighting import (
    MassSplit,
    ReweightingGap,
    softmax_mass_split,
    reweighting_gap,
)
from .simclr import (
    SimCLRBatch,
    simclr_sim,
)

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
