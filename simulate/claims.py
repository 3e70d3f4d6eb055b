"""The claims table and the per-step claims of one coupled step (LHS, RHS, ratio, premise).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Lemmas 1-8,
Cor. 3, Thm. 1, Cors. 1-2. Every claim is evaluated where it applies and recorded as LHS, RHS and
ratio, with ratio <= 1 meaning "holds":

    "<=" claims  ratio = LHS / RHS          (0/0 = 0, x/0 = inf, x/inf = 0)
    ">=" claims  ratio = RHS / LHS          (Cor. 3 negative fraction)
    "==" claims  ratio = LHS / RHS, violated when |ratio - 1| > EQ_RTOL (Lem. 1, Lem. 6 identity)
    CKA / RSA    ratio = (1 - value) / (1 - lower bound): the fraction of the allowed loss of alignment
                 actually used (1 - value <= 1 - lb  <=>  value >= lb); a lb <= 0 is vacuous.

A "<=" claim is violated when ratio > 1 + RTOL (RTOL = 1e-12: float64 rounding of the two sides; no other
tolerance is applied). Each claim states its premise; instances whose premise fails (logits outside
[-1, 1] for Lems. 4, 6, 8 / Cor. 3 mass bound, or the Cor. 3 batch-composition event false) are counted in
``premise_failed`` and their violations separately in ``violations_outside_premise``.

All gradients are the Sigma-space (scattered) ones of the engine, so duplicate draws and the symmetric
parameterisation are measured, not assumed away. Per-anchor quantities are vectorised over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from theory.bounds import lem6_l2_sharp
from theory.losses import (
    class_split_from_softmax,
    contrastive_grad_from_softmax,
    contrastive_grad_prepared,
    contrastive_softmax_prepared,
    jacobian_inf_norm,
    softmax_lse,
    softmax_mass_split,
)

from .layout import build_layout
from .step import compute_step
from theory.constants import exp_or_inf


RTOL = 1e-12
EQ_RTOL = 1e-9

_NA_SIGMA = "not applicable in Sigma-space (parameter-space claim); checked in experiments/"

# id -> (paper reference, kind, unit, statement, premise, note)
CLAIMS: dict[str, dict] = {
    "L1": dict(paper="Lem. 1, Eq. 10", kind="eq", unit="step x run",
               statement="||G||_F^2 = (1/B^2) sum_i ||g_i||_F^2 (Sigma-space batch gradient; CL and NSCL runs)",
               premise="none",
               note="equality needs disjoint anchor blocks: fails when two anchors share a row (duplicate draw with "
                    "the same view slot under replacement) and always in symmetric mode (G + G^T couples the blocks)"),
    "L2": dict(paper="Lem. 2, Eq. 11", kind="le", unit="step",
               statement="||G^NSCL(S^CL) - G^NSCL(S^NSCL)||_F <= (1/(2 tau^2 B)) ||S^CL - S^NSCL||_F on the NSCL-active "
                         "entries (at the actual pair)",
               premise="none",
               note="block-diagonal Hessian assumed; anchors sharing a row or symmetric coupling can break the 1/(2 tau^2 B) "
                    "constant"),
    "L2_CL": dict(paper="Lem. 2, Eq. 11 (CL map)", kind="le", unit="step",
                  statement="||G^CL(S^CL) - G^CL(S^NSCL)||_F <= (1/(2 tau^2 B)) ||S^CL - S^NSCL||_F on the CL-active entries",
                  premise="none", note="same as L2 for the CL gradient map"),
    "L2_jac": dict(paper="Lem. 2", kind="le", unit="anchor x run",
                   statement="||Diag(p) - p p^T||_inf = max_r 2 p_r (1 - p_r) <= 1/2 (Sigma-space softmax, duplicate keys merged)",
                   premise="none", note="x(1-x) <= 1/4; cannot fail"),
    "L3": dict(paper="Lem. 3, Eq. 12", kind="le", unit="anchor x run",
               statement="per-anchor Sigma-space gradient ||g_i||_2 <= sqrt(2)/tau",
               premise="none",
               note="symmetric mode doubles each off-diagonal coordinate (||g_i + g_i^T||^2 ~ 2 ||g_i||^2), ratio up to sqrt 2"),
    "L3_batch": dict(paper="Lem. 3, Eq. 13", kind="le", unit="step x run",
                     statement="||G||_F <= (1/tau) sqrt(2/B)", premise="none",
                     note="uses Lem. 1; anchors sharing rows / symmetric coupling can exceed it"),
    "L3_nscl_display": dict(paper="Lem. 3 proof, NSCL case", kind="eq", unit="anchor",
                            statement="NSCL logit gradient: ||grad ell_i||_2^2 = sum_neg q_j^2 / tau^2 (the proof's display, "
                                      "gradient q/tau on negatives and 0 elsewhere)",
                            premise="the anchor has >= 1 negative",
                            note="the display omits the -1/tau on the positive coordinate (not in the NSCL denominator): "
                                 "the true value is (1 + ||q||^2)/tau^2; the lemma's bound 2/tau^2 still holds (see L3)"),
    "L4": dict(paper="Lem. 4", kind="le", unit="anchor",
               statement="|S| e^{-1/tau} <= Z_S <= |S| e^{1/tau} (S = same-class, other-class, all denominator keys) and "
                         "e^{-2/tau} n_pos/n_neg <= Z_pos/Z_neg <= e^{2/tau} n_pos/n_neg, at Sigma^CL; ratio = worst sub-bound",
               premise="all the anchor's CL-denominator logits in [-1, 1]", note="exact consequence of the premise"),
    "L5": dict(paper="Lem. 5 (Hoeffding + union bound)", kind="le", unit="Monte-Carlo trials",
               statement="P[exists (t,i): negative fraction < 1 - 1/C - eps] <= T B e^{-2 B eps^2} (= delta at eps_{B,delta})",
               premise="class-balanced population",
               note="the anchor's own slot is always same-class, so the count is Binomial(B-1, 1-1/C), not the stated "
                    "Binomial(B, 1-1/C); evaluated exactly and by Monte Carlo in simulate/montecarlo.py"),
    "L6": dict(paper="Lem. 6", kind="le", unit="anchor",
               statement="||p - q||_1 <= Delta_{C,delta}(B; tau), p = CL and q = NSCL softmax at Sigma^CL",
               premise="Cor. 3 event for the anchor and its logits in [-1, 1]", note=""),
    "L6_l2": dict(paper="Lem. 6", kind="le", unit="anchor", statement="||p - q||_2 <= Delta_{C,delta}(B; tau)",
                  premise="as L6", note=""),
    "L6_identity": dict(paper="Lem. 6 (proof)", kind="eq", unit="anchor",
                        statement="||p - q||_1 = 2 alpha, alpha = Z_pos / (Z_pos + Z_neg) (same-class CL softmax mass)",
                        premise="the anchor has >= 1 negative (NSCL defined)", note="exact identity"),
    "L7": dict(paper="Lem. 7", kind="le", unit="-", statement="parameter-gradient gap <= (G/tau) Delta", premise="-",
               note=_NA_SIGMA),
    "L8": dict(paper="Lem. 8", kind="le", unit="step",
               statement="||G^CL(S^CL) - G^NSCL(S^NSCL)||_F <= Delta/(tau sqrt B) + (1/(2 tau^2 B)) ||S^CL - S^NSCL||_F",
               premise="Cor. 3 event and logits in [-1, 1] for every anchor of the step, ordered Sigma, every anchor on "
                       "its own row (m = 1; the proof uses Lem. 1)", note=""),
    "L8_mult": dict(paper="Lem. 8 with row multiplicities (theory.bounds.thm1_unrolled_multiplicity)", kind="le",
                    unit="step",
                    statement="||G^CL(S^CL) - G^NSCL(S^NSCL)||_F <= kappa (sqrt(q) Delta'/(tau B) + m/(2 tau^2 B) D_t), "
                              "m = max anchors on a row, q = sum_r n_r^2, Delta' = lem6_l2_sharp(Delta), kappa = 2 "
                              "symmetric",
                    premise="Cor. 3 event and logits in [-1, 1] for every anchor of the step (duplicates allowed)",
                    note=""),
    "L8_A": dict(paper="Lem. 8 term (A)", kind="le", unit="step",
                 statement="||G^CL(S^CL) - G^NSCL(S^CL)||_F <= Delta/(tau sqrt B) (reweighting term alone)",
                 premise="as L8", note="term (A) is also the measured injection of Thm1_gap"),
    "Cor3": dict(paper="Cor. 3 / Lem. 5 event", kind="ge", unit="anchor",
                 statement="negative fraction (B - n_same)/B >= 1 - 1/C - eps_{B,delta} (anchor's own slot counted, as Lem. 5)",
                 premise="none",
                 note="a probability-(1-delta) event over the whole run, not a deterministic claim: violations are allowed "
                      "with probability <= delta"),
    "Cor3_excl": dict(paper="Cor. 3 (other convention)", kind="ge", unit="anchor",
                      statement="negative fraction over the B-1 other slots (B - n_same)/(B - 1) >= 1 - 1/C - eps_{B,delta}",
                      premise="none", note="the i.i.d. Bernoulli(1-1/C) convention of Lem. 5 holds only for these B-1 slots"),
    "Cor3_mass": dict(paper="Cor. 3, Eq. 14", kind="le", unit="anchor",
                      statement="Z_pos / Z_neg <= Delta_{C,delta}(B; tau) / 2 at Sigma^CL",
                      premise="Cor. 3 event for the anchor and its logits in [-1, 1]", note=""),
    "Thm1_rec": dict(paper="Thm. 1 proof (recurrence)", kind="le", unit="step",
                     statement="D_{t+1} <= (1 + eta_t/(2 tau^2 B)) D_t + eta_t Delta/(tau sqrt B)",
                     premise="as L8 at step t", note=""),
    "Thm1_rec_mult": dict(paper="Thm. 1 recurrence with row multiplicities", kind="le", unit="step",
                          statement="D_{t+1} <= (1 + kappa eta_t m/(2 tau^2 B)) D_t + kappa eta_t sqrt(q) Delta'/(tau B)",
                          premise="as L8_mult at step t", note=""),
    "Thm1": dict(paper="Thm. 1, Eq. 2", kind="le", unit="step",
                 statement="D_t <= exp(S_t/(2 tau^2 B)) S_t Delta/(tau sqrt B), S_t = sum_{s<t} eta_s (closed form)",
                 premise="theory.bounds.THM1_PREMISE at every step so far: Cor. 3 event, bounded logits, ordered Sigma, "
                         "every anchor on its own row (m = 1)", note=""),
    "Thm1_unrolled": dict(paper="Thm. 1 proof (Gronwall product)", kind="le", unit="step",
                          statement="D_t <= sum_{s<t} gamma_s prod_{s<u<t} (1 + alpha_u) (exact solution of the recurrence)",
                          premise="as Thm1", note=""),
    "Thm1_mult": dict(paper="Thm. 1 sharp, with row multiplicities (theory.bounds.thm1_bound_sharp_multiplicity)",
                      kind="le", unit="step",
                      statement="D_t <= sum_{s<t} gamma_s prod_{s<u<t} (1 + alpha_u), alpha_u = kappa eta_u m_u/(2 tau^2 B), "
                                "gamma_s = kappa eta_s sqrt(q_s) Delta'/(tau B) (realised multiplicities)",
                      premise="Cor. 3 event and bounded logits at every step so far (duplicates allowed)", note=""),
    "Thm1_gap": dict(paper="Thm. 1 with the measured Lem. 8 term (A)", kind="le", unit="step",
                     statement="D_t <= recurrence (1 + eta_s kappa m_s/(2 tau^2 B)) D_s + eta_s ||G^CL(S^CL) - "
                               "G^NSCL(S^CL)||_F (measured injection, no Delta; realised row multiplicity m_s)",
                     premise="none (deterministic; the Lipschitz step of Lem. 2 with the row multiplicity)", note=""),
    "Thm2": dict(paper="Thm. 2", kind="le", unit="-", statement="parameter drift bound", premise="-", note=_NA_SIGMA),
    "Cor1": dict(paper="Cor. 1", kind="cert", unit="eval point",
                 statement="CKA_t >= (1 - rho)/(1 + rho), rho = Thm1 bound / ||K^CL||_F", premise="as Thm1", note=""),
    "Cor1_sharp": dict(paper="Cor. 1 (tight cosine bound)", kind="cert", unit="eval point",
                       statement="CKA_t >= sqrt(1 - rho^2), rho = Thm1 bound / ||K^CL||_F", premise="as Thm1", note=""),
    "Cor1_mult": dict(paper="Cor. 1 (tight cosine bound) with the Thm1_mult drift bound", kind="cert", unit="eval point",
                      statement="CKA_t >= sqrt(1 - rho^2), rho = Thm1_mult bound / ||K^CL||_F", premise="as Thm1_mult",
                      note=""),
    "Cor1_meas": dict(paper="Cor. 1 with measured drift", kind="cert", unit="eval point",
                      statement="CKA_t >= (1 - rho)/(1 + rho), rho = ||S^CL - S^NSCL||_F / ||K^CL||_F (measured)",
                      premise="none (deterministic)", note="isolates the last step of Cor. 1 from the drift bound"),
    "Cor1_meas_sharp": dict(paper="Cor. 1, measured drift, tight", kind="cert", unit="eval point",
                            statement="CKA_t >= sqrt(1 - rho^2), rho measured", premise="none", note=""),
    "Cor1_exact": dict(paper="Cor. 1 proof, exact rho_T", kind="cert", unit="eval point",
                       statement="CKA_t >= sqrt(1 - rho_T^2), rho_T = ||K^CL - K^NSCL||_F / ||K^CL||_F", premise="none",
                       note=""),
    "Cor2": dict(paper="Cor. 2", kind="cert", unit="eval point",
                 statement="RSA_t >= (1 - r)/(1 + r), r = Thm1 bound / (sqrt(M) sigma_D)", premise="as Thm1", note=""),
    "Cor2_sharp": dict(paper="Cor. 2 (tight cosine bound)", kind="cert", unit="eval point",
                       statement="RSA_t >= sqrt(1 - r^2), r = Thm1 bound / (sqrt(M) sigma_D) (/sqrt 2 for symmetric Sigma)",
                       premise="as Thm1", note=""),
    "Cor2_mult": dict(paper="Cor. 2 (tight cosine bound) with the Thm1_mult drift bound", kind="cert", unit="eval point",
                      statement="RSA_t >= sqrt(1 - r^2), r = Thm1_mult bound / (sqrt(M) sigma_D) (/sqrt 2 for symmetric Sigma)",
                      premise="as Thm1_mult", note=""),
    "Cor2_meas": dict(paper="Cor. 2 with measured drift", kind="cert", unit="eval point",
                      statement="RSA_t >= (1 - r)/(1 + r), r = ||S^CL - S^NSCL||_F / (sqrt(M) sigma_D)", premise="none",
                      note=""),
    "Cor2_meas_sharp": dict(paper="Cor. 2, measured drift, tight", kind="cert", unit="eval point",
                            statement="RSA_t >= sqrt(1 - r^2), r measured", premise="none", note=""),
    "Cor2_exact": dict(paper="Cor. 2 proof, exact r", kind="cert", unit="eval point",
                       statement="RSA_t >= sqrt(1 - r^2), r = ||C(b - a)||_2 / ||C a||_2", premise="none", note=""),
}
CLAIM_ORDER = list(CLAIMS)
# per-step claims whose ratio goes into steps.csv
_STEP_CLAIMS = ("L1", "L2", "L2_CL", "L2_jac", "L3", "L3_batch", "L3_nscl_display", "L4", "Cor3", "Cor3_excl", "Cor3_mass", "L6",
                "L6_l2", "L6_identity", "L8", "L8_A", "L8_mult", "Thm1_rec", "Thm1_rec_mult")


@dataclass
class ClaimEval:
    """One claim at one step. Shape: lhs, rhs, ratio (n,) float64; premise (n,) bool (True = premise held)."""

    lhs: Tensor
    rhs: Tensor
    ratio: Tensor
    premise: Tensor


def _t(x: Any) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64).reshape(-1)


def _ratio_le(lhs: Tensor, rhs: Tensor) -> Tensor:
    """lhs / rhs with 0/0 = 0, x/0 = inf (x > 0), x/inf = 0."""
    lhs, rhs = _t(lhs), _t(rhs)
    safe = torch.where(rhs > 0, rhs, torch.ones_like(rhs))
    r = torch.where(rhs > 0, lhs / safe, torch.where(lhs > 0, torch.full_like(lhs, math.inf), torch.zeros_like(lhs)))
    return torch.where(torch.isinf(rhs) & (rhs > 0), torch.zeros_like(r), r)


def _eval(lhs: Any, rhs: Any, premise: Any = None, ratio: Any = None) -> ClaimEval:
    lhs, rhs = _t(lhs), _t(rhs)
    if rhs.numel() == 1 and lhs.numel() > 1:
        rhs = rhs.expand_as(lhs)
    r = _ratio_le(lhs, rhs) if ratio is None else _t(ratio)
    if premise is None:
        p = torch.ones(lhs.shape, dtype=torch.bool)
    else:
        p = torch.as_tensor(premise, dtype=torch.bool).reshape(-1)
        if p.numel() == 1 and lhs.numel() > 1:
            p = p.expand(lhs.shape)
    return ClaimEval(lhs, rhs, r, p)


def _fro(x: Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


# ----------------------------------------------------------------------------------------------------------
# the per-step claims


def step_claims(st, consts: dict, C: int, drift_t: float, drift_next: float, eta: float) -> tuple[dict, dict]:
    """All per-step claims of one coupled step (``st``: engine.StepTensors, before the update).

    consts: engine.theory_constants (Delta, eps, lipschitz, inject, frac_bound). Returns (claims, info):
    claims = {id: ClaimEval}; info = scalars for steps.csv (realised Delta, premise flags, term (A), ...).
    Per-anchor claims have one instance per anchor (anchors sharing a Sigma row share its softmax).
    Extra evaluations: G^NSCL at Sigma^CL and G^CL at Sigma^NSCL (one fused softmax each), and the class masses
    from the CL softmax of the update (theory.losses.class_split_from_softmax: no further exp pass; a direct
    logsumexp if a class mass underflows), all on the (R, K) anchor rows of the block.
    """
    g = st.layout
    B, tau = g.B, st.tau
    Lip, Delta, inj = consts["lipschitz"], consts["Delta"], consts["inject"]
    ri = g.row_inv  # anchor -> its row
    ar = torch.arange(B)
    pos_c = g.col_inv[B:]  # column of each anchor's positive
    n_neg_a = (2 * (B - g.same_count)).to(torch.float64)  # keys of another label (NSCL denominator size)
    n_pos_a = (2 * B - 1) - n_neg_a  # same-label keys in the CL denominator (positive included, anchor not)
    has_neg = n_neg_a > 0
    rows_of = lambda v: torch.zeros(g.R, dtype=v.dtype).scatter_(0, ri, v)  # noqa: E731 (anchor -> row values)

    # extra gradient evaluations (same library functions, other Sigma): G^NSCL at Sigma^CL and G^CL at Sigma^NSCL
    # by the functions of the update (so G(S) - G(S') is exactly 0 where S = S', e.g. at step 0)
    q_at_cl = contrastive_softmax_prepared(g.logit_rows(st.blk_cl), g.bprep_ns, tau).p
    U_ns_at_cl = g.rows_to_block(contrastive_grad_from_softmax(q_at_cl, g.bprep_ns, tau, g.row_scale))
    U_cl_at_ns = g.rows_to_block(contrastive_grad_prepared(g.logit_rows(st.blk_ns), g.bprep_cl, tau, g.row_scale).grad)
    # class masses of the CL softmax at Sigma^CL (Lem. 4, Cor. 3, Lem. 6) from p itself: no further exp pass
    same_f = 1.0 - g.other_label_mask  # same-label columns (p is 0 where no key of D_s sits)
    split = class_split_from_softmax(st.p_cl, softmax_lse(st.sm_cl), None, None, same_f, g.other_label_mask,
                                     rows_of(n_pos_a), rows_of(n_neg_a), need_q=False)
    if split is None:  # a class group's softmax mass underflowed (logit range > ~700 tau): direct computation
        ms = softmax_mass_split(st.sim_cl, g.den_cl, g.same_class, tau)  # per anchor
        ms = ms._replace(n_pos=n_pos_a.long(), n_neg=n_neg_a.long())
    else:
        ms = type(split.mass)(*(f[ri] for f in split.mass))  # rows -> anchors
    claims: dict[str, ClaimEval] = {}

    # Lem. 1 and Lem. 3: per-anchor Sigma-space gradients g_s = (p_r - e_pos(s))/tau on row r (merged keys);
    # symmetric: ||g + g^T - Diag g||^2 = 2 ||g||^2 - g_ii^2 (g supported on row i); a fixed diagonal
    # (diag="fixed") is not a coordinate: g_ii is dropped (ordered: ||g||^2 - g_ii^2; symmetric: twice that)
    own_a = g.own_col[ri]

    def per_anchor_sq(p: Tensor, valid: Tensor) -> Tensor:
        Pa = p.index_select(0, ri)
        Pa[ar[valid], pos_c[valid]] -= 1.0
        sq = Pa.square().sum(1)
        d = Pa[ar, own_a]
        if g.diag_fixed:
            sq = sq - d * d
            if g.symmetric:
                sq = 2.0 * sq
        elif g.symmetric:
            sq = 2.0 * sq - d * d
        return sq / (tau * tau)

    sq_cl = per_anchor_sq(st.p_cl, torch.ones(B, dtype=torch.bool))
    sq_ns = per_anchor_sq(st.q_ns, has_neg)
    G2 = torch.stack([st.U_cl.square().sum(), st.U_ns.square().sum()])
    claims["L1"] = _eval(G2, torch.stack([sq_cl.sum(), sq_ns.sum()]) / (B * B))
    claims["L3"] = _eval(torch.cat([sq_cl, sq_ns]).sqrt(), math.sqrt(2.0) / tau)
    claims["L3_batch"] = _eval(G2.sqrt(), math.sqrt(2.0 / B) / tau)

    # Lem. 2: per-anchor Jacobian of the Sigma-space softmax pi (keys on one column merged: the row softmax).
    # ||Diag pi - pi pi^T||_inf = max_r 2 pi_r (1 - pi_r) = 2 m (1 - m) with m = max_r pi_r (every other
    # pi_r <= 1 - m, and x (1 - x) is symmetric about 1/2)
    jac = torch.cat([jacobian_inf_norm(st.p_cl.amax(1)[:, None])[ri], jacobian_inf_norm(st.q_ns.amax(1)[:, None])[ri]])
    claims["L2_jac"] = _eval(jac, 0.5)

    # Lem. 2 Lipschitz claim at the actual pair, on the entries each map reads (its softmax inputs)
    d2 = st.diff.square()
    if not g.symmetric:
        # NSCL reads (r, c) iff the labels of row item r and column item c differ; CL reads every block entry
        # except an anchor row's own column when no other key sits there (only the self-masked key)
        d_ns = math.sqrt(float((d2 * g.other_label_mask).sum()))
        d2.view(-1).index_fill_(0, g.self_only_entries, 0.0)
        d_cl = math.sqrt(float(d2.sum()))
    else:
        # one scatter of  den_NSCL + w den_CL  with w = 4B + 1 > any NSCL count per entry
        # (<= 2B per anchor row, doubled by the symmetrisation); NSCL den is a subset of the CL den
        w = 4 * B + 1
        marks = torch.where(g.den_cl, torch.where(g.den_ns, w + 1.0, float(w)), 0.0).to(torch.float64)
        cnt = g.sigma_grad(marks) * B
        act_cl = cnt > 0.5
        act_ns = torch.remainder(torch.round(cnt), w) > 0.5
        d_ns = math.sqrt(float((d2 * act_ns).sum()))
        d_cl = math.sqrt(float((d2 * act_cl).sum()))
    claims["L2"] = _eval(_fro(U_ns_at_cl - st.U_ns), Lip * d_ns)
    claims["L2_CL"] = _eval(_fro(st.U_cl - U_cl_at_ns), Lip * d_cl)

    # Lem. 4 / Cor. 3: masses at Sigma^CL; largest |logit| in each CL denominator (the row without the lone
    # own entry; 0 for an empty one)
    absl = g.logit_rows(st.blk_cl).abs()
    absl.view(-1).index_fill_(0, g.self_only_entries, 0.0)
    abs_logit = absl.amax(1)[ri]
    in_range = abs_logit <= 1.0
    n_pos, n_neg = n_pos_a, n_neg_a
    inv = 1.0 / tau
    zero = torch.zeros(B, dtype=torch.float64)
    subs = []
    for lz, n in ((ms.log_z_pos, n_pos), (ms.log_z_neg, n_neg)):
        ok = n > 0
        ln = torch.log(n.clamp(min=1))
        subs.append(torch.where(ok, torch.exp(lz - ln - inv), zero))  # Z_S / (|S| e^{1/tau})
        subs.append(torch.where(ok, torch.exp(ln - inv - lz), zero))  # |S| e^{-1/tau} / Z_S
    lz_all = torch.logaddexp(ms.log_z_pos, ms.log_z_neg)
    ln_all = torch.log((n_pos + n_neg).clamp(min=1))
    subs += [torch.exp(lz_all - ln_all - inv), torch.exp(ln_all - inv - lz_all)]
    both = (n_pos > 0) & (n_neg > 0)
    lr = torch.where(both, ms.log_z_pos - ms.log_z_neg, zero)  # log Z_pos / Z_neg
    lcount = torch.where(both, torch.log(n_pos.clamp(min=1)) - torch.log(n_neg.clamp(min=1)), zero)
    subs.append(torch.where(both, torch.exp(lr - 2 * inv - lcount), zero))
    subs.append(torch.where(both, torch.exp(lcount - 2 * inv - lr), zero))
    z_ratio = torch.where(n_neg > 0, torch.exp(lr), torch.full_like(lr, math.inf))
    claims["L4"] = _eval(z_ratio, exp_or_inf(2 * inv) * n_pos / n_neg.clamp(min=1), in_range,
                         ratio=torch.stack(subs).amax(0))
    same_b = g.same_count.to(torch.float64)  # n_same, own slot included
    frac_in = (B - same_b) / B
    frac_ex = (B - same_b) / (B - 1)
    fb = consts["frac_bound"]
    event = frac_in >= fb
    claims["Cor3"] = _eval(frac_in, fb, ratio=_ratio_le(torch.full_like(frac_in, fb), frac_in))
    claims["Cor3_excl"] = _eval(frac_ex, fb, ratio=_ratio_le(torch.full_like(frac_ex, fb), frac_ex))
    prem = event & in_range
    claims["Cor3_mass"] = _eval(z_ratio, Delta / 2.0, prem)

    # Lem. 6 at Sigma^CL: p (CL softmax) and q (NSCL softmax at the same Sigma^CL), per key. On a column
    # holding m keys of D_s the row softmaxes carry m times the per-key value (q: m = keys_per_col on other-label
    # columns; p: also on same-label ones, the row's own column holding keys_per_col - 1), so
    # ||p - q||_1 = sum_c |p_c - q_c| and ||p - q||_2^2 = sum_c (p_c - q_c)^2 / m_c.
    dpq = st.p_cl - q_at_cl
    l1 = dpq.abs().sum(1)
    dd = dpq.square_().mul_((1.0 / g.keys_per_col.to(torch.float64))[None, :])
    own_idx = torch.arange(g.R) * g.K + g.own_col
    m_own = g.keys_per_col[g.own_col].to(torch.float64)
    dd.view(-1)[own_idx] *= m_own / (m_own - 1.0).clamp(min=1.0)  # own column: m = cnt - 1 (0 entries if cnt = 1)
    l2 = dd.sum(1).sqrt()
    l1, l2 = l1[ri], l2[ri]
    claims["L6"] = _eval(l1, Delta, prem & has_neg)
    claims["L6_l2"] = _eval(l2, Delta, prem & has_neg)
    claims["L6_identity"] = _eval(l1, 2.0 * ms.alpha, has_neg)
    # Lem. 3 NSCL display at Sigma^NSCL, per key (not merged: the display is about the logit gradient):
    # sum over negative keys of q_k^2 = sum_c q_c^2 / cnt_c; the positive key adds (-1/tau)^2
    s2 = st.q_ns.square().mul_((1.0 / g.keys_per_col.to(torch.float64))[None, :]).sum(1)[ri] / (tau * tau)
    claims["L3_nscl_display"] = _eval(s2 + has_neg.to(torch.float64) / (tau * tau), s2, has_neg)

    # Lem. 8 and the Thm. 1 recurrence (step-level premise)
    prem_step = bool(prem.all())
    gap_A = _fro(st.U_cl - U_ns_at_cl)
    grad_gap = _fro(st.U_cl - st.U_ns)
    # the paper's constants need every anchor on its own row and ordered Sigma (Lem. 1, Lem. 2's block Hessian);
    # the multiplicity forms (theory.bounds.thm1_unrolled_multiplicity) hold with duplicated rows
    n_r = g.n_r.to(torch.float64)
    m_rows, q_rows = float(n_r.max()), float(n_r.square().sum())
    kappa = 2.0 if g.symmetric else 1.0
    prem_paper = prem_step and m_rows == 1.0 and not g.symmetric
    claims["L8"] = _eval(grad_gap, inj + Lip * drift_t, prem_paper)
    claims["L8_A"] = _eval(gap_A, inj, prem_paper)
    claims["Thm1_rec"] = _eval(drift_next, (1.0 + eta * Lip) * drift_t + eta * inj, prem_paper)
    d_sharp = lem6_l2_sharp(Delta) if math.isfinite(Delta) else math.inf
    alpha_m = kappa * m_rows / (2.0 * tau * tau * B)
    gamma_m = kappa * math.sqrt(q_rows) * d_sharp / (tau * B)
    claims["L8_mult"] = _eval(grad_gap, gamma_m + alpha_m * drift_t, prem_step)
    claims["Thm1_rec_mult"] = _eval(drift_next, (1.0 + eta * alpha_m) * drift_t + eta * gamma_m, prem_step)

    ratio_pn = n_pos / n_neg.clamp(min=1)
    info = {
        "gap_A": gap_A,
        "premise_step": prem_step,
        "premise_step_paper": prem_paper,
        "mult_alpha": alpha_m,  # per unit eta: the Thm1_mult recurrence is D <- (1 + eta alpha) D + eta gamma
        "mult_gamma": gamma_m,
        "row": {
            "grad_gap": grad_gap,
            "gap_A": gap_A,
            "delta_realised": float(2.0 * exp_or_inf(2 * inv) * ratio_pn.max()) if bool(has_neg.all()) else math.inf,
            "alpha_max": float(ms.alpha.max()),
            "event_ok": bool(event.all()),
            "logits_ok_frac": float(in_range.double().mean()),
            "max_abs_logit": float(abs_logit.max()),
            "dup_anchor_rows": B - g.R,
            "row_mult_max": int(m_rows),
            "row_mult_sq": int(q_rows),
            "n_invalid_nscl": int((~has_neg).sum()),
        },
    }
    return claims, info


# ----------------------------------------------------------------------------------------------------------
# counterexample snapshots


def snapshot(st, step: int, eta: float, drift_t: float, drift_next: float, batch, consts: dict, C: int) -> dict:
    """Everything needed to recompute one step's claims (numpy arrays; saved as .npz)."""
    g = st.layout
    return {
        "step": step, "eta": eta, "tau": st.tau, "B": g.B, "M": g.M, "C": C, "symmetric": g.symmetric,
        "samples": batch.samples.numpy(), "anchor_slot": batch.anchor_slot.numpy(), "pos_slot": batch.pos_slot.numpy(),
        "rows": g.rows.numpy(), "cols": g.cols.numpy(),
        "anchor_labels": g.anchor_labels.numpy(), "key_labels": g.key_labels.numpy(),
        "block_rows": g.block_rows.numpy(), "block_cols": g.unique_cols.numpy(),
        "sigma_cl_block": st.blk_cl.numpy().copy(), "sigma_ns_block": st.blk_ns.numpy().copy(),
        "drift_t": drift_t, "drift_next": drift_next,
        "Delta": consts["Delta"], "eps": consts["eps"], "lipschitz": consts["lipschitz"],
        "inject": consts["inject"], "frac_bound": consts["frac_bound"],
    }


def reproduce_counterexample(path: str | Path) -> dict[str, float]:
    """Recompute the claims of a saved step from its .npz; returns {claim id: max ratio over instances}.

    Sigma is rebuilt on the local item set (the block's columns), so only the saved block is needed.
    """
    z = np.load(path, allow_pickle=False)
    block_cols = torch.as_tensor(z["block_cols"])
    K = int(block_cols.shape[0])
    loc = lambda items: torch.searchsorted(block_cols, torch.as_tensor(items))  # noqa: E731
    S_cl = torch.zeros(K, K, dtype=torch.float64)
    S_ns = torch.zeros(K, K, dtype=torch.float64)
    br = loc(z["block_rows"])
    S_cl[br] = torch.as_tensor(z["sigma_cl_block"])
    S_ns[br] = torch.as_tensor(z["sigma_ns_block"])
    geom = build_layout(loc(z["rows"]), loc(z["cols"]), torch.as_tensor(z["anchor_labels"]),
                          torch.as_tensor(z["key_labels"]), K, bool(z["symmetric"]))
    st = compute_step(S_cl, S_ns, geom, float(z["tau"]))
    consts = {k: float(z[k]) for k in ("Delta", "eps", "lipschitz", "inject", "frac_bound")}
    claims, _ = step_claims(st, consts, int(z["C"]), float(z["drift_t"]), float(z["drift_next"]), float(z["eta"]))
    out = {}
    for cid, ev in claims.items():
        out[cid] = float(ev.ratio.max())
        if CLAIMS[cid]["kind"] == "eq":
            out[cid + "_min"] = float(ev.ratio.min())
    return out


