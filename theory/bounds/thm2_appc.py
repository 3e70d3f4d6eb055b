"""Theorem 2 (parameter-space coupling, App. B / D.3, Eq. 15) and App. C's surrogate-faithfulness bounds
(Eqs. 7-9), closed and unrolled forms (pure numpy, float64).

Both are the Grönwall recurrence of ``theory.bounds.gronwall`` with their own rates: Thm. 2 with L = beta,
g = G Delta / tau; App. C with L = 1/(2 tau^2 B), g_t = C_Sigma ||G_hat_t|| + M_Sigma eta_t Xi_t / 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..constants import (
    check_classes,
    check_eta_schedule,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_tau,
    delta_c_delta,
)
from .gronwall import _exp, _per_step, drift_recurrence, unrolled_terminal

__all__ = [
    "thm2_bound",
    "thm2_bound_from_delta",
    "thm2_unrolled",
    "thm2_unrolled_exp",
    "thm2_trajectory",
    "appc_eq7_unrolled",
    "appc_eq8_bound",
    "appc_eq9_bound",
]


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
