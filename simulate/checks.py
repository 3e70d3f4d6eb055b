"""Per-step checks of the paper's lemmas on the coupled Sigma-space run (App. D, Sec. 4.1).

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

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

import runio

from theory.bounds import (
    cka_certificate_sharp,
    cor1_cka_bound,
    cor2_rsa_bound,
    cos_lower_bound_sharp,
    rsa_certificate_sharp,
)
from theory.losses import (
    class_split_from_softmax,
    contrastive_grad_from_softmax,
    contrastive_grad_prepared,
    contrastive_softmax_prepared,
    jacobian_inf_norm,
    softmax_lse,
    softmax_mass_split,
)

__all__ = [
    "RTOL",
    "EQ_RTOL",
    "CLAIMS",
    "CLAIM_ORDER",
    "ClaimEval",
    "ClaimTracker",
    "CheckSuite",
    "step_claims",
    "snapshot",
    "reproduce_counterexample",
    "certificates",
    "upper_std",
    "format_verdict_table",
    "compare_checks",
    "load_checks",
]

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
               premise="Cor. 3 event and logits in [-1, 1] for every anchor of the step", note=""),
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
    "Thm1": dict(paper="Thm. 1, Eq. 2", kind="le", unit="step",
                 statement="D_t <= exp(S_t/(2 tau^2 B)) S_t Delta/(tau sqrt B), S_t = sum_{s<t} eta_s (closed form)",
                 premise="Cor. 3 event and bounded logits at every step so far", note=""),
    "Thm1_unrolled": dict(paper="Thm. 1 proof (Gronwall product)", kind="le", unit="step",
                          statement="D_t <= sum_{s<t} gamma_s prod_{s<u<t} (1 + alpha_u) (exact solution of the recurrence)",
                          premise="as Thm1", note=""),
    "Thm1_gap": dict(paper="Thm. 1 with the measured Lem. 8 term (A)", kind="le", unit="step",
                     statement="D_t <= recurrence with injection eta_s ||G^CL(S^CL) - G^NSCL(S^CL)||_F (measured, no Delta)",
                     premise="none (deterministic; needs only the Lipschitz step)", note=""),
    "Thm2": dict(paper="Thm. 2", kind="le", unit="-", statement="parameter drift bound", premise="-", note=_NA_SIGMA),
    "Cor1": dict(paper="Cor. 1", kind="cert", unit="eval point",
                 statement="CKA_t >= (1 - rho)/(1 + rho), rho = Thm1 bound / ||K^CL||_F", premise="as Thm1", note=""),
    "Cor1_sharp": dict(paper="Cor. 1 (tight cosine bound)", kind="cert", unit="eval point",
                       statement="CKA_t >= sqrt(1 - rho^2), rho = Thm1 bound / ||K^CL||_F", premise="as Thm1", note=""),
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
                "L6_l2", "L6_identity", "L8", "L8_A", "Thm1_rec")


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
    g = st.geom
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
    same_f = 1.0 - g.other_blk_f  # same-label columns (p is 0 where no key of D_s sits)
    split = class_split_from_softmax(st.p_cl, softmax_lse(st.sm_cl), None, None, same_f, g.other_blk_f,
                                     rows_of(n_pos_a), rows_of(n_neg_a), need_q=False)
    if split is None:  # a class group's softmax mass underflowed (logit range > ~700 tau): direct computation
        ms = softmax_mass_split(st.sim_cl, g.den_cl, g.same_class, tau)  # per anchor
        ms = ms._replace(n_pos=n_pos_a.long(), n_neg=n_neg_a.long())
    else:
        ms = type(split.mass)(*(f[ri] for f in split.mass))  # rows -> anchors
    claims: dict[str, ClaimEval] = {}

    # Lem. 1 and Lem. 3: per-anchor Sigma-space gradients g_s = (p_r - e_pos(s))/tau on row r (merged keys);
    # symmetric: ||g + g^T - Diag g||^2 = 2 ||g||^2 - g_ii^2 (g supported on row i)
    own_a = g.own_c[ri]

    def per_anchor_sq(p: Tensor, valid: Tensor) -> Tensor:
        Pa = p.index_select(0, ri)
        Pa[ar[valid], pos_c[valid]] -= 1.0
        sq = Pa.square().sum(1)
        if g.symmetric:
            d = Pa[ar, own_a]
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
        d_ns = math.sqrt(float((d2 * g.other_blk_f).sum()))
        d2.view(-1).index_fill_(0, g.lone_own, 0.0)
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
    absl.view(-1).index_fill_(0, g.lone_own, 0.0)
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
    claims["L4"] = _eval(z_ratio, math.exp(2 * inv) * n_pos / n_neg.clamp(min=1), in_range,
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
    # holding m keys of D_s the row softmaxes carry m times the per-key value (q: m = cnt on other-label
    # columns; p: also on same-label ones, the row's own column holding cnt - 1), so
    # ||p - q||_1 = sum_c |p_c - q_c| and ||p - q||_2^2 = sum_c (p_c - q_c)^2 / m_c.
    dpq = st.p_cl - q_at_cl
    l1 = dpq.abs().sum(1)
    dd = dpq.square_().mul_((1.0 / g.cnt.to(torch.float64))[None, :])
    own_idx = torch.arange(g.R) * g.K + g.own_c
    m_own = g.cnt[g.own_c].to(torch.float64)
    dd.view(-1)[own_idx] *= m_own / (m_own - 1.0).clamp(min=1.0)  # own column: m = cnt - 1 (0 entries if cnt = 1)
    l2 = dd.sum(1).sqrt()
    l1, l2 = l1[ri], l2[ri]
    claims["L6"] = _eval(l1, Delta, prem & has_neg)
    claims["L6_l2"] = _eval(l2, Delta, prem & has_neg)
    claims["L6_identity"] = _eval(l1, 2.0 * ms.alpha, has_neg)
    # Lem. 3 NSCL display at Sigma^NSCL, per key (not merged: the display is about the logit gradient):
    # sum over negative keys of q_k^2 = sum_c q_c^2 / cnt_c; the positive key adds (-1/tau)^2
    s2 = st.q_ns.square().mul_((1.0 / g.cnt.to(torch.float64))[None, :]).sum(1)[ri] / (tau * tau)
    claims["L3_nscl_display"] = _eval(s2 + has_neg.to(torch.float64) / (tau * tau), s2, has_neg)

    # Lem. 8 and the Thm. 1 recurrence (step-level premise)
    prem_step = bool(prem.all())
    gap_A = _fro(st.U_cl - U_ns_at_cl)
    grad_gap = _fro(st.U_cl - st.U_ns)
    claims["L8"] = _eval(grad_gap, inj + Lip * drift_t, prem_step)
    claims["L8_A"] = _eval(gap_A, inj, prem_step)
    claims["Thm1_rec"] = _eval(drift_next, (1.0 + eta * Lip) * drift_t + eta * inj, prem_step)

    ratio_pn = n_pos / n_neg.clamp(min=1)
    info = {
        "gap_A": gap_A,
        "premise_step": prem_step,
        "row": {
            "grad_gap": grad_gap,
            "gap_A": gap_A,
            "delta_realised": float(2.0 * math.exp(2 * inv) * ratio_pn.max()) if bool(has_neg.all()) else math.inf,
            "alpha_max": float(ms.alpha.max()),
            "event_ok": bool(event.all()),
            "logits_ok_frac": float(in_range.double().mean()),
            "max_abs_logit": float(abs_logit.max()),
            "dup_anchor_rows": B - g.R,
            "n_invalid_nscl": int((~has_neg).sum()),
        },
    }
    return claims, info


# ----------------------------------------------------------------------------------------------------------
# counterexample snapshots


def snapshot(st, step: int, eta: float, drift_t: float, drift_next: float, batch, consts: dict, C: int) -> dict:
    """Everything needed to recompute one step's claims (numpy arrays; saved as .npz)."""
    g = st.geom
    return {
        "step": step, "eta": eta, "tau": st.tau, "B": g.B, "M": g.M, "C": C, "symmetric": g.symmetric,
        "samples": batch.samples.numpy(), "anchor_slot": batch.anchor_slot.numpy(), "pos_slot": batch.pos_slot.numpy(),
        "rows": g.rows.numpy(), "cols": g.cols.numpy(),
        "anchor_labels": g.anchor_labels.numpy(), "key_labels": g.key_labels.numpy(),
        "block_rows": g.block_rows.numpy(), "block_cols": g.uc.numpy(),
        "sigma_cl_block": st.blk_cl.numpy().copy(), "sigma_ns_block": st.blk_ns.numpy().copy(),
        "drift_t": drift_t, "drift_next": drift_next,
        "Delta": consts["Delta"], "eps": consts["eps"], "lipschitz": consts["lipschitz"],
        "inject": consts["inject"], "frac_bound": consts["frac_bound"],
    }


def reproduce_counterexample(path: str | Path) -> dict[str, float]:
    """Recompute the claims of a saved step from its .npz; returns {claim id: max ratio over instances}.

    Sigma is rebuilt on the local item set (the block's columns), so only the saved block is needed.
    """
    from .engine import build_geometry, compute_step

    z = np.load(path, allow_pickle=False)
    uc = torch.as_tensor(z["block_cols"])
    K = int(uc.shape[0])
    loc = lambda items: torch.searchsorted(uc, torch.as_tensor(items))  # noqa: E731
    S_cl = torch.zeros(K, K, dtype=torch.float64)
    S_ns = torch.zeros(K, K, dtype=torch.float64)
    br = loc(z["block_rows"])
    S_cl[br] = torch.as_tensor(z["sigma_cl_block"])
    S_ns[br] = torch.as_tensor(z["sigma_ns_block"])
    geom = build_geometry(loc(z["rows"]), loc(z["cols"]), torch.as_tensor(z["anchor_labels"]),
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


# ----------------------------------------------------------------------------------------------------------
# accumulation


class ClaimTracker:
    """Counts for one claim over the run; keeps the first violation (file) and the worst (in memory)."""

    def __init__(self, cid: str):
        self.cid = cid
        self.kind = CLAIMS[cid]["kind"]
        self.evaluated = 0
        self.violations = 0
        self.premise_failed = 0
        self.violations_outside = 0
        self.max_ratio = -math.inf
        self.min_ratio = math.inf
        self.step_of_max: int | None = None
        self.lhs_at_max: float | None = None
        self.rhs_at_max: float | None = None
        self.max_ratio_outside = -math.inf
        self.first_violation_step: int | None = None
        self.first_file: str | None = None
        self.worst_badness = -math.inf
        self.worst: dict | None = None
        self.last: dict | None = None

    def _viol(self, r: Tensor) -> Tensor:
        if self.kind == "eq":
            return (r - 1.0).abs() > EQ_RTOL
        return r > 1.0 + RTOL

    def record(self, step: int, ev: ClaimEval, payload: Callable[[], dict] | None, out_dir: Path | None) -> float | None:
        """Add one step's instances; return the max ratio over premise-held instances (None if none)."""
        held = ev.premise
        n = int(held.numel())
        nh = int(held.sum())
        self.evaluated += nh
        self.premise_failed += n - nh
        r = ev.ratio
        viol = self._viol(r)
        self.last = {"step": step, "lhs": float(ev.lhs.max()), "rhs": float(ev.rhs.max()), "ratio": float(r.max())}
        if nh < n:
            vo = viol & ~held
            self.violations_outside += int(vo.sum())
            self.max_ratio_outside = max(self.max_ratio_outside, float(r[~held].max()))
        if nh == 0:
            return None
        rh = torch.where(held, r, torch.full_like(r, -math.inf))
        i = int(rh.argmax())
        rmax = float(rh[i])
        if rmax > self.max_ratio:
            self.max_ratio, self.step_of_max = rmax, step
            self.lhs_at_max, self.rhs_at_max = float(ev.lhs[i]), float(ev.rhs[i])
        if self.kind == "eq":
            self.min_ratio = min(self.min_ratio, float(torch.where(held, r, torch.full_like(r, math.inf)).min()))
        vh = viol & held
        nv = int(vh.sum())
        if nv:
            self.violations += nv
            bad = (r - 1.0).abs() if self.kind == "eq" else r
            bad = torch.where(vh, bad, torch.full_like(bad, -math.inf))
            j = int(bad.argmax())
            badness = float(bad[j])
            is_first = self.first_violation_step is None
            is_worse = badness > self.worst_badness
            if is_first:
                self.first_violation_step = step
            if payload is not None and (is_first or is_worse):
                snap = payload()
                snap.update({"claim": self.cid, "ratio": float(r[j]), "lhs": float(ev.lhs[j]),
                             "rhs": float(ev.rhs[j]), "instance": j})
                if is_first and out_dir is not None:
                    self.first_file = _save_npz(out_dir, f"{self.cid}_first.npz", snap)
                if is_worse:
                    self.worst = snap
            self.worst_badness = max(self.worst_badness, badness)
        return rmax

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, d: dict) -> None:
        self.__dict__.update(d)


def _save_npz(out_dir: Path, name: str, snap: dict) -> str:
    d = out_dir / "counterexamples"
    d.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in snap.items()}
    runio.atomic_write(d / name, lambda f: np.savez_compressed(f, **arrays))
    return str(Path("counterexamples") / name)


class CheckSuite:
    """All claim trackers of a run; ``evaluate_step`` is called once per step by the engine."""

    def __init__(self, tau: float, B: int, C: int, T: int, delta: float, consts: dict, options: dict,
                 out_dir: Path | None, symmetric: bool):
        self.tau, self.B, self.C, self.T, self.delta = tau, B, C, T, delta
        self.consts = consts
        self.options = options
        self.out_dir = out_dir
        self.symmetric = symmetric
        self.trackers = {cid: ClaimTracker(cid) for cid in CLAIM_ORDER}
        self.lemma5: dict | None = None
        self.stats = {"steps": 0, "steps_with_dup_rows": 0, "steps_event_false": 0, "steps_logits_out": 0,
                      "anchors_invalid_nscl": 0, "mean_neg_frac": 0.0}

    def evaluate_step(self, st, step: int, eta: float, drift_t: float, drift_next: float, batch,
                      item_labels: Tensor) -> dict:
        claims, info = step_claims(st, self.consts, self.C, drift_t, drift_next, eta)
        payload = lambda: snapshot(st, step, eta, drift_t, drift_next, batch, self.consts, self.C)  # noqa: E731
        row = {}
        for cid in _STEP_CLAIMS:
            r = self.trackers[cid].record(step, claims[cid], payload, self.out_dir)
            row[f"ratio_{cid}"] = r
        s = self.stats
        s["steps"] += 1
        s["steps_with_dup_rows"] += int(info["row"]["dup_anchor_rows"] > 0)
        s["steps_event_false"] += int(not info["row"]["event_ok"])
        s["steps_logits_out"] += int(info["row"]["logits_ok_frac"] < 1.0)
        s["anchors_invalid_nscl"] += info["row"]["n_invalid_nscl"]
        s["mean_neg_frac"] += (float(claims["Cor3"].lhs.mean()) - s["mean_neg_frac"]) / s["steps"]
        info["row"].update(row)
        return info

    def evaluate_trajectory(self, step: int, drift: float, closed: float, unrolled: float, gap_bound: float,
                            premise_all: bool) -> None:
        self.trackers["Thm1"].record(step, _eval(drift, closed, premise_all), None, None)
        self.trackers["Thm1_unrolled"].record(step, _eval(drift, unrolled, premise_all), None, None)
        self.trackers["Thm1_gap"].record(step, _eval(drift, gap_bound), None, None)

    def evaluate_eval_point(self, ev: dict, premise_all: bool) -> None:
        step = ev["step"]
        for metric, pre in (("cka", "Cor1"), ("rsa", "Cor2")):
            value = ev[metric]
            for suffix, key, prem in (("", "paper", premise_all), ("_sharp", "sharp", premise_all),
                                      ("_meas", "meas", True), ("_meas_sharp", "meas_sharp", True),
                                      ("_exact", "exact", True)):
                lb = ev[f"{metric}_lb_{key}"]
                self.trackers[pre + suffix].record(step, _eval(value, lb, prem, ratio=_deficit(value, lb)), None, None)

    def finalize_lemma5(self, n: int, replacement: bool, trials: int, seed: int) -> None:
        tr = self.trackers["L5"]
        if trials == 0:
            self.lemma5 = {"reason": "lemma5_trials = 0"}
            return
        try:
            from .montecarlo import lemma5_monte_carlo
        except ImportError as e:  # pragma: no cover - the module is part of the project
            self.lemma5 = {"reason": f"simulate.montecarlo unavailable: {e}"}
            return
        res = lemma5_monte_carlo(self.C, self.B, self.T, delta=self.delta, n_trials=trials,
                                 rng=np.random.default_rng(seed), anchor_slot="included",
                                 replacement=replacement, N=None if replacement else n)
        self.lemma5 = res
        # exact probability vs the stated bound, and the Monte-Carlo estimate's lower CI vs the bound
        tr.evaluated = trials
        tr.max_ratio = float(res["ratio_exact"])
        tr.lhs_at_max, tr.rhs_at_max = float(res["p_exists_exact"]), float(res["bound_paper"])
        tr.violations = int((not res["holds"]) or bool(res["violated"]))

    # -- checkpointing
    def state_dict(self) -> dict:
        return {"trackers": {k: v.state_dict() for k, v in self.trackers.items()}, "stats": dict(self.stats),
                "lemma5": self.lemma5}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d["trackers"].items():
            self.trackers[k].load_state_dict(v)
        self.stats = dict(d["stats"])
        self.lemma5 = d["lemma5"]

    # -- report
    def _dynamic_note(self, cid: str) -> str:
        s = self.stats
        if cid in ("L1", "L2", "L2_CL", "L3_batch"):
            return (f"{s['steps_with_dup_rows']}/{s['steps']} steps had anchors sharing a row"
                    + ("; symmetric Sigma couples every pair of anchor blocks" if self.symmetric else ""))
        if cid in ("L4", "L6", "L6_l2", "Cor3_mass", "L8", "L8_A", "Thm1_rec", "Thm1", "Thm1_unrolled", "Cor1",
                   "Cor1_sharp", "Cor2", "Cor2_sharp"):
            extra = "" if math.isfinite(self.consts["Delta"]) else "; Delta undefined (eps >= 1 - 1/C): vacuous"
            return (f"{s['steps_logits_out']}/{s['steps']} steps had logits outside [-1, 1]; "
                    f"{s['steps_event_false']}/{s['steps']} steps had the Cor. 3 event false" + extra)
        if cid in ("Cor3", "Cor3_excl"):
            return (f"mean negative fraction (own slot counted) {s['mean_neg_frac']:.4f} vs 1 - 1/C = "
                    f"{1 - 1 / self.C:.4f}; bound 1 - 1/C - eps = {self.consts['frac_bound']:.4f}")
        if cid == "L5":
            if self.lemma5 is None:
                return "not evaluated (run incomplete)"
            if "reason" in self.lemma5:
                return self.lemma5["reason"]
            r = self.lemma5
            return (f"exact P = {r['p_exists_exact']:.3g} vs bound T B e^(-2 B eps^2) = {r['bound_paper']:.3g}; "
                    f"Monte Carlo {r['n_trials']} trials p_hat = {r['p_hat']:.3g}; per-anchor exact "
                    f"{r['p_anchor_exact']:.3g} vs the lemma's i.i.d. model {r['p_anchor_paper_model']:.3g}")
        if cid == "L6_identity":
            return f"{s['anchors_invalid_nscl']} anchors without negatives skipped"
        return ""

    def to_json(self) -> dict:
        doc: dict[str, Any] = {}
        for cid in CLAIM_ORDER:
            tr = self.trackers[cid]
            spec = CLAIMS[cid]
            na = spec["note"] == _NA_SIGMA
            ev = tr.evaluated
            holds = None if (ev == 0 or na) else tr.violations == 0
            obj = {
                "claim": cid, "paper": spec["paper"], "statement": spec["statement"], "kind": spec["kind"],
                "unit": spec["unit"], "evaluated": ev, "violations": tr.violations,
                "max_ratio": tr.max_ratio if ev else None,
                "step_of_max": tr.step_of_max, "lhs_at_max": tr.lhs_at_max, "rhs_at_max": tr.rhs_at_max,
                "holds": holds, "premise": spec["premise"], "premise_failed": tr.premise_failed,
                "violations_outside_premise": tr.violations_outside,
                "max_ratio_outside_premise": tr.max_ratio_outside if tr.premise_failed else None,
                "first_violation_step": tr.first_violation_step,
                "options": self.options,
                "note": "; ".join(x for x in (spec["note"], self._dynamic_note(cid)) if x),
                "counterexample": {"first": tr.first_file, "worst": None},
                "tolerance": EQ_RTOL if spec["kind"] == "eq" else RTOL,
            }
            if spec["kind"] == "eq":
                obj["min_ratio"] = tr.min_ratio if ev else None
            if tr.last is not None and spec["kind"] in ("le", "cert") and cid.startswith(("Thm1", "Cor")):
                obj["final"] = tr.last
            if cid == "L5" and self.lemma5 is not None and "reason" not in self.lemma5:
                obj["lemma5"] = self.lemma5
            if na:
                obj["evaluated"] = 0
            if tr.worst is not None and self.out_dir is not None:
                obj["counterexample"]["worst"] = _save_npz(self.out_dir, f"{cid}_worst.npz", tr.worst)
            doc[cid] = obj
        doc["_meta"] = {"rtol": RTOL, "eq_rtol": EQ_RTOL, "constants": self.consts, "stats": self.stats,
                        "ratio_convention": "ratio <= 1 means the claim holds (see simulate/checks.py)"}
        return doc


def _deficit(value: float, lb: float) -> float:
    """(1 - value) / (1 - lb): <= 1 iff value >= lb (for lb < 1)."""
    if lb >= 1.0:
        return 0.0 if value >= 1.0 else math.inf
    return max(0.0, 1.0 - value) / (1.0 - lb) if value <= 1.0 else 0.0


# ----------------------------------------------------------------------------------------------------------
# N x N quantities at eval points


def upper_std(S: Tensor) -> float:
    """Population (ddof=0) std of the entries S_ij, i < j (sigma_D of Cor. 2 for RDM = 1 - S). Row blocks."""
    M = S.shape[0]
    blk = max(1, (1 << 22) // max(1, M))
    j = torch.arange(M)
    tot, cnt = 0.0, 0
    for r0 in range(0, M, blk):
        r1 = min(M, r0 + blk)
        mask = j[None, :] > torch.arange(r0, r1)[:, None]
        v = S[r0:r1][mask]
        tot += float(v.sum())
        cnt += int(v.numel())
    mean = tot / cnt
    ss = 0.0
    for r0 in range(0, M, blk):
        r1 = min(M, r0 + blk)
        mask = j[None, :] > torch.arange(r0, r1)[:, None]
        v = S[r0:r1][mask] - mean
        ss += float((v * v).sum())
    return math.sqrt(ss / cnt)


def _centred_fro(X: Tensor) -> float:
    return float(torch.linalg.matrix_norm(X - X.mean(1, keepdim=True) - X.mean(0, keepdim=True) + X.mean()))


def certificates(ev: dict, symmetric: bool, S1: Tensor, S2: Tensor) -> dict:
    """CKA / RSA lower bounds at an eval point: with the Thm. 1 bound (paper / tight cosine), the measured
    drift, and the exact relative deviations rho_T (centred) and r (centred upper-triangular)."""
    out = {}
    k, M, sd = ev["k_cl_fro"], ev["n_pairs"], ev["sigma_d"]
    bound, meas = ev["bound_closed"], ev["drift_full"]
    out["rho_bound"] = cor1_cka_bound(bound, k).ratio
    out["cka_lb_paper"] = cor1_cka_bound(bound, k).lower_bound
    out["cka_lb_sharp"] = cka_certificate_sharp(bound, k).lower_bound
    out["cka_lb_meas"] = cor1_cka_bound(meas, k).lower_bound
    out["cka_lb_meas_sharp"] = cka_certificate_sharp(meas, k).lower_bound
    D = S2 - S1
    rho_T = _centred_fro(D) / k
    out["rho_exact"] = rho_T
    out["cka_lb_exact"] = cos_lower_bound_sharp(rho_T)
    out["r_bound"] = cor2_rsa_bound(bound, M, sd).ratio
    out["rsa_lb_paper"] = cor2_rsa_bound(bound, M, sd).lower_bound
    out["rsa_lb_sharp"] = rsa_certificate_sharp(bound, M, sd, symmetric=symmetric).lower_bound
    out["rsa_lb_meas"] = cor2_rsa_bound(meas, M, sd).lower_bound
    out["rsa_lb_meas_sharp"] = rsa_certificate_sharp(meas, M, sd, symmetric=symmetric).lower_bound
    r = upper_std(D) / sd
    out["r_exact"] = r
    out["rsa_lb_exact"] = cos_lower_bound_sharp(r)
    return out


# ----------------------------------------------------------------------------------------------------------
# tables


def _fmt_ratio(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if x == math.inf:
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _holds_str(h: Any) -> str:
    return "n/a" if h is None else ("yes" if h else "NO")


def format_verdict_table(doc: dict, width: int = 110) -> str:
    """Markdown verdict table of a checks.json: claim, evaluated, max LHS/RHS, holds, note."""
    lines = ["| claim | evaluated | max LHS/RHS | holds | violations | premise failed (there: max ratio, violations) | note |",
             "|---|---:|---:|:---:|---:|---:|---|"]
    for cid in CLAIM_ORDER:
        if cid not in doc:
            continue
        o = doc[cid]
        note = o.get("note", "")
        if len(note) > width:
            note = note[: width - 3] + "..."
        note = note.replace("|", "\\|")  # markdown cell
        pf = str(o["premise_failed"])
        if o["premise_failed"]:
            pf += f" (max {_fmt_ratio(o.get('max_ratio_outside_premise'))}, {o.get('violations_outside_premise', 0)} viol.)"
        mx = _fmt_ratio(o["max_ratio"])
        if o.get("kind") == "eq" and o["evaluated"]:
            mx = f"{_fmt_ratio(o.get('min_ratio'))}..{mx} (dev {_eq_dev(o):.2g})"
        lines.append(f"| {cid} | {o['evaluated']} | {mx} | {_holds_str(o['holds'])} | "
                     f"{o['violations']} | {pf} | {note} |")
    return "\n".join(lines)


def load_checks(run_dir: str | Path) -> tuple[dict, dict]:
    """(checks.json, config.json) of a run directory (ValueError if missing)."""
    d = Path(run_dir)
    out = []
    for name in ("checks.json", "config.json"):
        p = d / name
        if not p.is_file():
            raise ValueError(f"{p} not found (not a sigma_descent output directory?)")
        out.append(runio.read_json(p))
    return out[0], out[1]


_LABEL_KEYS = ("views", "view_slots", "sigma", "replacement", "project", "eta_schedule", "eta", "tau",
               "batch_size", "n", "classes", "steps", "separation")


def _eq_dev(o: dict) -> float:
    """max |LHS/RHS - 1| of an "==" claim."""
    lo, hi = o.get("min_ratio"), o.get("max_ratio")
    return max(abs(float(lo) - 1.0) if lo is not None else 0.0, abs(float(hi) - 1.0) if hi is not None else 0.0)


def _cell(o: dict | None) -> str:
    if o is None or o.get("evaluated", 0) == 0 or o.get("holds") is None:
        return "n/a"
    if o.get("kind") == "eq":
        val = f"dev={_eq_dev(o):.2g}"
    else:
        val = _fmt_ratio(o["max_ratio"])
    if o["holds"]:
        return f"yes {val}"
    return f"NO {val} ({o['violations']}/{o['evaluated']})"


def _run_label(cfg: dict, differing: list[str], fallback: str) -> str:
    from .engine import SigmaConfig

    d = SigmaConfig().to_dict()
    parts = []
    for k in differing:
        if k == "view_slots" and cfg.get("views") == "identity":
            continue
        if cfg.get(k) != d.get(k):
            v = cfg.get(k)
            parts.append(k if v is True else (f"no-{k}" if v is False else f"{k}={v}"))
    return ", ".join(parts) if parts else ("defaults" if differing else fallback)


def compare_checks(run_dirs: list[str | Path]) -> str:
    """Markdown table of several runs' checks side by side; a column is labelled by its options that differ
    from the SigmaConfig defaults (among the options that differ between the runs).

    Cell: "yes 0.42" (holds, max LHS/RHS), "NO 1.7 (12/3000)" (violations / evaluated), "n/a"; for the "=="
    claims the range min..max of LHS/RHS.
    """
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    docs = [load_checks(d) for d in run_dirs]
    cfgs = [c["config"] for _, c in docs]
    differing = [k for k in _LABEL_KEYS if len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    labels = [_run_label(c, differing, Path(d).name) for d, c in zip(run_dirs, cfgs)]
    lines = ["| claim | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for cid in CLAIM_ORDER:
        lines.append(f"| {cid} | " + " | ".join(_cell(ch.get(cid)) for ch, _ in docs) + " |")
    common = {k: cfgs[0].get(k) for k in _LABEL_KEYS if k not in differing}
    lines.append("")
    lines.append("common options: " + ", ".join(f"{k}={v}" for k, v in common.items()))
    lines.append("cells: holds + max LHS/RHS (ratio <= 1 holds; '==' claims: dev = max abs(LHS/RHS - 1), violated when "
                 "> 1e-9); NO = violated (violations/evaluated); n/a = not evaluated (premise never held / not "
                 "applicable)")
    return "\n".join(lines)
