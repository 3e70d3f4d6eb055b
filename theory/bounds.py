"""Bounds of the paper, closed and unrolled forms, and provably sharper certificates (pure numpy, float64).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning" (Thm. 1 / Eq. 2,
Cor. 1, Cor. 2, App. B Thm. 2 / Eq. 15, App. C Eqs. 7-9, App. D Lemmas 6-8) and the companion loss-gap
bound (Luthra et al. 2025; blog "CL is approximately supervised", Part I), generalised to temperature tau.

Every function takes an arbitrary step-size schedule ``eta`` = (eta_0, ..., eta_{T-1}); the horizon is
``T = len(eta)`` (it enters Delta_{C,delta} through eps_{B,delta} = sqrt(log(T B / delta) / (2B))).

Notation used in the docstrings:
    S            = sum_t eta_t
    alpha_t      = eta_t / (2 tau^2 B)                  (Lipschitz growth rate, Lem. 2 / Eq. 11)
    gamma_t      = eta_t Delta / (tau sqrt(B))          (reweighting injection, Lem. 8 term (A))
    Pi_{a..b}    = prod_{u=a}^{b} (1 + alpha_u)

Forms of the Thm. 1 bound, from loosest to tightest:
    thm1_bound           exp(S/(2 tau^2 B)) * S Delta / (tau sqrt B)               Eq. 2 (paper)
    thm1_bound_gronwall  2 tau sqrt(B) Delta (exp(S/(2 tau^2 B)) - 1)              proven below, <= Eq. 2
    thm1_unrolled        sum_s gamma_s prod_{u>s}(1+alpha_u)                        exact solution of the
                         = 2 tau sqrt(B) Delta (prod_u (1+alpha_u) - 1)             recurrence (Grönwall)
    thm1_bound_sharp     thm1_unrolled with Delta -> Delta / (sqrt(2) (1 + Delta/2)) Lem. 6 sharpened

PREMISE of all four (``THM1_PREMISE``): on the event of Cor. 3, with every anchor's CL-denominator logits in
[-1, 1], the Sigma coordinates ORDERED (Lem. 1), and at every step every anchor on its OWN Sigma row (realised
row multiplicity m_t = 1). The proof goes through Lem. 8, whose term (A) uses Lem. 1 (disjoint anchor blocks)
and whose term (B) uses the block-diagonal Hessian of Lem. 2; both fail when two anchors share a row, which
batches drawn WITH replacement produce (a duplicate draw with the same anchor view). This is the paper's own
premise too: Eq. 2 is proved through Lem. 8 and carries the same restriction.

Forms valid WITH duplicated rows (carry the realised multiplicities n_r = number of anchors on row r at step t,
m_t = max_r n_r, q_t = sum_r n_r^2; ``anchor_row_multiplicity``; the proof is in ``thm1_unrolled_multiplicity``):
    thm1_unrolled_multiplicity     alpha_t = kappa eta_t m_t / (2 tau^2 B),
                                   gamma_t = kappa eta_t sqrt(q_t) Delta_t / (tau B)
    thm1_bound_sharp_multiplicity  the same with Delta -> lem6_l2_sharp(Delta)
kappa = 1 for ordered Sigma, 2 for the symmetric parameterisation (G -> G + G^T - Diag G). With m_t = 1 and
q_t = B (no duplicates), kappa = 1 they equal thm1_unrolled / thm1_bound_sharp exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .constants import (
    check_classes,
    check_eta_schedule,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_tau,
    delta_c_delta,
)

__all__ = [
    "THM1_PREMISE",
    "RowMultiplicity",
    "anchor_row_multiplicity",
    "thm1_rates_multiplicity",
    "thm1_unrolled_multiplicity",
    "thm1_trajectory_multiplicity",
    "thm1_bound_sharp_multiplicity",
    "Certificate",
    "drift_recurrence",
    "unrolled_terminal",
    "thm1_rates",
    "thm1_bound",
    "thm1_bound_from_delta",
    "thm1_bound_gronwall",
    "thm1_bound_gronwall_from_delta",
    "thm1_unrolled",
    "thm1_unrolled_from_delta",
    "thm1_trajectory",
    "thm1_trajectory_from_delta",
    "thm1_trajectory_from_gap",
    "thm1_bound_sharp",
    "lem6_l1_sharp",
    "lem6_l2_sharp",
    "cos_lower_bound_paper",
    "cos_lower_bound_sharp",
    "cor1_cka_bound",
    "cor2_rsa_bound",
    "cka_certificate_sharp",
    "rsa_certificate_sharp",
    "cka_ratio_measured",
    "rsa_ratio_measured",
    "thm2_bound",
    "thm2_bound_from_delta",
    "thm2_unrolled",
    "thm2_unrolled_exp",
    "thm2_trajectory",
    "appc_eq7_unrolled",
    "appc_eq8_bound",
    "appc_eq9_bound",
    "loss_gap_bound",
    "loss_gap_bound_counts",
]


THM1_PREMISE = (
    "Cor. 3 event and CL-denominator logits in [-1, 1] for every anchor, ordered Sigma, and every anchor on its own "
    "Sigma row (row multiplicity m = 1) at every step"
)
"""The premise under which Thm. 1 (Eq. 2, Grönwall, unrolled and sharp forms) and Cors. 1-2 built on them are
proved (Lem. 8 through Lem. 1 and Lem. 2's block-diagonal Hessian)."""


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _exp(x: float) -> float:
    """exp that returns +inf on overflow (an infinite bound is an honest, vacuous bound)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _per_step(name: str, value: float | Sequence[float] | np.ndarray, T: int) -> np.ndarray:
    """Scalar or length-T sequence of finite non-negative numbers -> (T,) float64."""
    if np.ndim(value) == 0:
        return np.full(T, check_nonneg_float(name, value), dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.size != T:
        raise ValueError(f"{name} must be a scalar or a sequence of length T={T}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        i = int(np.flatnonzero(~(np.isfinite(arr) & (arr >= 0)))[0])
        raise ValueError(f"{name} must be finite and >= 0, got {name}[{i}]={float(arr[i])!r}")
    return arr


def _check_drift(name: str, value: object) -> float:
    """Drift bound: a number >= 0; +inf is allowed (an overflowed, vacuous bound)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {name}={value!r}") from None
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {name}={value!r}")
    return v


def drift_recurrence(
    eta: Sequence[float] | np.ndarray,
    lipschitz: float | Sequence[float] | np.ndarray,
    inject: float | Sequence[float] | np.ndarray,
    d0: float = 0.0,
) -> np.ndarray:
    """Solve D_{t+1} = (1 + eta_t L_t) D_t + eta_t g_t with equality, D_0 = d0 (discrete Grönwall).

    This is the common recurrence of Thm. 1 (L = 1/(2 tau^2 B), g = Delta/(tau sqrt B)), Thm. 2 / Eq. 15
    (L = beta, g = G Delta / tau) and App. C Eq. 7 (L = 1/(2 tau^2 B), g_t = C_Sigma ||G_t|| + M eta_t Xi_t / 2).
    Any sequence satisfying the recurrence with "<=" is bounded by this solution (induction, all terms >= 0).

    Shape: eta (T,); lipschitz, inject scalar or (T,) -> (T+1,) with entry t = bound after t steps.
    """
    eta = check_eta_schedule(eta)
    T = eta.size
    L = _per_step("lipschitz", lipschitz, T)
    g = _per_step("inject", inject, T)
    d = check_nonneg_float("d0", d0)
    out = np.empty(T + 1, dtype=np.float64)
    out[0] = d
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            d = (1.0 + eta[t] * L[t]) * d + eta[t] * g[t]
            out[t + 1] = d
    return out


def unrolled_terminal(alpha: np.ndarray, gamma: np.ndarray) -> float:
    """sum_s gamma_s prod_{u=s+1}^{T-1} (1 + alpha_u)  (Grönwall product form, App. D.4 / Eq. 15).

    Computed with suffix sums of log1p(alpha) (no overflow before the true value overflows).
    Shape: alpha (T,), gamma (T,) -> float.
    """
    log1p = np.log1p(alpha)
    suffix = np.concatenate([np.cumsum(log1p[::-1])[::-1][1:], [0.0]])  # sum_{u>s} log(1+alpha_u)
    with np.errstate(over="ignore"):
        return float(np.sum(gamma * np.exp(suffix)))


# ----------------------------------------------------------------------------------------------------------
# Theorem 1 (similarity-space coupling)
# ----------------------------------------------------------------------------------------------------------
def thm1_rates(eta: Sequence[float] | np.ndarray, Delta: float | Sequence[float], B: int, tau: float):
    """(alpha, gamma): alpha_t = eta_t / (2 tau^2 B), gamma_t = eta_t Delta_t / (tau sqrt B)  (App. D.4).

    Shape: eta (T,), Delta scalar or (T,) -> two (T,) arrays.
    """
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    D = _per_step("Delta", Delta, eta.size)
    return eta / (2.0 * tau * tau * B), eta * D / (tau * math.sqrt(B))


def thm1_bound_from_delta(eta: Sequence[float] | np.ndarray, Delta: float, B: int, tau: float) -> float:
    """Eq. 2 with a given Delta:  exp(S / (2 tau^2 B)) * S * Delta / (tau sqrt B),  S = sum_t eta_t."""
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    Delta = check_nonneg_float("Delta", Delta)
    S = float(np.sum(eta))
    return _exp(S / (2.0 * tau * tau * B)) * S * Delta / (tau * math.sqrt(B))


def thm1_bound(eta: Sequence[float] | np.ndarray, B: int, C: int, delta: float, tau: float) -> float:
    """Thm. 1, Eq. 2 (closed form):

        ||Sigma_T^CL - Sigma_T^NSCL||_F <= exp(S/(2 tau^2 B)) * S * Delta_{C,delta}(B; tau) / (tau sqrt B),

    S = sum_{t<T} eta_t, T = len(eta). Holds with probability >= 1 - delta (event of Cor. 3), under
    ``THM1_PREMISE`` (ordered Sigma, every anchor on its own row: the proof uses Lem. 8 / Lem. 1). With duplicated
    anchor rows use ``thm1_unrolled_multiplicity`` (>= this form's unrolled version, valid there).
    """
    eta = check_eta_schedule(eta)
    return thm1_bound_from_delta(eta, delta_c_delta(C, B, eta.size, delta, tau), B, tau)


def thm1_bound_gronwall_from_delta(eta: Sequence[float] | np.ndarray, Delta: float, B: int, tau: float) -> float:
    """Sharper closed form of Thm. 1:  2 tau sqrt(B) Delta (exp(S/(2 tau^2 B)) - 1).

    Proof. With alpha_t = eta_t k, gamma_t = eta_t c (k = 1/(2 tau^2 B), c = Delta/(tau sqrt B)) we have
    gamma_s = (c/k) alpha_s, and the telescoping identity
        alpha_s prod_{u>s}(1+alpha_u) = prod_{u>=s}(1+alpha_u) - prod_{u>s}(1+alpha_u)
    summed over s gives the EXACT unrolled value
        sum_s gamma_s prod_{u>s}(1+alpha_u) = (c/k) (prod_u (1+alpha_u) - 1)                         (*)
    and 1 + x <= e^x gives (c/k)(exp(k S) - 1) with c/k = 2 tau sqrt(B) Delta.
    It is never larger than Eq. 2: with x = k S >= 0, e^x - 1 = int_0^x e^t dt <= x e^x, so
        (c/k)(e^x - 1) <= (c/k) x e^x = c S e^{kS} = Eq. 2.                                                []
    """
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    Delta = check_nonneg_float("Delta", Delta)
    x = float(np.sum(eta)) / (2.0 * tau * tau * B)
    return 2.0 * tau * math.sqrt(B) * Delta * (math.expm1(x) if x < 700 else _exp(x))


def thm1_bound_gronwall(eta: Sequence[float] | np.ndarray, B: int, C: int, delta: float, tau: float) -> float:
    """``thm1_bound_gronwall_from_delta`` with Delta = Delta_{C,delta}(B; tau), T = len(eta)."""
    eta = check_eta_schedule(eta)
    return thm1_bound_gronwall_from_delta(eta, delta_c_delta(C, B, eta.size, delta, tau), B, tau)


def thm1_unrolled_from_delta(
    eta: Sequence[float] | np.ndarray, Delta: float | Sequence[float], B: int, tau: float
) -> float:
    """Exact Grönwall product form of Thm. 1 (App. D.4, before 1 + x <= e^x):

        D_T <= sum_{s=0}^{T-1} gamma_s prod_{u=s+1}^{T-1} (1 + alpha_u),
        alpha_t = eta_t/(2 tau^2 B),  gamma_t = eta_t Delta_t/(tau sqrt B).

    ``Delta`` may be a per-step sequence (e.g. a realised per-step reweighting constant); for a constant
    Delta this equals 2 tau sqrt(B) Delta (prod_u (1 + alpha_u) - 1)  (identity (*) of
    ``thm1_bound_gronwall_from_delta``). Shape: eta (T,), Delta scalar or (T,) -> float.
    Premise: ``THM1_PREMISE`` (every anchor on its own Sigma row); see ``thm1_unrolled_multiplicity`` otherwise.
    """
    alpha, gamma = thm1_rates(eta, Delta, B, tau)
    return unrolled_terminal(alpha, gamma)


def thm1_unrolled(eta: Sequence[float] | np.ndarray, B: int, C: int, delta: float, tau: float) -> float:
    """``thm1_unrolled_from_delta`` with Delta = Delta_{C,delta}(B; tau), T = len(eta)."""
    eta = check_eta_schedule(eta)
    return thm1_unrolled_from_delta(eta, delta_c_delta(C, B, eta.size, delta, tau), B, tau)


def thm1_trajectory_from_delta(
    eta: Sequence[float] | np.ndarray,
    Delta: float | Sequence[float],
    B: int,
    tau: float,
    form: str = "unrolled",
) -> np.ndarray:
    """Per-step Thm. 1 bound D_t for t = 0..T (D_0 = 0), for plotting bound vs measured drift per step.

    form = "unrolled": D_t = sum_{s<t} gamma_s prod_{s<u<t}(1+alpha_u) (exact recurrence solution; Delta may
                       be per-step);
    form = "closed":   D_t = exp(S_t/(2 tau^2 B)) S_t Delta / (tau sqrt B), S_t = sum_{s<t} eta_s (Eq. 2 applied
                       with horizon t; needs a scalar Delta).
    Both use the SAME Delta for all t (one event of Cor. 3 for the whole horizon T = len(eta)).
    Shape: eta (T,) -> (T+1,).
    """
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    if form == "unrolled":
        inject = _per_step("Delta", Delta, eta.size) / (tau * math.sqrt(B))
        return drift_recurrence(eta, 1.0 / (2.0 * tau * tau * B), inject)
    if form == "closed":
        if np.ndim(Delta) != 0:
            raise ValueError("form='closed' needs a scalar Delta, got a sequence")
        D = check_nonneg_float("Delta", Delta)
        S = np.concatenate([[0.0], np.cumsum(eta)])
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.exp(S / (2.0 * tau * tau * B)) * S * D / (tau * math.sqrt(B))
        out[0] = 0.0
        return out
    raise ValueError(f"form must be 'unrolled' or 'closed', got form={form!r}")


def thm1_trajectory(
    eta: Sequence[float] | np.ndarray, B: int, C: int, delta: float, tau: float, form: str = "unrolled"
) -> np.ndarray:
    """``thm1_trajectory_from_delta`` with Delta = Delta_{C,delta}(B; tau), T = len(eta). Shape: -> (T+1,)."""
    eta = check_eta_schedule(eta)
    return thm1_trajectory_from_delta(eta, delta_c_delta(C, B, eta.size, delta, tau), B, tau, form=form)


def thm1_trajectory_from_gap(
    eta: Sequence[float] | np.ndarray, gap: float | Sequence[float], B: int, tau: float
) -> np.ndarray:
    """Drift bound driven by a MEASURED reweighting term (A) of Lem. 8 instead of its bound Delta/(tau sqrt B):

        D_{t+1} <= (1 + eta_t/(2 tau^2 B)) D_t + eta_t A_t,
        A_t = ||G_t^CL(Sigma_t^CL) - G_t^NSCL(Sigma_t^CL)||_F = (1/(tau B)) sqrt(sum_i ||p_i - q_i||_2^2).

    Valid deterministically (no probability): it is Lem. 8's triangle inequality with term (A) evaluated,
    not bounded. Shape: eta (T,), gap scalar or (T,) -> (T+1,).
    """
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    return drift_recurrence(eta, 1.0 / (2.0 * tau * tau * B), gap)


def lem6_l1_sharp(Delta: float) -> float:
    """Sharper Lem. 6 (l1):  ||p - q||_1 = 2 alpha <= Delta / (1 + Delta/2)  (<= Delta).

    Proof. ||p - q||_1 = 2 alpha with alpha = Z_pos/(Z_pos + Z_neg) = r/(1 + r), r = Z_pos/Z_neg (Lem. 6).
    x -> x/(1+x) is increasing and r <= Delta/2 on the event of Cor. 3 (Eq. 14), so
    2 alpha <= 2 (Delta/2)/(1 + Delta/2) = Delta/(1 + Delta/2).                                              []
    """
    D = check_nonneg_float("Delta", Delta)
    return D / (1.0 + D / 2.0)


def lem6_l2_sharp(Delta: float) -> float:
    """Sharper Lem. 6 (l2):  ||p - q||_2 <= sqrt(2) alpha <= Delta / (sqrt(2) (1 + Delta/2))  (< Delta/sqrt 2).

    Proof. On positives p - q = p (entries summing to alpha); on negatives p - q = -p alpha/(1-alpha)
    (entries summing in absolute value to alpha). ||x||_2 <= ||x||_1 on each part, and the parts have
    disjoint supports, so ||p - q||_2^2 <= alpha^2 + alpha^2. Then alpha <= (Delta/2)/(1 + Delta/2) as in
    ``lem6_l1_sharp``.                                                                                        []
    Plugging this for ||p_i - q_i||_2 into Lem. 8 term (A) gives ``thm1_bound_sharp``.
    """
    D = check_nonneg_float("Delta", Delta)
    return D / (math.sqrt(2.0) * (1.0 + D / 2.0))


def thm1_bound_sharp(eta: Sequence[float] | np.ndarray, B: int, C: int, delta: float, tau: float) -> float:
    """Sharpest Thm. 1 certificate here: exact product form with Delta -> lem6_l2_sharp(Delta):

        D_T <= 2 tau sqrt(B) Delta' (prod_u (1 + eta_u/(2 tau^2 B)) - 1),  Delta' = Delta/(sqrt2 (1 + Delta/2)).

    Valid on the event of Cor. 3 (probability >= 1 - delta) under ``THM1_PREMISE``: Lem. 8 term (A)
    <= Delta'/(tau sqrt B) by ``lem6_l2_sharp`` and Lem. 1; the rest is the proof of Thm. 1 without the step
    1 + x <= e^x. NOT valid when anchors share a Sigma row (batches with replacement: found violated by
    ``python -m simulate.soundness``, legacy columns); use ``thm1_bound_sharp_multiplicity`` there.
    """
    eta = check_eta_schedule(eta)
    Delta = delta_c_delta(C, B, eta.size, delta, tau)
    return thm1_unrolled_from_delta(eta, lem6_l2_sharp(Delta), B, tau)


class RowMultiplicity(NamedTuple):
    """Realised anchor-row multiplicities of one step: m = max_r n_r, q = sum_r n_r^2, B = sum_r n_r."""

    m: int
    q: int
    B: int


def anchor_row_multiplicity(rows: Sequence[int] | np.ndarray) -> RowMultiplicity:
    """(m, q, B) of the anchors' Sigma rows: n_r = number of anchors on row r, m = max n_r, q = sum n_r^2.

    m = 1 (q = B) iff every anchor has its own row (the premise of Lem. 1 / Lem. 8 / Thm. 1).
    Shape: rows (B,) integers (row index of each anchor).
    """
    r = np.asarray(rows)
    if r.ndim != 1 or r.size == 0 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"rows must be a non-empty 1-d integer array, got shape {r.shape} dtype {r.dtype}")
    _, n = np.unique(r, return_counts=True)
    return RowMultiplicity(int(n.max()), int(np.sum(n.astype(np.int64) ** 2)), int(r.size))


def _mult(name: str, value: object, T: int, lo: float) -> np.ndarray:
    arr = _per_step(name, value, T)
    if np.any(arr < lo):
        i = int(np.flatnonzero(arr < lo)[0])
        raise ValueError(f"{name} must be >= {lo:g} at every step, got {name}[{i}]={float(arr[i])!r}")
    return arr


def thm1_rates_multiplicity(
    eta: Sequence[float] | np.ndarray,
    Delta: float | Sequence[float],
    B: int,
    tau: float,
    m: float | Sequence[float],
    q: float | Sequence[float],
    kappa: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, gamma) of the multiplicity-carrying Thm. 1 recurrence (proof: ``thm1_unrolled_multiplicity``):

        alpha_t = kappa eta_t m_t / (2 tau^2 B),   gamma_t = kappa eta_t sqrt(q_t) Delta_t / (tau B).

    m_t >= 1 (max anchors on one row), q_t >= B (sum of squared row counts; q_t <= m_t B), kappa >= 1.
    Shape: eta (T,); Delta, m, q scalar or (T,) -> two (T,) arrays.
    """
    eta = check_eta_schedule(eta)
    B = check_positive_int("B", B)
    tau = check_tau(tau)
    T = eta.size
    D = _per_step("Delta", Delta, T)
    m = _mult("m", m, T, 1.0)
    q = _mult("q", q, T, float(B))
    kappa = check_positive_float("kappa", kappa)
    if kappa < 1.0:
        raise ValueError(f"kappa must be >= 1 (1 ordered, 2 symmetric Sigma), got kappa={kappa!r}")
    if np.any(q > m * B * (1 + 1e-12)):
        i = int(np.flatnonzero(q > m * B * (1 + 1e-12))[0])
        raise ValueError(f"q must be <= m B (sum n_r^2 <= max n_r sum n_r), got q[{i}]={q[i]!r} > m B={m[i] * B!r}")
    return kappa * eta * m / (2.0 * tau * tau * B), kappa * eta * np.sqrt(q) * D / (tau * B)


def thm1_unrolled_multiplicity(
    eta: Sequence[float] | np.ndarray,
    Delta: float | Sequence[float],
    B: int,
    tau: float,
    m: float | Sequence[float],
    q: float | Sequence[float],
    kappa: float = 1.0,
) -> float:
    """Thm. 1 in product form, valid when anchors share Sigma rows (batches with replacement):

        D_T <= sum_s gamma_s prod_{u>s} (1 + alpha_u),  alpha, gamma from ``thm1_rates_multiplicity``.

    Premise: Cor. 3 event and CL-denominator logits of Sigma_t^CL in [-1, 1] for every anchor at every step
    (no condition on duplicates). ``Delta`` is any per-anchor bound on ||p_i - q_i||_2 (Delta_{C,delta} by
    Lem. 6, or lem6_l2_sharp(Delta_{C,delta})).

    Proof. Fix step t; n_r anchors sit on row r (sum_r n_r = B). Anchors on one row share the denominator
    multiset (the engine's convention: the same keys minus one copy of the row's own item), hence the softmax
    p_r (CL) and q_r (NSCL), over the row's unique columns (keys on one column merged).
    (A) The per-anchor gradients are (p_r - e_pos)/tau and (q_r - e_pos)/tau; the positives cancel, so on row
    r, G^CL(S) - G^NSCL(S) = (n_r/(tau B)) (p_r - q_r), and rows are disjoint coordinates (ordered Sigma):
        (A) = (1/(tau B)) sqrt(sum_r n_r^2 ||p_r - q_r||_2^2) <= sqrt(q_t) max_r ||p_r - q_r||_2 / (tau B).
    Merging keys on one column keeps ||p_r - q_r||_2 <= sqrt(2) alpha_r <= Delta (p - q >= 0 on same-label,
    <= 0 on other-label columns, each part of l1 mass alpha_r; ||x||_2 <= ||x||_1 on each), so Lem. 6 and
    ``lem6_l2_sharp`` bound it on the event of Cor. 3 with bounded logits.
    (B) The NSCL batch loss is sum_r (n_r/B) ell_r(Sigma[r, cols]) + linear terms; its Hessian is
    block-diagonal over rows with blocks (n_r/(tau^2 B)) (Diag P_r - P_r P_r^T), P_r the merged softmax (a
    probability vector), so ||Hessian||_2 <= m_t/(2 tau^2 B) (Lem. 2's bound on each block) and the gradient
    map is m_t/(2 tau^2 B)-Lipschitz in ||.||_F (mean-value form, as Eq. 11).
    Symmetric Sigma updates by sym(G) = G + G^T - Diag(G); ||sym(X)||_F <= ||X - Diag(X)/2||_F +
    ||X^T - Diag(X)/2||_F <= 2 ||X||_F, so both terms get kappa = 2. The projections of the engine (clip onto
    [-1, 1], a fixed diagonal) are Euclidean projections onto convex sets applied to both runs, hence
    non-expansive. So D_{t+1} <= (1 + alpha_t) D_t + gamma_t, and Grönwall (``drift_recurrence``) gives the
    claim. With m_t = 1, q_t = B, kappa = 1 it is ``thm1_unrolled_from_delta``.                               []
    Shape: eta (T,); Delta, m, q scalar or (T,) -> float.
    """
    alpha, gamma = thm1_rates_multiplicity(eta, Delta, B, tau, m, q, kappa)
    return unrolled_terminal(alpha, gamma)


def thm1_trajectory_multiplicity(
    eta: Sequence[float] | np.ndarray,
    Delta: float | Sequence[float],
    B: int,
    tau: float,
    m: float | Sequence[float],
    q: float | Sequence[float],
    kappa: float = 1.0,
) -> np.ndarray:
    """Per-step ``thm1_unrolled_multiplicity``: D_t for t = 0..T (D_0 = 0). Shape: eta (T,) -> (T+1,)."""
    alpha, gamma = thm1_rates_multiplicity(eta, Delta, B, tau, m, q, kappa)
    out = np.empty(alpha.size + 1, dtype=np.float64)
    out[0] = d = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(alpha.size):
            d = (1.0 + alpha[t]) * d + gamma[t]
            out[t + 1] = d
    return out


def thm1_bound_sharp_multiplicity(
    eta: Sequence[float] | np.ndarray,
    B: int,
    C: int,
    delta: float,
    tau: float,
    m: float | Sequence[float],
    q: float | Sequence[float],
    kappa: float = 1.0,
) -> float:
    """``thm1_unrolled_multiplicity`` with Delta -> lem6_l2_sharp(Delta_{C,delta}(B; tau)), T = len(eta).

    The sharp Thm. 1 certificate valid with duplicated anchor rows (premise: Cor. 3 event and bounded logits
    at every step); equals ``thm1_bound_sharp`` when m = 1, q = B, kappa = 1.
    """
    eta = check_eta_schedule(eta)
    Delta = delta_c_delta(C, B, eta.size, delta, tau)
    return thm1_unrolled_multiplicity(eta, lem6_l2_sharp(Delta), B, tau, m, q, kappa)


# ----------------------------------------------------------------------------------------------------------
# Corollaries 1-2 and sharper cosine certificates
# ----------------------------------------------------------------------------------------------------------
class Certificate(NamedTuple):
    """(ratio, lower_bound): relative deviation rho (or r) and the certified lower bound on CKA (or RSA).

    ``vacuous`` is True when the lower bound is <= 0 (CKA of PSD Grams is >= 0 anyway).
    """

    ratio: float
    lower_bound: float

    @property
    def vacuous(self) -> bool:
        return not self.lower_bound > 0.0


def cos_lower_bound_paper(rho: float) -> float:
    """(1 - rho)/(1 + rho): Cor. 1/2 lower bound on cos(u, v) given ||v - u|| <= rho ||u|| (Eq. 17).

    Returns -1.0 for rho = inf (limit). Vacuous (<= 0) for rho >= 1.
    """
    r = _check_drift("rho", rho)
    return -1.0 if math.isinf(r) else (1.0 - r) / (1.0 + r)


def cos_lower_bound_sharp(rho: float) -> float:
    """sqrt(1 - rho^2) for rho < 1, else -1: the TIGHT lower bound on cos(u, v) given ||v - u|| <= rho ||u||.

    Proof. Scale ||u|| = 1 and write v - u = a u + w with w _|_ u, a^2 + ||w||^2 <= rho^2 < 1. Then
    1 + a >= 1 - rho > 0 and cos(u, v) = (1 + a)/sqrt((1 + a)^2 + ||w||^2) = (1 + f)^{-1/2} with
    f = ||w||^2/(1 + a)^2 <= (rho^2 - a^2)/(1 + a)^2 =: h(a). h'(a) = -2(a + rho^2)/(1 + a)^3, so h is
    maximal at a = -rho^2 where h = rho^2 (1 - rho^2)/(1 - rho^2)^2 = rho^2/(1 - rho^2). Hence
    cos(u, v) >= (1 + rho^2/(1 - rho^2))^{-1/2} = sqrt(1 - rho^2): the angle between u and any point of the
    ball of radius rho||u|| around u is at most arcsin(rho), with equality at the tangent point.
    For rho >= 1 the ball contains -c u (c >= 0 small), so only cos >= -1 holds.
    Never weaker than the paper: for 0 <= rho < 1, sqrt(1-rho^2) = sqrt((1-rho)(1+rho)) >= (1-rho)/(1+rho)
    <=> (1+rho)^{3/2} >= (1-rho)^{1/2}, true since 1 + rho >= 1 >= 1 - rho (equality only at rho = 0);
    for rho >= 1, -1 <= (1-rho)/(1+rho) but both are vacuous for CKA/RSA purposes (<= 0).                 []
    """
    r = _check_drift("rho", rho)
    return math.sqrt(1.0 - r * r) if r < 1.0 else -1.0


def _ratio(drift_bound: object, scale: float) -> float:
    d = _check_drift("drift_bound", drift_bound)
    return d / scale


def cor1_cka_bound(drift_bound: float, k_cl_fro: float) -> Certificate:
    """Cor. 1:  rho = drift_bound / ||K_T^CL||_F,  CKA_T >= (1 - rho)/(1 + rho).

    ``drift_bound`` bounds ||Sigma_T^CL - Sigma_T^NSCL||_F (>= ||H (.) H||_F since ||H||_2 = 1), e.g.
    ``thm1_bound``; ``k_cl_fro`` = ||H Sigma_T^CL H||_F > 0. Certified only where the drift bound is: a Thm. 1
    form under ``THM1_PREMISE``, or a ``*_multiplicity`` form (any rows) under the Cor. 3 event + bounded logits.
    """
    A = check_positive_float("k_cl_fro", k_cl_fro)
    rho = _ratio(drift_bound, A)
    return Certificate(rho, cos_lower_bound_paper(rho))


def _rsa_scale(M: int, sigma_D: float) -> float:
    M = check_positive_int("M", M)
    s = check_positive_float("sigma_D", sigma_D)
    return math.sqrt(M) * s


def cor2_rsa_bound(drift_bound: float, M: int, sigma_D: float, symmetric: bool = False) -> Certificate:
    """Cor. 2:  r = drift_bound / (sqrt(M) sigma_D),  RSA_T >= (1 - r)/(1 + r).

    M = N(N-1)/2; sigma_D = POPULATION (ddof=0) std of the upper-triangular CL RDM entries a_T, so that
    sqrt(M) sigma_D = ||a_T - mean(a_T)||_2 (with ddof=1 the scale would be sqrt(M-1) sigma_D and the formula
    would overstate it). ``symmetric=True``: if the drift bound is on a SYMMETRIC difference matrix X, then
    ||upper(X)||_2 = ||off(X)||_F / sqrt(2) <= ||X||_F / sqrt(2), so r may be divided by sqrt(2) (sharper; the
    paper uses ||upper(X)||_2 <= ||X||_F). Do NOT use it for the ordered (non-symmetric) Sigma surrogate.
    """
    r = _ratio(drift_bound, _rsa_scale(M, sigma_D))
    if symmetric:
        r /= math.sqrt(2.0)
    return Certificate(r, cos_lower_bound_paper(r))


def cka_certificate_sharp(drift_bound: float, k_cl_fro: float) -> Certificate:
    """Cor. 1 with the tight cosine bound:  CKA_T >= sqrt(1 - rho^2)  (rho < 1), rho as in Cor. 1.

    CKA_T = cos(K^CL, K^NSCL) in the Frobenius inner product, ||K^NSCL - K^CL||_F <= rho ||K^CL||_F, so
    ``cos_lower_bound_sharp`` applies; it is >= (1 - rho)/(1 + rho) for every rho. Certified only where
    ``drift_bound`` is (see ``cor1_cka_bound``).
    """
    A = check_positive_float("k_cl_fro", k_cl_fro)
    rho = _ratio(drift_bound, A)
    return Certificate(rho, cos_lower_bound_sharp(rho))


def rsa_certificate_sharp(drift_bound: float, M: int, sigma_D: float, symmetric: bool = False) -> Certificate:
    """Cor. 2 with the tight cosine bound:  RSA_T >= sqrt(1 - r^2)  (r < 1), r as in ``cor2_rsa_bound``.

    Pearson RSA = cos(C a, C b) with C the centring projector on R^M and ||C a||_2 = sqrt(M) sigma_D;
    ||C(b - a)||_2 <= ||b - a||_2 <= drift bound, so ``cos_lower_bound_sharp`` applies. Certified only where
    ``drift_bound`` is (see ``cor1_cka_bound``).
    """
    r = _ratio(drift_bound, _rsa_scale(M, sigma_D))
    if symmetric:
        r /= math.sqrt(2.0)
    return Certificate(r, cos_lower_bound_sharp(r))


def _square(name: str, X: object) -> np.ndarray:
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
        raise ValueError(f"{name} must be a square N x N matrix with N >= 2, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} must be finite")
    return A


def _centre2(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0, keepdims=True) - X.mean(axis=1, keepdims=True) + X.mean()


def cka_ratio_measured(sigma_cl: np.ndarray, sigma_nscl: np.ndarray) -> Certificate:
    """Measured Cor. 1 ratio rho = ||H (Sigma^NSCL - Sigma^CL) H||_F / ||H Sigma^CL H||_F and sqrt(1 - rho^2).

    Uses the centred difference (||H X H||_F <= ||X||_F), so rho here is <= any drift-bound rho. The
    returned lower bound certifies cka_gram(sigma_cl, sigma_nscl) deterministically (no probability).
    Shape: sigma_cl, sigma_nscl (N, N). Raises if ||H Sigma^CL H||_F = 0.
    """
    S1 = _square("sigma_cl", sigma_cl)
    S2 = _square("sigma_nscl", sigma_nscl)
    if S1.shape != S2.shape:
        raise ValueError(f"sigma_cl and sigma_nscl must have the same shape, got {S1.shape} and {S2.shape}")
    A = float(np.linalg.norm(_centre2(S1)))
    if A == 0.0:
        raise ValueError("||H sigma_cl H||_F = 0: CKA is undefined (zero-variance similarity matrix)")
    rho = float(np.linalg.norm(_centre2(S2 - S1))) / A
    return Certificate(rho, cos_lower_bound_sharp(rho))


def rsa_ratio_measured(sigma_cl: np.ndarray, sigma_nscl: np.ndarray) -> Certificate:
    """Measured Cor. 2 ratio r = ||C(b - a)||_2 / ||C a||_2 and sqrt(1 - r^2).

    a, b = upper-triangular (i < j) entries of 1 - Sigma^CL, 1 - Sigma^NSCL; C = centring on R^M. Centring
    contracts (||C(b - a)|| <= ||b - a||), and ||C a||_2 = sqrt(M) sigma_D (ddof=0). The lower bound
    certifies rsa_gram(sigma_cl, sigma_nscl) deterministically. Shape: (N, N), (N, N).
    """
    S1 = _square("sigma_cl", sigma_cl)
    S2 = _square("sigma_nscl", sigma_nscl)
    if S1.shape != S2.shape:
        raise ValueError(f"sigma_cl and sigma_nscl must have the same shape, got {S1.shape} and {S2.shape}")
    iu = np.triu_indices(S1.shape[0], k=1)
    a = 1.0 - S1[iu]
    d = (1.0 - S2[iu]) - a
    A = float(np.linalg.norm(a - a.mean()))
    if A == 0.0:
        raise ValueError("sigma_D = 0: RSA is undefined (constant CL RDM)")
    r = float(np.linalg.norm(d - d.mean())) / A
    return Certificate(r, cos_lower_bound_sharp(r))


# ----------------------------------------------------------------------------------------------------------
# Theorem 2 (parameter-space coupling, App. B / D.3)
# ----------------------------------------------------------------------------------------------------------
def _thm2_args(eta, beta, G, tau):
    eta = check_eta_schedule(eta)
    beta = check_positive_float("beta", beta)
    G = check_nonneg_float("G", G)
    tau = check_tau(tau)
    return eta, beta, G, tau


def thm2_bound_from_delta(eta: Sequence[float] | np.ndarray, beta: float, G: float, Delta: float, tau: float) -> float:
    """Thm. 2 closed form with a given Delta:  (G Delta/(beta tau)) (exp(beta S) - 1)."""
    eta, beta, G, tau = _thm2_args(eta, beta, G, tau)
    Delta = check_nonneg_float("Delta", Delta)
    x = beta * float(np.sum(eta))
    return G * Delta / (beta * tau) * (math.expm1(x) if x < 700 else _exp(x))


def thm2_bound(
    eta: Sequence[float] | np.ndarray, beta: float, G: float, B: int, C: int, delta: float, tau: float
) -> float:
    """Thm. 2 (App. B):  e_T <= (G/(beta tau)) Delta_{C,delta}(B; tau) (exp(beta sum_t eta_t) - 1), T = len(eta)."""
    eta = check_eta_schedule(eta)
    check_classes(C)
    return thm2_bound_from_delta(eta, beta, G, delta_c_delta(C, B, eta.size, delta, tau), tau)


def thm2_unrolled(
    eta: Sequence[float] | np.ndarray, beta: float, G: float, B: int, C: int, delta: float, tau: float
) -> float:
    """Eq. 15 unrolled exactly (App. D.3, first inequality of the proof of Thm. 2):

        e_T <= sum_t eta_t (G Delta/tau) prod_{s=t+1}^{T-1} (1 + eta_s beta)
             = (G Delta/(beta tau)) (prod_s (1 + beta eta_s) - 1)          (telescoping, as in Thm. 1)
    """
    eta, beta, G, tau = _thm2_args(eta, beta, G, tau)
    Delta = delta_c_delta(C, B, eta.size, delta, tau)
    return unrolled_terminal(beta * eta, eta * G * Delta / tau)


def thm2_unrolled_exp(
    eta: Sequence[float] | np.ndarray, beta: float, G: float, B: int, C: int, delta: float, tau: float
) -> float:
    """Middle form of the proof of Thm. 2:  (G Delta/tau) sum_t eta_t exp(beta sum_{s>t} eta_s)."""
    eta, beta, G, tau = _thm2_args(eta, beta, G, tau)
    Delta = delta_c_delta(C, B, eta.size, delta, tau)
    suffix = np.concatenate([np.cumsum(eta[::-1])[::-1][1:], [0.0]])
    with np.errstate(over="ignore"):
        return float(G * Delta / tau * np.sum(eta * np.exp(beta * suffix)))


def thm2_trajectory(
    eta: Sequence[float] | np.ndarray, beta: float, G: float, B: int, C: int, delta: float, tau: float
) -> np.ndarray:
    """Per-step Eq. 15 solution e_t, t = 0..T (e_0 = 0), Delta fixed at horizon T = len(eta). Shape: (T+1,)."""
    eta, beta, G, tau = _thm2_args(eta, beta, G, tau)
    Delta = delta_c_delta(C, B, eta.size, delta, tau)
    return drift_recurrence(eta, beta, G * Delta / tau)


# ----------------------------------------------------------------------------------------------------------
# App. C: surrogate faithfulness (Eqs. 7-9)
# ----------------------------------------------------------------------------------------------------------
def _appc_args(eta, tau, B, C_sigma, M_sigma, xi):
    eta = check_eta_schedule(eta)
    tau = check_tau(tau)
    B = check_positive_int("B", B)
    C_sigma = check_nonneg_float("C_sigma", C_sigma)
    M_sigma = check_nonneg_float("M_sigma", M_sigma)
    xi = _per_step("xi", xi, eta.size)
    return eta, tau, B, C_sigma, M_sigma, xi


def appc_eq8_bound(
    eta: Sequence[float] | np.ndarray,
    tau: float,
    B: int,
    C_sigma: float,
    M_sigma: float,
    xi: float | Sequence[float],
    g_hat_norms: float | Sequence[float],
) -> float:
    """App. C Eq. 8 (measured ||G_hat_t||_F):

        ||Sigma_hat_T - Sigma_tilde_T||_F <= exp(S/(2 tau^2 B)) [C_Sigma sum_t eta_t ||G_hat_t||_F
                                                                 + (M_Sigma/2) sum_t eta_t^2 Xi_t].
    xi = Xi_t = ||grad_w loss(w_t)||^2 (scalar or (T,)); g_hat_norms scalar or (T,).
    """
    eta, tau, B, C_sigma, M_sigma, xi = _appc_args(eta, tau, B, C_sigma, M_sigma, xi)
    g = _per_step("g_hat_norms", g_hat_norms, eta.size)
    S = float(np.sum(eta))
    return _exp(S / (2.0 * tau * tau * B)) * (
        C_sigma * float(np.sum(eta * g)) + 0.5 * M_sigma * float(np.sum(eta * eta * xi))
    )


def appc_eq9_bound(
    eta: Sequence[float] | np.ndarray, tau: float, B: int, C_sigma: float, M_sigma: float, xi: float | Sequence[float]
) -> float:
    """App. C Eq. 9: Eq. 8 with ||G_hat_t||_F <= (1/tau) sqrt(2/B) (Lem. 3, Eq. 13):

        exp(S/(2 tau^2 B)) [ sqrt(2) C_Sigma S/(tau sqrt B) + (M_Sigma/2) sum_t eta_t^2 Xi_t ].
    Note: C_Sigma = sup_t ||J_t J_t^T - I||_2 >= 1 whenever J_t J_t^T is singular (e.g. Sigma(w) symmetric
    but stored with ordered coordinates (i,k), (k,i)); then the first term alone is >= sqrt(2) S/(tau sqrt B).
    """
    g_bound = math.sqrt(2.0 / check_positive_int("B", B)) / check_tau(tau)
    return appc_eq8_bound(eta, tau, B, C_sigma, M_sigma, xi, g_bound)


def appc_eq7_unrolled(
    eta: Sequence[float] | np.ndarray,
    tau: float,
    B: int,
    C_sigma: float,
    M_sigma: float,
    xi: float | Sequence[float],
    g_hat_norms: float | Sequence[float] | None = None,
) -> float:
    """Eq. 7 unrolled exactly (product form, before prod(1+a) <= exp(sum a)):

        E_T <= sum_s b_s prod_{u>s} (1 + eta_u/(2 tau^2 B)),  b_s = eta_s C_Sigma ||G_hat_s|| + (M/2) eta_s^2 Xi_s.
    g_hat_norms defaults to the Lem. 3 bound (1/tau) sqrt(2/B). Always <= ``appc_eq8_bound``.
    """
    eta, tau, B, C_sigma, M_sigma, xi = _appc_args(eta, tau, B, C_sigma, M_sigma, xi)
    g = _per_step("g_hat_norms", math.sqrt(2.0 / B) / tau if g_hat_norms is None else g_hat_norms, eta.size)
    b = eta * C_sigma * g + 0.5 * M_sigma * eta * eta * xi
    return unrolled_terminal(eta / (2.0 * tau * tau * B), b)


# ----------------------------------------------------------------------------------------------------------
# Loss-gap bound (companion paper), general temperature
# ----------------------------------------------------------------------------------------------------------
def loss_gap_bound_counts(n_same: int, n_neg: int, tau: float, form: str = "log") -> float:
    """Per-anchor DCL - NSCL gap bound from the denominator counts:  log(1 + n_same e^{2/tau} / n_neg).

    n_same = number of same-class, different-id keys in the DCL denominator (removed by NSCL), n_neg = number
    of different-class keys (n_neg >= 1). form="linear" returns n_same e^{2/tau}/n_neg (log(1+x) <= x).
    Tight: attained when all same-class logits are +1 and all negative logits are -1.
    """
    if isinstance(n_same, bool) or not isinstance(n_same, (int, np.integer)) or n_same < 0:
        raise ValueError(f"n_same must be an integer >= 0, got n_same={n_same!r}")
    n_neg = check_positive_int("n_neg", n_neg)
    tau = check_tau(tau)
    x = int(n_same) * _exp(2.0 / tau) / n_neg
    if form == "log":
        return math.log1p(x)
    if form == "linear":
        return x
    raise ValueError(f"form must be 'log' or 'linear', got form={form!r}")


def loss_gap_bound(
    C: int, tau: float, n_max: int | None = None, N: int | None = None, form: str = "log"
) -> float:
    """Loss-gap bound L^DCL - L^NSCL <= log(1 + n_max e^{2/tau} / (N - n_max))   (0 <= gap).

    Companion paper (Luthra et al. 2025; blog Part I states tau = 1: e^2/(C-1) and log(1 + e^2/(C-1)) for
    balanced classes, log(1 + n_max e^2/(N - n_max)) in general). With n_max = N = None the classes are
    balanced (n_max/(N - n_max) = 1/(C-1)): log(1 + e^{2/tau}/(C-1)). form="linear" gives the weaker
    n_max e^{2/tau}/(N - n_max) (= e^{2/tau}/(C-1) balanced).

    Proof (any tau > 0, K views, logits sim/tau with sim in [-1, 1]). For one term (anchor i, views l1, l2)
    the numerators of DCL and NSCL coincide, so
        loss^DCL - loss^NSCL = log(Z_all/Z_neg) = log(1 + Z_same/Z_neg),
    Z_same = sum over the K (n_y - 1) views of same-class j != i, Z_neg over the K (N - n_y) views of
    different-class j (n_y = size of the anchor's class). Each exp(sim/tau) lies in [e^{-1/tau}, e^{1/tau}]
    (Lem. 4), so Z_same/Z_neg <= (n_y - 1) e^{2/tau}/(N - n_y), K cancelling. n -> (n-1)/(N-n) is increasing
    on n < N (derivative (N-1)/(N-n)^2 > 0), so (n_y - 1)/(N - n_y) <= (n_max - 1)/(N - n_max)
    <= n_max/(N - n_max). log is increasing and the losses are averages of such terms, hence the bound;
    Z_same >= 0 gives gap >= 0. Balanced: n_max = N/C gives n_max/(N - n_max) = 1/(C - 1).               []
    """
    C = check_classes(C)
    tau = check_tau(tau)
    if (n_max is None) != (N is None):
        raise ValueError(f"n_max and N must be given together, got n_max={n_max!r}, N={N!r}")
    if n_max is None:
        x = _exp(2.0 / tau) / (C - 1)
    else:
        n_max = check_positive_int("n_max", n_max)
        N = check_positive_int("N", N)
        if not n_max < N:
            raise ValueError(f"n_max must be < N (some anchor needs a negative), got n_max={n_max}, N={N}")
        if n_max * C < N:
            raise ValueError(f"n_max must be >= N/C (largest of C classes), got n_max={n_max}, N={N}, C={C}")
        x = n_max * _exp(2.0 / tau) / (N - n_max)
    if form == "log":
        return math.log1p(x)
    if form == "linear":
        return x
    raise ValueError(f"form must be 'log' or 'linear', got form={form!r}")
