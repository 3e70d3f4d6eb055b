"""The ratio objectives LHS / RHS of Lemmas 2, 3, 6, 8 (and their sharper forms) on a ``SigmaProblem``.

Paper: App. D.1-D.4 (Lemmas 2, 3, 6, 8); the sharper forms are those of ``theory.bounds`` (issue 6). The list
of claims and variants is in the docstring of ``simulate.adversarial``.

G is the Sigma-space step direction of the batch loss (1/B) sum_a loss_a (Eq. 1), Frobenius norms are those
of the similarity MATRIX. A ratio > 1 is a counterexample and is reported as found (never clipped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from theory.bounds import anchor_row_multiplicity, lem6_l1_sharp, lem6_l2_sharp
from theory.losses import masked_contrastive_loss, softmax_mass_split

from .problem import DTYPE, SigmaProblem

__all__ = [
    "CLAIMS",
    "PAPER_PREMISE_VARIANTS",
    "Objective",
    "paper_premise",
    "claim_objectives",
    "evaluate_objective",
]

CLAIMS = ("L2", "L3", "L6", "L8")


@dataclass(frozen=True)
class Objective:
    """One ratio LHS/RHS to maximise. ``pair``: variables (x, x'); else x only. ``per_anchor``: fn returns
    (A,) ratios, the objective is their max."""

    claim: str
    variant: str
    kind: str
    pair: bool
    per_anchor: bool
    fn: Callable  # (problem, x, xp, tau, Delta) -> (ratio, lhs, rhs) tensors


def _l2_pair(prob, x, xp, tau, Delta, kind):
    diff = prob.step(kind, x, tau) - prob.step(kind, xp, tau)
    lhs = prob.mat_norm(diff) / prob.mat_norm(x - xp)
    rhs = torch.tensor(1.0 / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _l2_hess(prob, x, xp, tau, Delta, kind):
    M = prob.step_operator(kind, x, tau)
    if bool(torch.all(prob.mult == prob.mult[0])):
        lhs = torch.linalg.eigvalsh(M)[-1]  # M = c H is symmetric PSD: spectral norm = top eigenvalue
    else:
        lhs = torch.linalg.matrix_norm(M, ord=2)
    rhs = torch.tensor(1.0 / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _anchor_grads(prob, x, tau, kind):
    """Per-anchor gradients wrt the logit rows, (p_a - 1_{P_a}/|P_a|)/tau, and the valid mask. Shape: (A, K)."""
    pos, den = prob.masks[kind]
    res = masked_contrastive_loss(prob.sim(x), pos, den, tau)
    posf = (pos & res.valid[:, None]).to(DTYPE)
    return (res.p - posf / posf.sum(dim=1, keepdim=True).clamp(min=1.0)) / tau, res.valid


def _l3_anchor(prob, x, xp, tau, Delta, kind):
    g, valid = _anchor_grads(prob, x, tau, kind)
    lhs = torch.where(valid, torch.linalg.vector_norm(g, dim=1), torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, math.sqrt(2.0) / tau)
    return lhs / rhs, lhs, rhs


def _l3_batch(prob, x, xp, tau, Delta, kind):
    lhs = prob.mat_norm(prob.step(kind, x, tau))
    rhs = torch.tensor(math.sqrt(2.0 / prob.B) / tau, dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _both_valid(prob) -> torch.Tensor:
    v = [prob.masks[k][0].any(1) & prob.masks[k][1].any(1) for k in ("CL", "NSCL")]
    return v[0] & v[1]


def _l6_norm(prob, x, xp, tau, Delta, ord):
    s = prob.sim(x)
    p = masked_contrastive_loss(s, *prob.masks["CL"], tau).p
    q = masked_contrastive_loss(s, *prob.masks["NSCL"], tau).p
    lhs = torch.where(_both_valid(prob), torch.linalg.vector_norm(p - q, ord=ord, dim=1), torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, Delta)
    return lhs / rhs, lhs, rhs


def _l6_mass(prob, x, xp, tau, Delta):
    _, den = prob.masks["CL"]
    ms = softmax_mass_split(prob.sim(x), den, prob.same_class, tau)
    lhs = 2 * ms.alpha
    rhs = 2 * torch.exp(ms.log_z_pos - ms.log_z_neg)
    ok = _both_valid(prob) & (ms.n_pos > 0)
    ratio = torch.where(ok, lhs / torch.where(ok, rhs, torch.ones((), dtype=DTYPE)), torch.zeros((), dtype=DTYPE))
    return ratio, lhs, rhs


def _l8(prob, x, xp, tau, Delta):
    diff = prob.step("CL", x, tau) - prob.step("NSCL", xp, tau)
    lhs = prob.mat_norm(diff)
    rhs = Delta / (tau * math.sqrt(prob.B)) + prob.mat_norm(x - xp) / (2 * tau * tau * prob.B)
    return lhs / rhs, lhs, rhs


def _l8_a(prob, x, xp, tau, Delta):
    lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", x, tau))
    rhs = torch.tensor(Delta / (tau * math.sqrt(prob.B)), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _row_mult(prob) -> tuple[int, int, float]:
    """(m, q, kappa): anchor-row multiplicities of the batch (theory.bounds.anchor_row_multiplicity) and the
    symmetric factor (2 for sigma=symmetric with sym_grad=sum, whose step G + G^T - Diag G has norm <= 2 ||G||;
    1 for ordered and for the Frobenius projection sym_grad=mean)."""
    rows = 2 * np.asarray(prob.batch.sample_ids) + np.asarray(prob.batch.anchor_slots)
    m = anchor_row_multiplicity(rows.astype(np.int64))
    kappa = 2.0 if (prob.sigma == "symmetric" and prob.sym_grad == "sum") else 1.0
    return m.m, m.q, kappa


def paper_premise(prob) -> bool:
    """Premise of the paper's Lem. 8 / Thm. 1 constants (theory.bounds.THM1_PREMISE, batch part): every anchor on
    its own row and no symmetric doubling (kappa = 1)."""
    m, _, kappa = _row_mult(prob)
    return m == 1 and kappa == 1.0


def _l6_sharp(prob, x, xp, tau, Delta, ord):
    """Lem. 6 sharpened (theory.bounds.lem6_l1_sharp / lem6_l2_sharp); l2 on merged coordinates (keys on one
    Sigma entry summed, as in the Sigma-space gradient)."""
    s = prob.sim(x)
    p = masked_contrastive_loss(s, *prob.masks["CL"], tau).p
    q = masked_contrastive_loss(s, *prob.masks["NSCL"], tau).p
    d = p - q
    if ord == 1:
        lhs = d.abs().sum(1)
        rhs_v = lem6_l1_sharp(Delta)
    else:
        merged = torch.zeros(d.shape[0], prob.d + 1, dtype=DTYPE).scatter_add(1, prob._gather, d)
        lhs = torch.linalg.vector_norm(merged, dim=1)
        rhs_v = lem6_l2_sharp(Delta)
    lhs = torch.where(_both_valid(prob), lhs, torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, rhs_v)
    return lhs / rhs, lhs, rhs


def _l8_sharp(prob, x, xp, tau, Delta, form, term):
    """Lem. 8 with Delta' = lem6_l2_sharp(Delta): form "paper" (1/(tau sqrt B), 1/(2 tau^2 B); premise m = 1,
    kappa = 1) or "mult" (kappa sqrt(q)/(tau B), kappa m/(2 tau^2 B); theory.bounds.thm1_unrolled_multiplicity).
    term "A": x' = x (reweighting term alone); "full": the pair (x, x')."""
    Ds = lem6_l2_sharp(Delta)
    m, q, kappa = _row_mult(prob)
    B = prob.B
    if form == "paper":
        inj, lip = Ds / (tau * math.sqrt(B)), 1.0 / (2 * tau * tau * B)
    else:
        inj, lip = kappa * math.sqrt(q) * Ds / (tau * B), kappa * m / (2 * tau * tau * B)
    if term == "A":
        lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", x, tau))
        rhs = torch.tensor(inj, dtype=DTYPE)
    else:
        lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", xp, tau))
        rhs = inj + lip * prob.mat_norm(x - xp)
    return lhs / rhs, lhs, rhs


def _l2_hess_mult(prob, x, xp, tau, Delta, kind):
    """Lem. 2 with row multiplicities: ||step operator||_2 <= kappa m/(2 tau^2 B)."""
    _, lhs, _ = _l2_hess(prob, x, xp, tau, Delta, kind)
    m, _, kappa = _row_mult(prob)
    rhs = torch.tensor(kappa * m / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


# variants evaluated against the paper's constants with the sharpened Lem. 6; valid only under paper_premise
PAPER_PREMISE_VARIANTS = ("A_sharp", "full_sharp")


def claim_objectives(claim: str, prob: SigmaProblem) -> list[Objective]:
    """The ratio objectives of ``claim``. Per-anchor objectives (``per_anchor``) return one ratio per anchor
    (0 for anchors the claim does not apply to) and are maximised as max over anchors."""
    out: list[Objective] = []

    def bind(f, **kw):
        return lambda p, x, xp, tau, D: f(p, x, xp, tau, D, **kw)

    if claim == "L2":
        for kind in ("CL", "NSCL"):
            out.append(Objective("L2", "hessian", kind, False, False, bind(_l2_hess, kind=kind)))
            out.append(Objective("L2", "pair", kind, True, False, bind(_l2_pair, kind=kind)))
            out.append(Objective("L2", "hessian_mult", kind, False, False, bind(_l2_hess_mult, kind=kind)))
    elif claim == "L3":
        for kind in ("CL", "NSCL"):
            out.append(Objective("L3", "anchor", kind, False, True, bind(_l3_anchor, kind=kind)))
            out.append(Objective("L3", "batch", kind, False, False, bind(_l3_batch, kind=kind)))
    elif claim == "L6":
        out.append(Objective("L6", "l1", "CL-NSCL", False, True, bind(_l6_norm, ord=1)))
        out.append(Objective("L6", "l2", "CL-NSCL", False, True, bind(_l6_norm, ord=2)))
        out.append(Objective("L6", "mass", "CL-NSCL", False, True, _l6_mass))
        out.append(Objective("L6", "l1_sharp", "CL-NSCL", False, True, bind(_l6_sharp, ord=1)))
        out.append(Objective("L6", "l2_sharp", "CL-NSCL", False, True, bind(_l6_sharp, ord=2)))
    elif claim == "L8":
        out.append(Objective("L8", "full", "CL-NSCL", True, False, _l8))
        out.append(Objective("L8", "A", "CL-NSCL", False, False, _l8_a))
        out.append(Objective("L8", "A_sharp", "CL-NSCL", False, False, bind(_l8_sharp, form="paper", term="A")))
        out.append(Objective("L8", "full_sharp", "CL-NSCL", True, False, bind(_l8_sharp, form="paper", term="full")))
        out.append(Objective("L8", "A_mult", "CL-NSCL", False, False, bind(_l8_sharp, form="mult", term="A")))
        out.append(Objective("L8", "full_mult", "CL-NSCL", True, False, bind(_l8_sharp, form="mult", term="full")))
    else:
        raise ValueError(f"claim must be one of {', '.join(CLAIMS)}, got claim={claim!r}")
    return out


def _scalar(obj: "Objective", r: torch.Tensor) -> torch.Tensor:
    return r.max() if obj.per_anchor else r


def evaluate_objective(
    obj: Objective, prob: SigmaProblem, x: np.ndarray, xp: np.ndarray | None, tau: float, Delta: float | None
) -> tuple[float, float, float, int | None]:
    """(ratio, lhs, rhs, anchor) of ``obj`` at x (and x'); per-anchor objectives: at the worst anchor."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    xpt = None if xp is None else torch.as_tensor(np.asarray(xp, dtype=np.float64))
    with torch.no_grad():
        r, lhs, rhs = obj.fn(prob, xt, xpt, tau, Delta)
    if obj.per_anchor:
        a = int(torch.argmax(r))
        return float(r[a]), float(lhs[a]), float(rhs[a]), a
    return float(r), float(lhs), float(rhs), None
