"""CKA and RSA of Sec. 3 evaluated by their N x N definitions on given similarity matrices.

The reference implementation (the Sigma-space simulation and the tests use it); theory/
alignment_features.py computes the same numbers from features without an N x N matrix.
Inputs may be numpy arrays or torch tensors (CPU or CUDA); accumulation in float64 over row blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._arrays import _TOL_EPS, _is_torch, _match_backend, _torch

__all__ = ["cka_gram", "rsa_gram", "RSA_TRIANGLES"]


# Rows per block in the N x N (gram) functions.
_GRAM_BLOCK_ELEMS = 1 << 22

RSA_TRIANGLES = ("upper", "lower", "both")


# ------------------------------------------------------------------------------------- N x N (gram) API
def _as_square(fn: str, name: str, S: object) -> Any:
    if _is_torch(S):
        if S.ndim != 2 or S.shape[0] != S.shape[1]:
            raise ValueError(f"{fn}: {name} must be a square (N, N) matrix, got shape {tuple(S.shape)}")
        if not S.dtype.is_floating_point:
            S = S.to(_torch().float64)
        return S.detach()
    a = np.asarray(S)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{fn}: {name} must be a square (N, N) matrix, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{fn}: {name} must be a real numeric matrix, got dtype={a.dtype}")
    return a


def _gram_pair(fn: str, S1: Any, S2: Any, n_min: int) -> tuple[Any, Any, int]:
    S1, S2 = _as_square(fn, "S1", S1), _as_square(fn, "S2", S2)
    S1, S2 = _match_backend(fn, S1, S2)
    if S1.shape[0] != S2.shape[0]:
        raise ValueError(f"{fn}: S1 and S2 must have the same N, got {S1.shape[0]} and {S2.shape[0]}")
    n = int(S1.shape[0])
    if n < n_min:
        raise ValueError(f"{fn}: needs N >= {n_min}, got N={n}")
    return S1, S2, n


def _block_f64(S: Any, r0: int, r1: int) -> Any:
    b = S[r0:r1]
    if _is_torch(b):
        return b.to(_torch().float64)
    return b.astype(np.float64, copy=False)


def _fsum(x: Any) -> float:
    return float(x.sum())


def _check_finite_block(fn: str, name: str, b: Any, r0: int) -> None:
    if _is_torch(b):
        ok = bool(_torch().isfinite(b).all())
    else:
        ok = bool(np.isfinite(b).all())
    if not ok:
        raise ValueError(f"{fn}: {name} has non-finite entries (first in rows >= {r0})")


def cka_gram(S1: Any, S2: Any) -> float:
    """CKA of Sec. 3 / Cor. 1 on given N x N similarity matrices (the N x N definition).

    CKA = <H S1 H, H S2 H>_F / (||H S1 H||_F ||H S2 H||_F),  H = I - (1/N) 1 1^T.
    (H S H)_ij = S_ij - rowmean_i - colmean_j + grandmean; computed explicitly in float64 row blocks
    (two passes, no cancellation-prone expansion). S1, S2 need not be symmetric nor in [-1, 1] (the
    Sigma-space simulation evolves ordered pairs freely, Eq. 1); for such non-PSD S the value can be
    negative (the [0, 1] range of Sec. 4.1 holds for PSD S, e.g. cosine matrices).

    Shape: S1 (N, N), S2 (N, N); numpy or torch. N >= 2.
    Raises ValueError if ||H S H||_F <= 1024 eps ||S||_F (zero within rounding, e.g. all rows equal).
    """
    fn = "cka_gram"
    S1, S2, n = _gram_pair(fn, S1, S2, 2)
    blk = max(1, _GRAM_BLOCK_ELEMS // n)
    stats = []
    for name, S in (("S1", S1), ("S2", S2)):
        row = []
        col = 0.0
        for r0 in range(0, n, blk):
            b = _block_f64(S, r0, min(n, r0 + blk))
            _check_finite_block(fn, name, b, r0)
            row.append(b.mean(1))
            col = col + b.sum(0)
        if _is_torch(S):
            row = _torch().cat(row)
        else:
            row = np.concatenate(row)
        col = col / n
        stats.append((row, col, float(row.mean())))
    (r1m, c1m, g1), (r2m, c2m, g2) = stats
    k12 = k11 = k22 = s11 = s22 = 0.0
    for r0 in range(0, n, blk):
        r1 = min(n, r0 + blk)
        b1 = _block_f64(S1, r0, r1)
        b2 = _block_f64(S2, r0, r1)
        s11 += _fsum(b1 * b1)
        s22 += _fsum(b2 * b2)
        b1 = b1 - r1m[r0:r1, None] - c1m[None, :] + g1
        b2 = b2 - r2m[r0:r1, None] - c2m[None, :] + g2
        k12 += _fsum(b1 * b2)
        k11 += _fsum(b1 * b1)
        k22 += _fsum(b2 * b2)
    eps = float(np.finfo(np.float64).eps)
    for name, k, s in (("S1", k11, s11), ("S2", k22, s22)):
        if math.sqrt(k) <= _TOL_EPS * eps * math.sqrt(s):
            raise ValueError(
                f"{fn}: centred similarity matrix H {name} H has zero norm "
                f"(all N={n} rows/columns identical?)"
            )
    return k12 / (math.sqrt(k11) * math.sqrt(k22))


def _tri_mask(like: Any, r0: int, r1: int, n: int, triangle: str) -> Any:
    if _is_torch(like):
        t = _torch()
        i = t.arange(r0, r1, device=like.device)[:, None]
        j = t.arange(n, device=like.device)[None, :]
    else:
        i = np.arange(r0, r1)[:, None]
        j = np.arange(n)[None, :]
    if triangle == "upper":
        return j > i
    if triangle == "lower":
        return j < i
    return j != i


def rsa_gram(S1: Any, S2: Any, triangle: str = "upper") -> float:
    """RSA of Sec. 3 / Cor. 2 on given N x N similarity matrices (the N x N definition).

    RSA = Pearson( vec_Delta(1 - S1), vec_Delta(1 - S2) ) over the M = N(N-1)/2 entries i < j
    (``triangle="upper"``, the paper's definition). Pearson(1 - a, 1 - b) = Pearson(a, b), so the entries of
    S are used directly. Two-pass (means, then centred products) in float64 row blocks.

    Non-symmetric S (ordered-pair Sigma of the simulation): with ``"upper"`` only S_ij, i < j enters and
    the lower triangle is IGNORED; ``"lower"`` uses i > j; ``"both"`` uses all N(N-1) off-diagonal entries
    (for a symmetric S all three give the same value). The diagonal never enters.

    Shape: S1 (N, N), S2 (N, N); numpy or torch. N >= 3.
    Raises ValueError if the selected entries of S1 or S2 are constant: std <= 1024 eps * max(RMS of the
    entries s, RMS of the RDM entries 1 - s), i.e. constant within the rounding of S or of 1 - S.
    """
    fn = "rsa_gram"
    if triangle not in RSA_TRIANGLES:
        raise ValueError(f"{fn}: triangle must be one of {', '.join(RSA_TRIANGLES)}, got triangle={triangle!r}")
    S1, S2, n = _gram_pair(fn, S1, S2, 3)
    blk = max(1, _GRAM_BLOCK_ELEMS // n)
    m = 0
    sa = sb = 0.0
    for r0 in range(0, n, blk):
        r1 = min(n, r0 + blk)
        mask = _tri_mask(S1, r0, r1, n, triangle)
        a = _block_f64(S1, r0, r1)[mask]
        b = _block_f64(S2, r0, r1)[mask]
        _check_finite_block(fn, "S1", a, r0)
        _check_finite_block(fn, "S2", b, r0)
        m += int(a.shape[0])
        sa += _fsum(a)
        sb += _fsum(b)
    ma, mb = sa / m, sb / m
    cab = caa = cbb = 0.0
    for r0 in range(0, n, blk):
        r1 = min(n, r0 + blk)
        mask = _tri_mask(S1, r0, r1, n, triangle)
        a = _block_f64(S1, r0, r1)[mask] - ma
        b = _block_f64(S2, r0, r1)[mask] - mb
        cab += _fsum(a * b)
        caa += _fsum(a * a)
        cbb += _fsum(b * b)
    eps = float(np.finfo(np.float64).eps)
    # Rounding scale: the larger RMS of the entries s and of the RDM entries 1 - s
    # (mean s^2 = var + mean^2, mean (1-s)^2 = var + (1 - mean)^2).
    for name, var_sum, mean in (("S1", caa, ma), ("S2", cbb, mb)):
        var = var_sum / m
        scale = math.sqrt(var + max(mean * mean, (1.0 - mean) ** 2))
        if math.sqrt(var) <= _TOL_EPS * eps * scale:
            raise ValueError(
                f"{fn}: {triangle}-triangle RDM entries of {name} are constant (zero variance over "
                f"M={m} entries), Pearson correlation undefined"
            )
    return cab / (math.sqrt(caa) * math.sqrt(cbb))


