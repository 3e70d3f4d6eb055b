"""The discrete Grönwall recurrence shared by every bound here, and its exact product form (pure numpy, float64).

D_{t+1} = (1 + eta_t L_t) D_t + eta_t g_t is the recurrence of Thm. 1 (App. D.4), Thm. 2 / Eq. 15 (App. D.3)
and App. C Eq. 7; ``unrolled_terminal`` is its solution at T before 1 + x <= e^x. Also the small per-step
argument helpers of the bound modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..constants import check_eta_schedule, check_nonneg_float

__all__ = ["drift_recurrence", "unrolled_terminal"]


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
