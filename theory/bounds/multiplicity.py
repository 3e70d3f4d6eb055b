"""Theorem 1 with anchor-row multiplicities: the forms valid when anchors share a Sigma row (batches drawn with
replacement), with their proof (pure numpy, float64).

Paper: Thm. 1 / Lem. 8 / Lem. 2 (App. D), re-proved without Lem. 1's one-anchor-per-row premise: the realised
multiplicities n_r (anchors on row r), m_t = max_r n_r, q_t = sum_r n_r^2 enter the rates
alpha_t = kappa eta_t m_t / (2 tau^2 B), gamma_t = kappa eta_t sqrt(q_t) Delta_t / (tau B) (kappa = 1 ordered,
2 symmetric Sigma); with m_t = 1, q_t = B, kappa = 1 they equal ``theory.bounds.thm1`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..constants import check_eta_schedule, check_positive_float, check_positive_int, check_tau, delta_c_delta
from .gronwall import _per_step, unrolled_terminal
from .thm1 import lem6_l2_sharp

__all__ = [
    "RowMultiplicity",
    "anchor_row_multiplicity",
    "thm1_rates_multiplicity",
    "thm1_unrolled_multiplicity",
    "thm1_trajectory_multiplicity",
    "thm1_bound_sharp_multiplicity",
]


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
