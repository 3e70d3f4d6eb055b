"""CKA and RSA of Sec. 3 computed from features (O(N d^2), no N x N matrix), and linear CKA on raw features.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 3 (CKA and RSA
on cosine-similarity matrices), Sec. 4.1 (Cors. 1-2 use the same definitions), Sec. 5 (NCCC accuracy,
Tab. 1) and Sec. 5.1 (relative weight gap, Fig. 6).

Definitions (Sec. 3). For N inputs with embeddings z_i, z'_i (rows of X, Y):

    Sigma_ij = cos(z_i, z_j),   H = I - (1/N) 1 1^T
    CKA(Z, Z') = <H Sigma H, H Sigma' H>_F / (||H Sigma H||_F ||H Sigma' H||_F)
    RSA(Z, Z') = Pearson corr of { RDM_ij : i < j } and { RDM'_ij : i < j },   RDM = 1 1^T - Sigma

``cka_gram`` / ``rsa_gram`` evaluate these N x N definitions on given similarity matrices (the Sigma-space
simulation). ``cka`` / ``rsa`` / ``cka_rsa`` compute the SAME numbers from features in O(N d^2) time and
O(d^2) extra memory, never forming an N x N matrix (rows processed in chunks, normalisation fused with the
Gram accumulation). The identities used (u_i = z_i / ||z_i||, U = rows u_i, so Sigma = U U^T):

  Centring.  m = (1/N) sum_i u_i,  R = H U (rows r_i = u_i - m),  C_uv = R^T R' = (HU)^T (HV)   (d x d').
  CKA.       H Sigma H = R R^T, so <H Sigma H, H Sigma' H>_F = tr(R R^T R' R'^T) = ||R^T R'||_F^2 and
             ||H Sigma H||_F = ||R^T R||_F:   CKA = ||C_uv||_F^2 / (||C_uu||_F ||C_vv||_F).
  RSA.       Pearson(alpha a + beta, alpha b + beta') = Pearson(a, b) for any alpha != 0 (same alpha), so
             RSA = Corr over i<j of RDM_ij = 1 - cos_ij = ||u_i - u_j||^2 / 2 (unit rows). With
             rho_i = ||r_i||^2, tau = mean_i rho_i = tr(C_uu)/N, e_i = rho_i - tau and g_ij = r_i . r_j:
                 2 RDM_ij = rho_i + rho_j - 2 g_ij,   mean over all N^2 entries = 2 tau,
             and because sum_j g_ij = 0 and sum_i e_i = 0 every mixed term sums to zero:
                 sum_{i,j} (2RDM_ij - 2tau)(2RDM'_ij - 2tau') = 2N sum_i e_i e'_i + 4 ||C_uv||_F^2.
             The diagonal (RDM_ii = 0) is removed exactly: the off-diagonal mean is 2tau N/(N-1), and
                 D_uv := (1/4) sum_{i != j} (2RDM_ij - mean)(2RDM'_ij - mean')
                       = (N/2) sum_i e_i e'_i + ||C_uv||_F^2 - tr(C_uu) tr(C_vv) / (N - 1).
             RDM is symmetric, so the i<j sums are half the i != j sums:  RSA = D_uv / sqrt(D_uu D_vv).
             Needs, beyond C, the per-row centred norms rho_i (sum_i rho_i rho'_i), accumulated in the
             same pass. (Equivalent raw-sum form of the brief: sum_{i,j} Sigma_ij = ||sum_i u_i||^2,
             sum_{i,j} Sigma_ij^2 = ||U^T U||_F^2, sum_{i,j} Sigma_ij Sigma'_ij = ||U^T V||_F^2, minus the
             diagonal (N ones), halved. Those sums, and even the centred cosine form
             2N m^T C_uv m' + ||C_uv||^2 with m . r_i = O(||r||^2), lose accuracy like eps/||r||^2 when
             rows are nearly parallel: 7e-6 absolute RSA error observed at row spread 1e-5 against an
             mpmath reference. The distance form above keeps full relative accuracy.)

Numerics. Everything is accumulated in float64 by default (``dtype`` selects another compute dtype; the
final scalar algebra is always float64). The d x d moments are accumulated after subtracting a shift
(the first unit row), C = S - t t^T / N with S = sum (u_i - c)(v_i - c')^T, t = sum (u_i - c): exact
algebra, and rows that are all identical give exactly C = 0.

Degenerate input raises a one-line ValueError (never NaN, never a silent epsilon):
  - a zero row (cosine undefined) or a non-finite row; N < 2 (CKA) / N < 3 (RSA); mismatched N;
  - CKA: H Sigma H = 0, detected as tr(C_uu) <= (1024 eps)^2 * N, i.e. the RMS distance of the unit rows
    from their centroid is below 1024 machine epsilons (all rows identical up to scale and rounding);
  - RSA: rows identical up to scale (as for CKA), or a constant off-diagonal Sigma (e.g. orthonormal
    rows), detected as D_uu <= 1024 eps * (sum of the magnitudes of the terms D_uu is the difference of).
eps is the machine epsilon of the compute dtype.

Inputs may be numpy arrays or torch tensors (CPU or CUDA; computed on the tensor's device, no grad).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._arrays import (
    _TOL_EPS,
    _bad_row_error,
    _check_n,
    _compute_dtype,
    _eps,
    _f64,
    _is_torch,
    _match_backend,
    _pair,
    _torch,
)

__all__ = ["cka", "rsa", "cka_rsa", "linear_cka"]


# Rows per chunk when accumulating d x d moments: at most _CHUNK_ROWS rows and _CHUNK_ELEMS elements
# (numpy: 1024 rows with in-place BLAS syrk/gemm accumulation is as fast as one big product, measured);
# torch (CUDA) uses bigger chunks to amortise kernel launches.
_CHUNK_ROWS = 1024
_CHUNK_ELEMS = 1 << 22
_CHUNK_ROWS_TORCH = 8192
_CHUNK_ELEMS_TORCH = 1 << 25
# CPU tensors go through the numpy/BLAS path (zero-copy view; syrk halves the X^T X work). Tests switch
# this off to exercise the torch path on CPU.
_TORCH_CPU_VIA_NUMPY = True


def _chunk_rows(chunk_size: int | None, n: int, d: int, torch_path: bool = False) -> int:
    if chunk_size is None:
        if torch_path:
            return max(1, min(n, _CHUNK_ROWS_TORCH, _CHUNK_ELEMS_TORCH // max(d, 1)))
        return max(1, min(n, _CHUNK_ROWS, _CHUNK_ELEMS // max(d, 1)))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1 or None, got chunk_size={chunk_size!r}")
    return int(min(chunk_size, n))


class _Moments(NamedTuple):
    """Centred moments of the (optionally l2-normalised) rows of X and Y; float64 numpy.

    Shape: mean_x (dx,), mean_y (dy,), cxx (dx, dx), cyy (dy, dy), cxy (dx, dy).
    sq_total_x = sum_i ||x_i||^2 of the (normalised) rows.
    ``rho`` (only when requested, else None): (sum_i rx_i^2, sum_i ry_i^2, sum_i rx_i ry_i) with the
    CENTRED per-row squared norms rx_i = ||x_i - mean_x||^2, ry_i = ||y_i - mean_y||^2.
    """

    n: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    cxx: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray
    sq_total_x: float
    sq_total_y: float
    rho: tuple[float, float, float] | None
    eps: float


def _moments(
    fn: str,
    X: Any,
    Y: Any,
    *,
    normalize: bool,
    chunk_size: int | None,
    dtype: Any,
    rownorms: bool = False,
) -> _Moments:
    """One pass over the rows of X and Y: chunked, fused normalisation + shifted Gram accumulation."""
    X, Y = _match_backend(fn, X, Y)
    dt = _compute_dtype(fn, X, dtype)
    same = Y is X
    n, dx, dy = int(X.shape[0]), int(X.shape[1]), int(Y.shape[1])
    if _is_torch(X) and X.device.type == "cpu" and _TORCH_CPU_VIA_NUMPY:
        X = _cpu_tensor_to_numpy(X)
        Y = X if same else _cpu_tensor_to_numpy(Y)
        dt = np.dtype(str(dt).replace("torch.", ""))
    if _is_torch(X):
        rows = _chunk_rows(chunk_size, n, max(dx, dy), torch_path=True)
        return _moments_torch(fn, X, Y, same, n, dx, dy, rows, dt, normalize, rownorms)
    rows = _chunk_rows(chunk_size, n, max(dx, dy))
    return _moments_numpy(fn, X, Y, same, n, dx, dy, rows, dt, normalize, rownorms)


def _cpu_tensor_to_numpy(x: Any) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor (float16 / bfloat16 are widened to float32 first)."""
    t = _torch()
    x = x.detach()
    if x.dtype in (t.float16, t.bfloat16):
        x = x.to(t.float32)
    return x.numpy()


def _rank1_sub_(a: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    """In place a -= u v^T, in row blocks (no d x d temporary)."""
    if not a.flags.c_contiguous and a.flags.f_contiguous:
        a, u, v = a.T, v, u
    step = max(1, (1 << 18) // max(a.shape[1], 1))
    for i in range(0, a.shape[0], step):
        a[i : i + step] -= u[i : i + step, None] * v[None, :]


def _symmetrize_upper_(a: np.ndarray) -> None:
    """Copy the upper triangle (syrk output) into the lower one, in place, in blocks."""
    d = a.shape[0]
    step = 256
    for i in range(0, d, step):
        j = min(d, i + step)
        a[i:j, :i] = a[:i, i:j].T
        blk = a[i:j, i:j]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T


def _finish(
    n: int,
    cx: Any,
    cy: Any,
    tx: Any,
    ty: Any,
    sxx: Any,
    syy: Any,
    sxy: Any,
    sqx: float,
    sqy: float,
    deb_raw: dict[str, Any] | None,
    eps: float,
    same: bool,
) -> _Moments:
    """Shifted sums -> centred moments (float64 numpy). x_i - m = y_i - delta with y_i = x_i - c, delta = t/N.

    The accumulators are centred IN PLACE (C = S - t delta^T); quadratic forms of the shifted S needed by
    the row-norm expansion are taken before that.
    """
    cx, cy, tx, ty = _f64(cx), _f64(cy), _f64(tx), _f64(ty)
    dlx, dly = tx / n, ty / n
    sxx = _f64(sxx)
    syy = sxx if same else _f64(syy)
    sxy = sxx if same else _f64(sxy)
    quad = None
    if deb_raw is not None:
        quad = {("x", "x"): float(dlx @ sxx @ dlx), ("y", "y"): float(dly @ syy @ dly),
                ("x", "y"): float(dlx @ sxy @ dly)}
    _rank1_sub_(sxx, tx, dlx)
    if same:
        cxx = cyy = cxy = sxx
    else:
        _rank1_sub_(syy, ty, dly)
        _rank1_sub_(sxy, tx, dly)
        cxx, cyy, cxy = sxx, syy, sxy
    deb = None
    if deb_raw is not None:
        # Centred per-row squared norms khat_{p,i} = k_{p,i} - 2 y_{p,i}.d_p + a_p (k = |y|^2 of the SHIFTED
        # rows, d_p = delta_p, a_p = |d_p|^2, sum_i y_{p,i}.d_p = N a_p). Expanding the product:
        # sum khat_p khat_q = sum k_p k_q - 2 (Y_q^T k_p).d_q - 2 (Y_p^T k_q).d_p + a_q sum k_p + a_p sum k_q
        #                     + 4 d_p^T S_pq d_q - 3 N a_p a_q.
        d = {"x": dlx, "y": dly}
        a = {"x": float(dlx @ dlx), "y": float(dly @ dly)}
        sk = {p: float(deb_raw["k" + p]) for p in "xy"}

        def kk(p: str, q: str) -> float:
            return (float(deb_raw["kk" + p + q]) - 2.0 * float(_f64(deb_raw["Y" + q + "k" + p]) @ d[q])
                    - 2.0 * float(_f64(deb_raw["Y" + p + "k" + q]) @ d[p]) + a[q] * sk[p] + a[p] * sk[q]
                    + 4.0 * quad[(p, q)] - 3.0 * n * a[p] * a[q])

        deb = (kk("x", "x"), kk("y", "y"), kk("x", "y"))
    return _Moments(n, cx + dlx, cy + dly, cxx, cyy, cxy, float(sqx), float(sqy), deb, eps)


def _moments_numpy(fn, X, Y, same, n, dx, dy, rows, dt, normalize, rownorms) -> _Moments:
    from scipy.linalg import get_blas_funcs

    syrk, gemm = get_blas_funcs(("syrk", "gemm"), dtype=dt)
    bx = np.empty((rows, dx), dtype=dt)
    by = bx if same else np.empty((rows, dy), dtype=dt)
    # Fortran-ordered accumulators updated in place by BLAS (beta=1): no d x d temporaries per chunk.
    # syrk fills the upper triangle only; symmetrised once at the end.
    sxx = np.zeros((dx, dx), dtype=dt, order="F")
    syy = None if same else np.zeros((dy, dy), dtype=dt, order="F")
    sxy = None if same else np.zeros((dx, dy), dtype=dt, order="F")
    tx = np.zeros(dx, dtype=np.float64)
    ty = tx if same else np.zeros(dy, dtype=np.float64)
    sqx = sqy = 0.0
    cx = cy = None
    deb: dict[str, Any] | None = None
    if rownorms:
        deb = {"kkxx": 0.0, "kkyy": 0.0, "kkxy": 0.0, "kx": 0.0, "ky": 0.0,
               "Yxkx": np.zeros(dx), "Yxky": np.zeros(dx), "Yykx": np.zeros(dy), "Yyky": np.zeros(dy)}

    def load(src, buf, name, s, e):
        """Chunk of rows -> buf (compute dtype), l2-normalised if asked: one fused pass when no cast is needed."""
        xs, ub = src[s:e], buf[: e - s]
        if xs.dtype != dt:
            np.copyto(ub, xs, casting="unsafe")
            xs = ub
        nrm2 = np.einsum("ij,ij->i", xs, xs)
        bad = ~np.isfinite(nrm2)
        if normalize:
            bad |= nrm2 == 0.0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _bad_row_error(fn, name, s + i, float(nrm2[i]), normalize)
        if normalize:
            np.divide(xs, np.sqrt(nrm2)[:, None], out=ub)
            sq = float(e - s)
        else:
            if xs is not ub:
                np.copyto(ub, xs)
            sq = float(nrm2.sum(dtype=np.float64))
        return ub, sq

    def centred(src, buf, name, s, e, c, t):
        """load(...) centred in place on c (the first row seen; returned), its column sums added to t."""
        u, q = load(src, buf, name, s, e)
        if c is None:
            c = u[0].copy()
        np.subtract(u, c, out=u)
        t += u.sum(0, dtype=np.float64)
        return u, q, c

    for s in range(0, n, rows):
        e = min(n, s + rows)
        ux, q, cx = centred(X, bx, "X", s, e, cx, tx)
        sqx += q
        sxx = syrk(1.0, ux.T, beta=1.0, c=sxx, overwrite_c=1)  # ux.T is F-contiguous: no copy
        if same:
            uy, sqy, cy = ux, sqx, cx
        else:
            uy, q, cy = centred(Y, by, "Y", s, e, cy, ty)
            sqy += q
            syy = syrk(1.0, uy.T, beta=1.0, c=syy, overwrite_c=1)
            sxy = gemm(1.0, ux.T, uy.T, trans_b=1, beta=1.0, c=sxy, overwrite_c=1)
        if deb is not None:
            k = np.einsum("ij,ij->i", ux, ux)
            l = k if same else np.einsum("ij,ij->i", uy, uy)
            kl = np.stack([k, l], axis=1)
            deb["kkxx"] += float(k @ k)
            deb["kkyy"] += float(l @ l)
            deb["kkxy"] += float(k @ l)
            deb["kx"] += float(k.sum())
            deb["ky"] += float(l.sum())
            p = ux.T @ kl
            deb["Yxkx"] += p[:, 0]
            deb["Yxky"] += p[:, 1]
            p = p if same else uy.T @ kl
            deb["Yykx"] += p[:, 0]
            deb["Yyky"] += p[:, 1]
    _symmetrize_upper_(sxx)
    if not same:
        _symmetrize_upper_(syy)
    return _finish(n, cx, cy, tx, ty, sxx, syy, sxy, sqx, sqy, deb, _eps(dt), same)


def _moments_torch(fn, X, Y, same, n, dx, dy, rows, dt, normalize, rownorms) -> _Moments:
    torch = _torch()
    dev = X.device
    acc = torch.float64
    with torch.no_grad():
        sxx = torch.zeros((dx, dx), dtype=dt, device=dev)
        syy = None if same else torch.zeros((dy, dy), dtype=dt, device=dev)
        sxy = None if same else torch.zeros((dx, dy), dtype=dt, device=dev)
        tx = torch.zeros(dx, dtype=acc, device=dev)
        ty = tx if same else torch.zeros(dy, dtype=acc, device=dev)
        sq = torch.zeros(2, dtype=acc, device=dev)
        deb: dict[str, Any] | None = None
        if rownorms:
            z = lambda m: torch.zeros(m, dtype=acc, device=dev)  # noqa: E731
            deb = {"kkxx": z(()), "kkyy": z(()), "kkxy": z(()), "kx": z(()), "ky": z(()),
                   "Yxkx": z(dx), "Yxky": z(dx), "Yykx": z(dy), "Yyky": z(dy)}
        cx = cy = None
        bad_any = torch.zeros((), dtype=torch.bool, device=dev)

        def load(src, s, e):
            ub = src[s:e].to(dtype=dt, copy=True)
            nrm2 = (ub * ub).sum(1)
            bad = ~torch.isfinite(nrm2)
            if normalize:
                bad |= nrm2 == 0
                ub.div_(nrm2.sqrt()[:, None])
                q = float(e - s)
            else:
                q = nrm2.sum(dtype=acc)
            return ub, q, nrm2, bad

        def accumulate(src, s, e, c, i, t, S):
            """Rows s:e of src, centred on c (the first row seen) in place, added to sq[i], t and S = U^T U."""
            u, q, _, bad = load(src, s, e)
            sq[i] += q
            if c is None:
                c = u[0].clone()
            u.sub_(c)
            t += u.sum(0, dtype=acc)
            S.addmm_(u.T, u)
            return u, c, bad.any()

        for s in range(0, n, rows):
            e = min(n, s + rows)
            ux, cx, bad = accumulate(X, s, e, cx, 0, tx, sxx)
            bad_any |= bad
            if same:
                uy, cy = ux, cx
            else:
                uy, cy, bad = accumulate(Y, s, e, cy, 1, ty, syy)
                bad_any |= bad
                sxy.addmm_(ux.T, uy)
            if deb is not None:
                k = (ux * ux).sum(1)
                l = k if same else (uy * uy).sum(1)
                kl = torch.stack([k, l], dim=1)
                k64, l64 = k.to(acc), l.to(acc)
                deb["kkxx"] += k64 @ k64
                deb["kkyy"] += l64 @ l64
                deb["kkxy"] += k64 @ l64
                deb["kx"] += k64.sum()
                deb["ky"] += l64.sum()
                p = (ux.T @ kl).to(acc)
                deb["Yxkx"] += p[:, 0]
                deb["Yxky"] += p[:, 1]
                p = p if same else (uy.T @ kl).to(acc)
                deb["Yykx"] += p[:, 0]
                deb["Yyky"] += p[:, 1]
        if bool(bad_any):  # one device sync; locate the first bad row for the message
            for name, src in (("X", X), ("Y", Y)):
                for s in range(0, n, rows):
                    e = min(n, s + rows)
                    _, _, nrm2, bad = load(src, s, e)
                    if bool(bad.any()):
                        i = int(torch.nonzero(bad)[0, 0])
                        raise _bad_row_error(fn, name, s + i, float(nrm2[i]), normalize)
        sqx = float(sq[0])
        sqy = sqx if same else float(sq[1])
        return _finish(n, cx, cy, tx, ty, sxx, syy, sxy, sqx, sqy, deb, _eps(dt), same)


def _sq(a: np.ndarray) -> float:
    """||a||_F^2 (memory-order view: no copy for the Fortran-ordered accumulators)."""
    v = a.ravel(order="K")
    return float(v @ v)


def _check_centred(fn: str, mo: _Moments, which: str, rsa: bool = False) -> None:
    """Raise if H Sigma H = 0 within rounding: tr(C) <= (1024 eps)^2 sum_i ||x_i||^2 (rows equal up to scale)."""
    c, total = (mo.cxx, mo.sq_total_x) if which == "X" else (mo.cyy, mo.sq_total_y)
    tr = float(np.trace(c))
    if tr <= (_TOL_EPS * mo.eps) ** 2 * total:
        if rsa:
            raise ValueError(
                f"{fn}: off-diagonal RDM entries of {which} are constant (all N={mo.n} rows identical up to "
                f"scale), Pearson correlation undefined"
            )
        raise ValueError(
            f"{fn}: centred similarity matrix of {which} has zero norm "
            f"(all N={mo.n} rows identical up to scale?)"
        )


def _cka_from(mo: _Moments, fn: str) -> float:
    _check_centred(fn, mo, "X")
    _check_centred(fn, mo, "Y")
    num = _sq(mo.cxy)
    den = math.sqrt(_sq(mo.cxx)) * math.sqrt(_sq(mo.cyy))
    return num / den


def _rsa_from(mo: _Moments, fn: str) -> float:
    """Pearson of the i<j entries of RDM_ij = 1 - cos_ij = ||u_i - u_j||^2 / 2 (unit rows), centred form.

    With rho_i = ||u_i - m||^2, tau = mean rho = tr(C)/N, e_i = rho_i - tau, g_ij = r_i . r_j:
    2 RDM_ij = rho_i + rho_j - 2 g_ij, whose mean over all N^2 entries is 2 tau, and (sum_j g_ij = 0)
        sum_{i,j} (2RDM_ij - 2tau)(2RDM'_ij - 2tau') = 2N sum_i e_i e'_i + 4 ||C_uv||_F^2.
    The diagonal (RDM_ii = 0) is removed exactly: over i != j, divided by 4,
        D_uv = (N/2) sum_i e_i e'_i + ||C_uv||_F^2 - tr(C_uu) tr(C_vv) / (N - 1).
    """
    n = mo.n
    _check_centred(fn, mo, "X", rsa=True)
    _check_centred(fn, mo, "Y", rsa=True)
    trx, try_ = float(np.trace(mo.cxx)), float(np.trace(mo.cyy))
    rxx, ryy, rxy = mo.rho
    ee = {"xx": rxx - trx * trx / n, "yy": ryy - try_ * try_ / n, "xy": rxy - trx * try_ / n}
    dxx = 0.5 * n * ee["xx"] + _sq(mo.cxx) - trx * trx / (n - 1)
    dyy = 0.5 * n * ee["yy"] + _sq(mo.cyy) - try_ * try_ / (n - 1)
    dxy = 0.5 * n * ee["xy"] + _sq(mo.cxy) - trx * try_ / (n - 1)
    for name, d, r2, c2, tr in (("X", dxx, rxx, _sq(mo.cxx), trx), ("Y", dyy, ryy, _sq(mo.cyy), try_)):
        scale = 0.5 * n * (r2 + tr * tr / n) + c2 + tr * tr / (n - 1)
        if d <= _TOL_EPS * mo.eps * scale:
            raise ValueError(
                f"{fn}: off-diagonal RDM entries of {name} are constant (zero variance over the "
                f"N(N-1)/2={n * (n - 1) // 2} pairs), Pearson correlation undefined"
            )
    return dxy / math.sqrt(dxx * dyy)


# ---------------------------------------------------------------------------------- feature-space API
def cka(X: Any, Y: Any, *, chunk_size: int | None = None, dtype: Any = None) -> float:
    """CKA of Sec. 3 on cosine-similarity matrices, computed from features without any N x N matrix.

    CKA = <H Sigma H, H Sigma' H>_F / (||H Sigma H||_F ||H Sigma' H||_F),  Sigma_ij = cos(x_i, x_j).
    With unit rows U (u_i = x_i/||x_i||), V:  <H U U^T H, H V V^T H>_F = ||(HU)^T (HV)||_F^2  and
    ||H U U^T H||_F^2 = ||(HU)^T (HU)||_F^2, so CKA = ||C_uv||_F^2 / (||C_uu||_F ||C_vv||_F) with the
    centred d x d moments C (module docstring). O(N d^2) time, O(d^2 + chunk d) extra memory.

    Shape: X (N, dx), Y (N, dy); numpy or torch (any device). Returns a float in [0, 1].
    chunk_size: rows per chunk (None: automatic). dtype: compute dtype (default float64).
    Raises ValueError for N < 2, mismatched N, zero / non-finite rows, H Sigma H = 0.
    """
    X, Y = _pair("cka", X, Y)
    _check_n("cka", X, Y, 2)
    mo = _moments("cka", X, Y, normalize=True, chunk_size=chunk_size, dtype=dtype)
    return _cka_from(mo, "cka")


def rsa(X: Any, Y: Any, *, chunk_size: int | None = None, dtype: Any = None) -> float:
    """RSA of Sec. 3: Pearson correlation of the i<j entries of RDM = 1 - Sigma, from features.

    For unit rows RDM_ij = ||u_i - u_j||^2 / 2; with centred rows r_i = u_i - m, rho_i = ||r_i||^2,
    e_i = rho_i - mean(rho) and C_uv = R^T R' (module docstring):
        sum_{i<j} (RDM_ij - mean)(RDM'_ij - mean') = (1/2) [(N/2) sum_i e_i e'_i + ||C_uv||_F^2
                                                            - tr(C_uu) tr(C_vv) / (N - 1)] =: D_uv / 2
    and RSA = D_uv / sqrt(D_uu D_vv). No N x N matrix; O(N d^2) time, O(d^2 + chunk d) memory.

    Shape: X (N, dx), Y (N, dy); numpy or torch. Returns a float in [-1, 1].
    chunk_size, dtype: as in ``cka``.
    Raises ValueError for N < 3, mismatched N, zero / non-finite rows, constant off-diagonal Sigma.
    """
    X, Y = _pair("rsa", X, Y)
    _check_n("rsa", X, Y, 3)
    mo = _moments("rsa", X, Y, normalize=True, chunk_size=chunk_size, dtype=dtype, rownorms=True)
    return _rsa_from(mo, "rsa")


def cka_rsa(X: Any, Y: Any, *, chunk_size: int | None = None, dtype: Any = None) -> tuple[float, float]:
    """(cka(X, Y), rsa(X, Y)) from ONE pass over the features (they share all d x d moments).

    Shape: X (N, dx), Y (N, dy). Raises as ``cka`` and ``rsa`` (N >= 3).
    """
    X, Y = _pair("cka_rsa", X, Y)
    _check_n("cka_rsa", X, Y, 3)
    mo = _moments("cka_rsa", X, Y, normalize=True, chunk_size=chunk_size, dtype=dtype, rownorms=True)
    return _cka_from(mo, "cka_rsa"), _rsa_from(mo, "cka_rsa")


def linear_cka(
    X: Any, Y: Any, debiased: bool = False, *, chunk_size: int | None = None, dtype: Any = None
) -> float:
    """Linear CKA of Kornblith et al. (2019) on raw (un-normalised) features.

    Biased: columns centred, CKA = ||X_c^T Y_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)
            (= <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with K = X X^T, L = Y Y^T).
    Debiased (debiased=True): HSIC replaced by the unbiased estimator of Song et al. (2012),
        HSIC_1(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)),
    K~ = K with zeroed diagonal. HSIC_1 is invariant to centring the features; on centred features
    (1^T K 1 = 0, K~ 1 = -k with k_i = ||x_i - m||^2) it is Kornblith's feature form
        n(n-3) HSIC_1 = ||X_c^T Y_c||_F^2 - n/(n-2) k.l + (sum k)(sum l)/((n-1)(n-2)).
    CKA_debiased = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L)).

    Shape: X (N, dx), Y (N, dy); numpy or torch. N >= 2 (biased) or N >= 4 (debiased).
    Self-HSIC is never negative for the linear kernel: HSIC_1(K, K) is the U-statistic with kernel
    ((x_i - x_j).(x_q - x_r))^2 / 4 over distinct (i, j, q, r) (tested), so it is a mean of squares; it
    is 0 for degenerate data (e.g. N=4 with one row differing from three equal rows). The cross term can
    be negative, so debiased CKA lies in [-1, 1].
    Raises ValueError for constant features (zero centred Gram) and for a self-HSIC that is zero within
    rounding (<= 1024 eps times the terms it is the difference of): no sqrt of a negative, no 0/0.
    """
    if not isinstance(debiased, (bool, np.bool_)):
        raise ValueError(f"linear_cka: debiased must be a bool, got debiased={debiased!r}")
    fn = "linear_cka"
    X, Y = _pair(fn, X, Y)
    n = _check_n(fn, X, Y, 4 if debiased else 2)
    mo = _moments(fn, X, Y, normalize=False, chunk_size=chunk_size, dtype=dtype, rownorms=bool(debiased))
    for which in ("X", "Y"):
        c, total = (mo.cxx, mo.sq_total_x) if which == "X" else (mo.cyy, mo.sq_total_y)
        if float(np.trace(c)) <= (_TOL_EPS * mo.eps) ** 2 * total:
            raise ValueError(
                f"{fn}: centred Gram matrix of {which} has zero norm (all N={n} rows identical?)"
            )
    hxy, hxx, hyy = _sq(mo.cxy), _sq(mo.cxx), _sq(mo.cyy)
    if not debiased:
        return hxy / (math.sqrt(hxx) * math.sqrt(hyy))
    kkxx, kkyy, kkxy = mo.rho
    trx, try_ = float(np.trace(mo.cxx)), float(np.trace(mo.cyy))

    def h(cross_sq: float, klv: float, skv: float, slv: float) -> float:
        return cross_sq - n / (n - 2.0) * klv + skv * slv / ((n - 1.0) * (n - 2.0))

    num = h(hxy, kkxy, trx, try_)
    sxx = h(hxx, kkxx, trx, trx)
    syy = h(hyy, kkyy, try_, try_)
    for name, v, scale in (("X", sxx, hxx + n / (n - 2.0) * kkxx + trx * trx / ((n - 1.0) * (n - 2.0))),
                           ("Y", syy, hyy + n / (n - 2.0) * kkyy + try_ * try_ / ((n - 1.0) * (n - 2.0)))):
        if v <= _TOL_EPS * mo.eps * scale:
            raise ValueError(
                f"{fn}: debiased HSIC({name},{name})={v:.3g} is zero within rounding (every "
                f"(x_i - x_j).(x_q - x_r) over distinct i,j,q,r vanishes; N={n}), debiased CKA undefined"
            )
    return num / math.sqrt(sxx * syy)

