"""N x N quantities at eval points: sigma_D and the CKA / RSA certificates (Cors. 1-2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from theory.bounds import (
    cka_certificate_sharp,
    cor1_cka_bound,
    cor2_rsa_bound,
    cos_lower_bound_sharp,
    rsa_certificate_sharp,
)


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


