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


#: entries per row block of the N x N quantities (tests lower it to exercise several blocks)
BLOCK_ELEMS = 1 << 22


def _row_blocks(M: int):
    """(r0, r1) row blocks of about BLOCK_ELEMS entries: N x N quantities never form an (M, M) temporary."""
    blk = max(1, BLOCK_ELEMS // max(1, M))
    for r0 in range(0, M, blk):
        yield r0, min(M, r0 + blk)


def _block(S: Tensor, minus: Tensor | None, r0: int, r1: int) -> Tensor:
    """Rows r0:r1 of S (- minus) in float64 (on S's device)."""
    b = S[r0:r1].to(torch.float64)
    return b if minus is None else b - minus[r0:r1].to(torch.float64)


def upper_std(S: Tensor, minus: Tensor | None = None) -> float:
    """Population (ddof=0) std of the entries X_ij, i < j, of X = S (- minus) (sigma_D of Cor. 2 for RDM = 1 - S).
    Row blocks, float64 accumulation, on S's device. Shape: S, minus (M, M)."""
    M = S.shape[0]
    j = torch.arange(M, device=S.device)
    tot, cnt = 0.0, 0
    for r0, r1 in _row_blocks(M):
        mask = j[None, :] > torch.arange(r0, r1, device=S.device)[:, None]
        v = _block(S, minus, r0, r1)[mask]
        tot += float(v.sum())
        cnt += int(v.numel())
    mean = tot / cnt
    ss = 0.0
    for r0, r1 in _row_blocks(M):
        mask = j[None, :] > torch.arange(r0, r1, device=S.device)[:, None]
        v = _block(S, minus, r0, r1)[mask] - mean
        ss += float((v * v).sum())
    return math.sqrt(ss / cnt)


def centred_fro(S: Tensor, minus: Tensor | None = None) -> float:
    """||H X H||_F of X = S (- minus), H = I - 11^T/M (double centring): row blocks, float64. Shape: (M, M)."""
    M = S.shape[0]
    rsum = torch.zeros(M, dtype=torch.float64, device=S.device)
    csum = torch.zeros(M, dtype=torch.float64, device=S.device)
    for r0, r1 in _row_blocks(M):
        b = _block(S, minus, r0, r1)
        rsum[r0:r1] = b.sum(1)
        csum += b.sum(0)
    rm, cm = rsum / M, csum / M
    mean = float(rsum.sum()) / (M * M)
    ss = 0.0
    for r0, r1 in _row_blocks(M):
        c = _block(S, minus, r0, r1) - rm[r0:r1, None] - cm[None, :] + mean
        ss += float((c * c).sum())
    return math.sqrt(ss)


def fro(S: Tensor, minus: Tensor | None = None) -> float:
    """||S (- minus)||_F, row blocks, float64. Shape: (M, M)."""
    return math.sqrt(sum(float(_block(S, minus, r0, r1).square().sum()) for r0, r1 in _row_blocks(S.shape[0])))


def box_stats(S: Tensor) -> tuple[float, float]:
    """(max |S_ij|, fraction of entries with |S_ij| > 1), row blocks."""
    M = S.shape[0]
    mx, out = 0.0, 0
    for r0, r1 in _row_blocks(M):
        a = S[r0:r1].abs()
        mx = max(mx, float(a.max()))
        out += int((a > 1.0).sum())
    return mx, out / (M * M)


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
    rho_T = centred_fro(S2, S1) / k  # D = S2 - S1, never formed
    out["rho_exact"] = rho_T
    out["cka_lb_exact"] = cos_lower_bound_sharp(rho_T)
    out["r_bound"] = cor2_rsa_bound(bound, M, sd).ratio
    out["rsa_lb_paper"] = cor2_rsa_bound(bound, M, sd).lower_bound
    out["rsa_lb_sharp"] = rsa_certificate_sharp(bound, M, sd, symmetric=symmetric).lower_bound
    out["rsa_lb_meas"] = cor2_rsa_bound(meas, M, sd).lower_bound
    out["rsa_lb_meas_sharp"] = rsa_certificate_sharp(meas, M, sd, symmetric=symmetric).lower_bound
    r = upper_std(S2, S1) / sd
    out["r_exact"] = r
    out["rsa_lb_exact"] = cos_lower_bound_sharp(r)
    return out


