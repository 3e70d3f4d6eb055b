"""Loss-gap bound L^DCL - L^NSCL of the companion paper, generalised to temperature tau (pure numpy, float64).

Companion paper (Luthra et al. 2025; blog "CL is approximately supervised", Part I: log(1 + e^2/(C-1)) at
tau = 1, balanced classes); proof for any tau > 0 in ``loss_gap_bound``.
"""

from __future__ import annotations

import math

import numpy as np

from ..constants import check_classes, check_positive_int, check_tau
from .gronwall import _exp

__all__ = ["loss_gap_bound", "loss_gap_bound_counts"]


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
