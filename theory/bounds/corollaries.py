"""Corollaries 1-2: CKA / RSA certificates from a drift bound, with the paper's and the tight cosine bound, and
the measured Cor. 1/2 ratios (pure numpy, float64).

Paper: Cor. 1 (CKA), Cor. 2 (RSA), Eq. 17 (cosine of nearby vectors). The tight bound sqrt(1 - rho^2)
(``cos_lower_bound_sharp``) is proved in its docstring and is never weaker than (1 - rho)/(1 + rho).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..constants import check_positive_float, check_positive_int

__all__ = [
    "Certificate",
    "cos_lower_bound_paper",
    "cos_lower_bound_sharp",
    "cor1_cka_bound",
    "cor2_rsa_bound",
    "cka_certificate_sharp",
    "rsa_certificate_sharp",
    "cka_ratio_measured",
    "rsa_ratio_measured",
]


def _check_drift(name: str, value: object) -> float:
    """Drift bound: a number >= 0; +inf is allowed (an overflowed, vacuous bound)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {name}={value!r}") from None
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {name}={value!r}")
    return v


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
