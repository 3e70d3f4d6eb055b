"""Theorem 1 (similarity-space coupling, Eq. 2) in its closed, Grönwall, unrolled and sharp forms, and the
sharpened Lemma 6 they use (pure numpy, float64).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Thm. 1 / Eq. 2,
App. D.4 and Lemmas 6-8. Forms from loosest to tightest: ``thm1_bound`` (Eq. 2), ``thm1_bound_gronwall``,
``thm1_unrolled`` (exact recurrence solution), ``thm1_bound_sharp`` (Delta -> lem6_l2_sharp(Delta)); all under
``THM1_PREMISE`` (every anchor on its own Sigma row). With duplicated rows: ``theory.bounds.multiplicity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..constants import check_eta_schedule, check_nonneg_float, check_positive_int, check_tau, delta_c_delta
from .gronwall import _exp, _per_step, drift_recurrence, unrolled_terminal

__all__ = [
    "THM1_PREMISE",
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
]


THM1_PREMISE = (
    "Cor. 3 event and CL-denominator logits in [-1, 1] for every anchor, ordered Sigma, and every anchor on its own "
    "Sigma row (row multiplicity m = 1) at every step"
)
"""The premise under which Thm. 1 (Eq. 2, Grönwall, unrolled and sharp forms) and Cors. 1-2 built on them are
proved (Lem. 8 through Lem. 1 and Lem. 2's block-diagonal Hessian)."""



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
