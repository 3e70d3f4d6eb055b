"""High-probability constants of the paper and argument validators.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 3
(notation for high-probability factors) and App. D, Cor. 3:

    eps_{B,delta}          = sqrt( log(T B / delta) / (2 B) )
    Delta_{C,delta}(B;tau) = 2 e^{2/tau} (1/C + eps_{B,delta}) / (1 - 1/C - eps_{B,delta}),
                             defined only when eps_{B,delta} < 1 - 1/C.

Every validator raises ``ValueError`` with ONE line naming the argument, its value and the condition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

__all__ = [
    "eps_b_delta",
    "delta_c_delta",
    "delta_from_eps",
    "check_tau",
    "check_delta",
    "check_classes",
    "check_positive_int",
    "check_positive_float",
    "check_nonneg_float",
    "check_eta_schedule",
    "check_nonneg_int",
    "check_bool",
    "check_choice",
    "exp_or_inf",
]


def _fmt(x: object) -> str:
    """repr of a value for error messages (numpy scalars shown as plain Python numbers)."""
    if isinstance(x, np.generic):
        x = x.item()
    r = repr(x).replace("\n", " ")
    return r if len(r) <= 80 else r[:77] + "..."


def _is_real_number(x: object) -> bool:
    return isinstance(x, (Real, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise a one-line ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {name}={_fmt(value)}")
    if int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {name}={_fmt(value)}")
    return int(value)


def check_nonneg_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is an integer >= 0 (counts, seeds, "every k steps"), else a one-line
    ValueError. The ONE validator for seeds and non-negative counts."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, np.integer)) or int(value) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={_fmt(value)}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` as bool if it is a bool (not 0 / 1 / "yes"), else a one-line ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {name}={_fmt(value)}")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``, else a one-line ValueError listing them."""
    try:
        ok = value in choices
    except TypeError:  # unhashable / incomparable value
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {name}={_fmt(value)}")
    return value


def exp_or_inf(x: float) -> float:
    """e^x, or +inf where it overflows a float64 (x > ~709.78): an overflowing bound is vacuous, not an error."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as float if it is a finite real > 0, else raise a one-line ValueError."""
    if not _is_real_number(value) or not math.isfinite(float(value)) or float(value) <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {name}={_fmt(value)}")
    return float(value)


def check_nonneg_float(name: str, value: object) -> float:
    """Return ``value`` as float if it is a finite real >= 0, else raise a one-line ValueError."""
    if not _is_real_number(value) or not math.isfinite(float(value)) or float(value) < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={_fmt(value)}")
    return float(value)


def check_tau(tau: object) -> float:
    """Temperature: finite real > 0."""
    if not _is_real_number(tau) or not math.isfinite(float(tau)):
        raise ValueError(f"tau must be a finite number > 0, got tau={_fmt(tau)}")
    if float(tau) <= 0.0:
        raise ValueError(f"tau must be > 0, got tau={_fmt(tau)}")
    return float(tau)


def check_delta(delta: object) -> float:
    """Confidence level: real in the open interval (0, 1)."""
    if not _is_real_number(delta) or not (0.0 < float(delta) < 1.0):
        raise ValueError(f"delta must satisfy 0 < delta < 1, got delta={_fmt(delta)}")
    return float(delta)


def check_classes(C: object) -> int:
    """Number of classes: integer >= 2."""
    if isinstance(C, (bool, np.bool_)) or not isinstance(C, (Integral, np.integer)) or int(C) < 2:
        raise ValueError(f"C (number of classes) must be an integer >= 2, got C={_fmt(C)}")
    return int(C)


def check_eta_schedule(eta: object, T: int | None = None) -> np.ndarray:
    """Step-size schedule eta_0..eta_{T-1}: non-empty 1-D sequence of finite reals >= 0.

    A scalar is NOT accepted (pass ``[eta] * T``). If ``T`` is given, ``len(eta)`` must equal ``T``.

    Shape: eta (T,) -> np.ndarray float64 (T,)
    """
    if isinstance(eta, (str, bytes)) or not isinstance(eta, (Sequence, np.ndarray)):
        raise ValueError(f"eta must be a 1-D sequence of step sizes eta_0..eta_(T-1), got eta={_fmt(eta)}")
    try:
        arr = np.asarray(eta, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a 1-D sequence of finite numbers >= 0, got eta={_fmt(eta)}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"eta must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"eta must be finite, got eta[{i}]={float(arr[i])!r}")
    if np.any(arr < 0):
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"eta must be >= 0, got eta[{i}]={float(arr[i])!r}")
    if T is not None:
        T = check_positive_int("T", T)
        if arr.size != T:
            raise ValueError(f"eta must have length T={T}, got len(eta)={arr.size}")
    return arr


def eps_b_delta(B: int, T: int, delta: float) -> float:
    """eps_{B,delta} = sqrt( log(T B / delta) / (2 B) )   (Sec. 3; App. D, Cor. 3).

    Hoeffding deviation such that, with probability >= 1 - delta, every anchor of every one of the
    T steps sees at least B (1 - 1/C - eps) negatives (Lem. 5 with a union bound over T B anchors).
    """
    B = check_positive_int("B", B)
    T = check_positive_int("T", T)
    delta = check_delta(delta)
    return math.sqrt(math.log(T * B / delta) / (2.0 * B))


def delta_c_delta(C: int, B: int, T: int, delta: float, tau: float) -> float:
    """Delta_{C,delta}(B; tau) = 2 e^{2/tau} (1/C + eps) / (1 - 1/C - eps), eps = eps_{B,delta}.

    Sec. 3 and App. D, Cor. 3 (Eq. 14: Z_pos / Z_neg <= Delta / 2). Undefined (ValueError) when
    eps >= 1 - 1/C, as the paper assumes eps < 1 - 1/C. For tau < 2/709.78 (about 0.0028) e^{2/tau}
    overflows a float64: the result is +inf (every bound built on it is vacuous), not an OverflowError.
    """
    C = check_classes(C)
    tau = check_tau(tau)
    eps = eps_b_delta(B, T, delta)
    margin = 1.0 - 1.0 / C
    if eps >= margin:
        raise ValueError(
            f"eps_b_delta={eps:.4g} >= 1 - 1/C={margin:.4g}: Delta_{{C,delta}} is undefined "
            f"(need larger B or smaller T*B/delta; B={B}, T={T}, delta={delta}, C={C})"
        )
    return delta_from_eps(C, eps, tau)


def delta_from_eps(C: int, eps: float, tau: float) -> float:
    """2 e^{2/tau} (1/C + eps) / (1 - 1/C - eps) at a given eps >= 0 (the formula of ``delta_c_delta``, which
    uses eps = eps_{B,delta}; the adversarial search uses the smallest eps of a given batch).

    ValueError if eps >= 1 - 1/C; +inf if e^{2/tau} overflows.
    """
    C = check_classes(C)
    tau = check_tau(tau)
    eps = check_nonneg_float("eps", eps)
    margin = 1.0 - 1.0 / C
    if eps >= margin:
        raise ValueError(f"eps must be < 1 - 1/C = {margin:.4g} for Delta to be defined, got eps={eps:.4g}")
    return 2.0 * exp_or_inf(2.0 / tau) * (1.0 / C + eps) / (margin - eps)
