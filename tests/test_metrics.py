"""Tests for theory/alignment_features.py, alignment_gram.py and probes.py against independent references: explicit N x N matrices with an explicit
centring matrix H (Sec. 3 CKA), scipy.stats.pearsonr on the i<j RDM entries (Sec. 3 RSA), python loops
over the unbiased HSIC U-statistic (Song et al. 2012), mpmath at 50 digits, and hand-computed toy cases
for NCCC and the Sec. 5.1 relative weight gap."""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch

from theory.alignment_features import cka, cka_rsa, linear_cka, rsa
from theory.alignment_gram import cka_gram, rsa_gram
from theory.probes import nccc_accuracy, relative_weight_gap

# ---------------------------------------------------------------------------------------------------------
# references


def ref_sigma(X: np.ndarray) -> np.ndarray:
    """Sigma_ij = cos(x_i, x_j) by a python loop over pairs (float64)."""
    n = X.shape[0]
    S = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            S[i, j] = X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
    return S


def ref_cka_gram(S1: np.ndarray, S2: np.ndarray) -> float:
    n = S1.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K1, K2 = H @ S1 @ H, H @ S2 @ H
    return float(np.sum(K1 * K2) / (np.linalg.norm(K1) * np.linalg.norm(K2)))


def ref_rsa_gram(S1: np.ndarray, S2: np.ndarray, k: int = 1) -> float:
    iu = np.triu_indices(S1.shape[0], k)
    return float(scipy.stats.pearsonr(1.0 - S1[iu], 1.0 - S2[iu])[0])


def features(rng: np.random.Generator, n: int, d1: int, d2: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated pair with a common offset (cosines far from 0) and some rows of very different norm."""
    X = rng.standard_normal((n, d1)) + 0.7
    W = rng.standard_normal((d1, d2))
    Y = X @ W / math.sqrt(d1) + 0.5 * rng.standard_normal((n, d2))
    X[::3] *= 10.0
    return X, Y


SIZES = [(3, 2, 5), (10, 40, 3), (37, 8, 16), (64, 100, 120), (150, 20, 50)]  # includes d > N


# ---------------------------------------------------------------------------------------------------------
# feature-space CKA / RSA = N x N definitions


@pytest.mark.parametrize("n,d1,d2", SIZES)
def test_features_equal_nxn_definitions(n: int, d1: int, d2: int) -> None:
    rng = np.random.default_rng(n * 1000 + d1)
    X, Y = features(rng, n, d1, d2)
    S1, S2 = ref_sigma(X), ref_sigma(Y)
    c_ref, r_ref = ref_cka_gram(S1, S2), ref_rsa_gram(S1, S2)
    assert abs(cka(X, Y) - c_ref) < 1e-10
    assert abs(rsa(X, Y) - r_ref) < 1e-10
    c2, r2 = cka_rsa(X, Y)
    assert abs(c2 - c_ref) < 1e-10 and abs(r2 - r_ref) < 1e-10
    # the N x N functions agree with the references too
    assert abs(cka_gram(S1, S2) - c_ref) < 1e-12
    assert abs(rsa_gram(S1, S2) - r_ref) < 1e-12
    assert 0.0 <= c2 <= 1.0


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, None])
def test_chunking_matches_single_chunk(chunk: int | None) -> None:
    rng = np.random.default_rng(3)
    X, Y = features(rng, 53, 6, 9)
    c0, r0 = cka_rsa(X, Y, chunk_size=53)
    c1, r1 = cka_rsa(X, Y, chunk_size=chunk)
    assert abs(c1 - c0) < 1e-13 and abs(r1 - r0) < 1e-13
    assert abs(linear_cka(X, Y, True, chunk_size=chunk) - linear_cka(X, Y, True, chunk_size=53)) < 1e-12


def test_default_chunking_many_chunks_matches_nxn() -> None:
    """N = 2500 > the default 1024-row chunk: several chunks, compared with the N x N definitions."""
    rng = np.random.default_rng(33)
    X, Y = features(rng, 2500, 4, 3)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    V = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    S1, S2 = U @ U.T, V @ V.T
    c, r = cka_rsa(X, Y)
    assert abs(c - cka_gram(S1, S2)) < 1e-10
    assert abs(r - rsa_gram(S1, S2)) < 1e-10
    assert abs(c - cka_rsa(X, Y, chunk_size=2500)[0]) < 1e-13


@pytest.mark.parametrize("via_numpy", [True, False])
def test_torch_input_matches_numpy(via_numpy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU tensors normally take the numpy/BLAS path; via_numpy=False runs the torch (CUDA) code on CPU."""
    import theory.alignment_features as M

    monkeypatch.setattr(M, "_TORCH_CPU_VIA_NUMPY", via_numpy)
    rng = np.random.default_rng(4)
    X, Y = features(rng, 40, 7, 5)
    c, r = cka_rsa(X, Y)
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    assert abs(cka(tX, tY) - c) < 1e-13
    assert abs(rsa(tX, tY, chunk_size=6) - r) < 1e-13
    assert abs(cka(tX, Y) - c) < 1e-13  # mixed numpy / torch
    assert abs(linear_cka(tX, tY, True) - linear_cka(X, Y, True)) < 1e-12
    # float32 tensors are computed in float64: equal to numpy on the float32-rounded values
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    c32, r32 = cka_rsa(torch.from_numpy(X32), torch.from_numpy(Y32))
    assert abs(c32 - cka(X32, Y32)) < 1e-13 and abs(r32 - rsa(X32, Y32)) < 1e-13
    S1, S2 = ref_sigma(X), ref_sigma(Y)
    assert abs(cka_gram(torch.from_numpy(S1), torch.from_numpy(S2)) - cka_gram(S1, S2)) < 1e-13
    assert abs(rsa_gram(torch.from_numpy(S1), S2) - rsa_gram(S1, S2)) < 1e-13
    # requires_grad tensors are fine (no graph is built)
    assert abs(cka(tX.clone().requires_grad_(True), tY) - c) < 1e-13


def test_float32_compute_dtype_is_close() -> None:
    rng = np.random.default_rng(5)
    X, Y = features(rng, 200, 16, 16)
    c, r = cka_rsa(X, Y)
    c32, r32 = cka_rsa(X, Y, dtype=np.float32)
    assert abs(c32 - c) < 1e-5 and abs(r32 - r) < 1e-5


def test_near_identical_rows_against_mpmath() -> None:
    """Rows = common vector + 1e-5 noise: cosines all ~1 - 1e-10, the raw sums cancel catastrophically.
    Reference: the N x N definitions in 50-digit arithmetic."""
    rng = np.random.default_rng(6)
    n, d = 7, 3
    base = rng.standard_normal(d)
    X = base + 1e-5 * rng.standard_normal((n, d))
    Y = base + 1e-5 * rng.standard_normal((n, d))
    mpmath.mp.dps = 50

    def sigma(Z):
        rows = [[mpmath.mpf(float(v)) for v in z] for z in Z]
        nr = [mpmath.sqrt(sum(v * v for v in r)) for r in rows]
        dot = lambda i, j: sum(a * b for a, b in zip(rows[i], rows[j]))  # noqa: E731
        return [[dot(i, j) / (nr[i] * nr[j]) for j in range(n)] for i in range(n)]

    A, B = sigma(X), sigma(Y)

    def centred(S):
        rm = [sum(S[i]) / n for i in range(n)]
        cm = [sum(S[i][j] for i in range(n)) / n for j in range(n)]
        g = sum(rm) / n
        return [[S[i][j] - rm[i] - cm[j] + g for j in range(n)] for i in range(n)]

    KA, KB = centred(A), centred(B)
    dot = lambda P, Q: sum(P[i][j] * Q[i][j] for i in range(n) for j in range(n))  # noqa: E731
    c_ref = dot(KA, KB) / mpmath.sqrt(dot(KA, KA) * dot(KB, KB))
    a = [A[i][j] for i in range(n) for j in range(i + 1, n)]
    b = [B[i][j] for i in range(n) for j in range(i + 1, n)]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    r_ref = sum((x - ma) * (y - mb) for x, y in zip(a, b)) / mpmath.sqrt(
        sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)
    )
    c, r = cka_rsa(X, Y)
    assert abs(c - float(c_ref)) < 1e-8
    assert abs(r - float(r_ref)) < 1e-8


# ---------------------------------------------------------------------------------------------------------
# properties


def test_properties() -> None:
    rng = np.random.default_rng(7)
    X, Y = features(rng, 60, 12, 12)
    assert abs(cka(X, X) - 1.0) < 1e-13 and abs(rsa(X, X) - 1.0) < 1e-13
    assert abs(cka(X, X.copy()) - 1.0) < 1e-13 and abs(rsa(X, X.copy()) - 1.0) < 1e-13
    c, r = cka_rsa(X, Y)
    c_sym, r_sym = cka_rsa(Y, X)
    assert abs(c - c_sym) < 1e-13 and abs(r - r_sym) < 1e-13
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    c_rot, r_rot = cka_rsa(X @ Q, Y)
    assert abs(c - c_rot) < 1e-12 and abs(r - r_rot) < 1e-12
    scale = rng.uniform(0.01, 100.0, (60, 1))  # per-row positive scaling: cosines unchanged
    c_sc, r_sc = cka_rsa(X * scale, Y)
    assert abs(c - c_sc) < 1e-12 and abs(r - r_sc) < 1e-12
    # permuting the N inputs jointly changes nothing
    p = rng.permutation(60)
    c_p, r_p = cka_rsa(X[p], Y[p])
    assert abs(c - c_p) < 1e-12 and abs(r - r_p) < 1e-12


def test_cka_gram_explicit_loop_nonsymmetric() -> None:
    """Non-symmetric S with entries outside [-1, 1] (Sigma-space simulation): H S H by loops."""
    rng = np.random.default_rng(8)
    n = 6
    S1 = 3.0 * rng.standard_normal((n, n))
    S2 = S1 + rng.standard_normal((n, n))

    def centred(S):
        rm = [sum(S[i, j] for j in range(n)) / n for i in range(n)]
        cm = [sum(S[i, j] for i in range(n)) / n for j in range(n)]
        g = sum(S[i, j] for i in range(n) for j in range(n)) / n**2
        return [[S[i, j] - rm[i] - cm[j] + g for j in range(n)] for i in range(n)]

    K1, K2 = centred(S1), centred(S2)
    num = sum(K1[i][j] * K2[i][j] for i in range(n) for j in range(n))
    n1 = math.sqrt(sum(K1[i][j] ** 2 for i in range(n) for j in range(n)))
    n2 = math.sqrt(sum(K2[i][j] ** 2 for i in range(n) for j in range(n)))
    assert abs(cka_gram(S1, S2) - num / (n1 * n2)) < 1e-13
    assert abs(cka_gram(S1, S2) - ref_cka_gram(S1, S2)) < 1e-13


def test_rsa_gram_triangles_nonsymmetric() -> None:
    rng = np.random.default_rng(9)
    n = 9
    S1, S2 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    S2 = S2 + S1
    assert abs(rsa_gram(S1, S2) - ref_rsa_gram(S1, S2)) < 1e-13
    il = np.tril_indices(n, -1)
    lower = scipy.stats.pearsonr(S1[il], S2[il])[0]
    assert abs(rsa_gram(S1, S2, triangle="lower") - lower) < 1e-13
    off = ~np.eye(n, dtype=bool)
    both = scipy.stats.pearsonr(S1[off], S2[off])[0]
    assert abs(rsa_gram(S1, S2, triangle="both") - both) < 1e-13
    # "upper" ignores the lower triangle and the diagonal entirely
    T1 = S1.copy()
    T1[il] = 99.0
    np.fill_diagonal(T1, -5.0)
    assert abs(rsa_gram(T1, S2) - rsa_gram(S1, S2)) < 1e-13
    # symmetric input: all three triangles agree
    A, B = S1 + S1.T, S2 + S2.T
    vals = [rsa_gram(A, B, triangle=t) for t in ("upper", "lower", "both")]
    assert max(vals) - min(vals) < 1e-13


def test_gram_blocking_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    import theory.alignment_gram as M

    rng = np.random.default_rng(10)
    S1, S2 = rng.standard_normal((30, 30)), rng.standard_normal((30, 30))
    c0, r0 = cka_gram(S1, S2), rsa_gram(S1, S2, triangle="both")
    monkeypatch.setattr(M, "_GRAM_BLOCK_ELEMS", 70)  # 2 rows per block
    assert abs(cka_gram(S1, S2) - c0) < 1e-13
    assert abs(rsa_gram(S1, S2, triangle="both") - r0) < 1e-13


# ---------------------------------------------------------------------------------------------------------
# linear CKA (raw features) and its debiased form


def test_linear_cka_equals_kornblith_gram_form() -> None:
    rng = np.random.default_rng(11)
    X, Y = features(rng, 45, 10, 7)
    X = X + 50.0  # large common offset: centring must be exact
    n = 45
    H = np.eye(n) - 1.0 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    ref = np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L))
    assert abs(linear_cka(X, Y) - ref) < 1e-11
    assert abs(linear_cka(X, X) - 1.0) < 1e-13
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert abs(linear_cka(3.0 * X @ Q + 1.0, Y) - linear_cka(X, Y)) < 1e-12  # orthogonal, isotropic, shift
    # unlike cka(), linear CKA is not invariant to per-row rescaling
    assert abs(linear_cka(X * rng.uniform(0.1, 10, (n, 1)), Y) - linear_cka(X, Y)) > 1e-3


def hsic_u_loop(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012) as the U-statistic over distinct index tuples, by python loops:
    (n)_2^-1 sum_{i!=j} k_ij l_ij + (n)_4^-1 sum_{i,j,q,r distinct} k_ij l_qr
    - 2 (n)_3^-1 sum_{i,j,q distinct} k_ij l_iq."""
    n = K.shape[0]
    t1 = sum(K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2))
    t2 = sum(K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4))
    t3 = sum(K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3))
    p2, p3, p4 = n * (n - 1), n * (n - 1) * (n - 2), n * (n - 1) * (n - 2) * (n - 3)
    return t1 / p2 + t2 / p4 - 2.0 * t3 / p3


@pytest.mark.parametrize("n", [4, 5, 7])
def test_debiased_linear_cka_equals_u_statistic_loop(n: int) -> None:
    rng = np.random.default_rng(12 + n)
    X, Y = features(rng, n, 3, 4)
    K, L = X @ X.T, Y @ Y.T  # raw (uncentred) Gram matrices: HSIC_1 is invariant to centring
    ref = hsic_u_loop(K, L) / math.sqrt(hsic_u_loop(K, K) * hsic_u_loop(L, L))
    assert abs(linear_cka(X, Y, debiased=True) - ref) < 1e-11
    assert abs(linear_cka(X, X, debiased=True) - 1.0) < 1e-12
    assert abs(linear_cka(X + 7.0, Y, debiased=True) - ref) < 1e-10


def test_self_hsic_is_mean_of_squares() -> None:
    """Documented claim: HSIC_1(K, K) = mean over distinct (i,j,q,r) of ((x_i - x_j).(x_q - x_r))^2 / 4 >= 0."""
    rng = np.random.default_rng(13)
    X = rng.standard_normal((6, 2))
    vals = [((X[i] - X[j]) @ (X[q] - X[r])) ** 2 / 4 for i, j, q, r in itertools.permutations(range(6), 4)]
    assert abs(hsic_u_loop(X @ X.T, X @ X.T) - np.mean(vals)) < 1e-12


# ---------------------------------------------------------------------------------------------------------
# errors


def test_zero_variance_raises() -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal(5)
    same = np.tile(x, (8, 1))
    scaled = x * rng.uniform(0.1, 10.0, (8, 1))  # identical up to scale: Sigma = all ones
    Y = rng.standard_normal((8, 5))
    for Z in (same, scaled):
        with pytest.raises(ValueError, match=r"cka: centred similarity matrix of X has zero norm .*N=8"):
            cka(Z, Y)
        with pytest.raises(ValueError, match="of Y has zero norm"):
            cka(Y, Z)
        with pytest.raises(ValueError, match="rsa: off-diagonal RDM entries of X are constant"):
            rsa(Z, Y)
        with pytest.raises(ValueError, match="cka_gram: centred similarity matrix H S1 H has zero norm"):
            cka_gram(ref_sigma(Z), ref_sigma(Y))
        with pytest.raises(ValueError, match="rsa_gram: upper-triangle RDM entries of S1 are constant"):
            rsa_gram(ref_sigma(Z), ref_sigma(Y))
    with pytest.raises(ValueError, match="linear_cka: centred Gram matrix of X has zero norm"):
        linear_cka(same, Y)
    # orthonormal rows: all off-diagonal cosines 0 -> constant RDM; CKA is still defined (H Sigma H = H)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    with pytest.raises(ValueError, match="rsa: off-diagonal RDM entries of X are constant"):
        rsa(Q * rng.uniform(0.5, 2.0, (8, 1)), Y)
    with pytest.raises(ValueError, match="rsa_gram: upper-triangle RDM entries of S1 are constant"):
        rsa_gram(Q @ Q.T, ref_sigma(Y))
    assert 0.0 < cka(Q, Y) < 1.0
    # debiased self-HSIC exactly 0: N=4, one row differs from three equal rows
    with pytest.raises(ValueError, match=r"debiased HSIC\(X,X\)=.* zero within rounding"):
        linear_cka(np.array([[0.0], [0.0], [0.0], [-1.0]]), rng.standard_normal((4, 2)), debiased=True)


def test_bad_rows_and_shapes_raise() -> None:
    rng = np.random.default_rng(15)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 4))
    Z = X.copy()
    Z[4] = 0.0
    with pytest.raises(ValueError, match="cka: row 4 of X is all zeros"):
        cka(Z, Y)
    with pytest.raises(ValueError, match="rsa: row 4 of Y is all zeros"):
        rsa(X, Z)
    with pytest.raises(ValueError, match="row 4 of X is all zeros"):
        cka(torch.from_numpy(Z), torch.from_numpy(Y), chunk_size=2)
    import theory.alignment_features as M

    M._TORCH_CPU_VIA_NUMPY = False
    try:
        with pytest.raises(ValueError, match="row 4 of Y is all zeros"):
            cka(torch.from_numpy(X), torch.from_numpy(Z), chunk_size=2)
    finally:
        M._TORCH_CPU_VIA_NUMPY = True
    Z[4] = np.nan
    with pytest.raises(ValueError, match="row 4 of X has non-finite"):
        cka(Z, Y)
    with pytest.raises(ValueError, match="row 4 of X has non-finite"):
        linear_cka(Z, Y)
    with pytest.raises(ValueError, match="same number of rows N, got 6 and 5"):
        cka(X, Y[:5])
    with pytest.raises(ValueError, match="needs N >= 2"):
        cka(X[:1], Y[:1])
    with pytest.raises(ValueError, match="needs N >= 3"):
        rsa(X[:2], Y[:2])
    with pytest.raises(ValueError, match="needs N >= 4"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match=r"X must have shape \(N, d\)"):
        cka(X[0], Y)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        cka(X, Y, chunk_size=0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        cka(X, Y, dtype=np.int32)
    with pytest.raises(ValueError, match="debiased must be a bool"):
        linear_cka(X, Y, debiased="yes")
    S = ref_sigma(X)
    with pytest.raises(ValueError, match=r"S1 must be a square \(N, N\) matrix"):
        cka_gram(S[:, :5], S)
    with pytest.raises(ValueError, match="S1 and S2 must have the same N"):
        rsa_gram(S, S[:5, :5])
    with pytest.raises(ValueError, match="triangle must be one of"):
        rsa_gram(S, S, triangle="diag")
    with pytest.raises(ValueError, match="rsa_gram: needs N >= 3"):
        rsa_gram(S[:2, :2], S[:2, :2])
    T = S.copy()
    T[1, 3] = np.inf
    with pytest.raises(ValueError, match="S1 has non-finite entries"):
        cka_gram(T, S)
    with pytest.raises(ValueError, match="S1 has non-finite entries"):
        rsa_gram(T, S)


# ---------------------------------------------------------------------------------------------------------
# NCCC


def test_nccc_toy_case() -> None:
    train = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    ytr = np.array([0, 0, 7, 7])
    # raw centres (2, 0) and (0, 2); normalised centres (1, 0) and (0, 1)
    test = np.array([[2.0, 0.1], [0.1, 5.0], [1.0, 0.9], [0.3, 0.2]])
    yte = np.array([0, 7, 7, 7])
    # normalised: rows 0,1 right; (1, .9) -> class 0 (wrong); (.3, .2) -> class 0 (wrong)
    assert nccc_accuracy(train, ytr, test, yte) == 0.5
    # raw: (1, .9) is nearer (2, 0)? |(-1,.9)|^2=1.81 vs |(1,-1.1)|^2=2.21 -> 0 (wrong); (.3,.2) -> 0 (wrong)
    assert nccc_accuracy(train, ytr, test, yte, normalize=False) == 0.5
    # unequal class norms: raw centres (2, 0), (0, 20) pull everything to class 0; normalised ones do not
    far = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 10.0], [0.0, 30.0]])
    test2 = np.array([[0.0, 0.3], [0.1, 5.0]])
    y2 = np.array([7, 7])
    assert nccc_accuracy(far, ytr, test2, y2) == 1.0
    assert nccc_accuracy(far, ytr, test2, y2, normalize=False) == 0.0
    t = torch.from_numpy(train)
    assert nccc_accuracy(t, torch.from_numpy(ytr), torch.from_numpy(test), torch.from_numpy(yte)) == 0.5


def test_nccc_matches_loop_reference() -> None:
    rng = np.random.default_rng(16)
    C, d = 5, 6
    means = 2.0 * rng.standard_normal((C, d))
    ytr = rng.integers(0, C, 300)
    yte = rng.integers(0, C, 120)
    Xtr = means[ytr] + rng.standard_normal((300, d))
    Xte = means[yte] + rng.standard_normal((120, d))
    for normalize in (True, False):
        A = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True) if normalize else Xtr
        B = Xte / np.linalg.norm(Xte, axis=1, keepdims=True) if normalize else Xte
        mu = {c: A[ytr == c].mean(0) for c in range(C)}
        correct = 0
        for x, y in zip(B, yte):
            pred = min(range(C), key=lambda c: float(np.sum((x - mu[c]) ** 2)))
            correct += pred == y
        ref = correct / 120
        assert nccc_accuracy(Xtr, ytr, Xte, yte, normalize=normalize) == ref
        assert nccc_accuracy(Xtr, ytr, Xte, yte, normalize=normalize, chunk_size=7) == ref
        got_t = nccc_accuracy(torch.from_numpy(Xtr), torch.from_numpy(ytr), torch.from_numpy(Xte),
                              torch.from_numpy(yte), normalize=normalize)
        assert got_t == ref


def test_nccc_errors() -> None:
    X = np.eye(3)
    with pytest.raises(ValueError, match="test label 5 has no training example"):
        nccc_accuracy(X, np.array([0, 1, 2]), X, np.array([0, 1, 5]))
    with pytest.raises(ValueError, match=r"train_labels must have shape \(3,\)"):
        nccc_accuracy(X, np.array([0, 1]), X, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="row 1 of test_feats is all zeros"):
        nccc_accuracy(X, np.array([0, 1, 2]), np.array([[1.0, 0, 0], [0, 0, 0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same dimension"):
        nccc_accuracy(X, np.array([0, 1, 2]), X[:, :2], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class labels"):
        nccc_accuracy(X, np.array([0.0, 1, 2]), X, np.array([0, 1, 2]))


# ---------------------------------------------------------------------------------------------------------
# relative weight gap (Sec. 5.1)


def test_weight_gap_known_case() -> None:
    a = {
        "fc.weight": torch.tensor([[1.0, 0.0]]),
        "fc.bias": torch.zeros(1),
        "head.weight": torch.tensor([3.0, 4.0]),
        "bn.running_mean": torch.ones(2),
        "bn.num_batches_tracked": torch.tensor(5),
    }
    b = {
        "fc.weight": torch.tensor([[0.0, 1.0]]),  # ||a-b|| = sqrt 2, mean norm 1
        "fc.bias": torch.zeros(1),  # both zero: identical, gap 0
        "head.weight": torch.tensor([0.0, 0.0]),  # ||a-b|| = 5, mean norm 2.5 -> 2
        "bn.running_mean": torch.zeros(2),  # buffer: skipped
        "bn.num_batches_tracked": torch.tensor(9),  # integer: skipped
    }
    g = relative_weight_gap(a, b)
    assert set(g.per_layer) == {"fc.weight", "fc.bias", "head.weight"}
    assert abs(g.per_layer["fc.weight"] - math.sqrt(2)) < 1e-15
    assert g.per_layer["fc.bias"] == 0.0
    assert abs(g.per_layer["head.weight"] - 2.0) < 1e-15
    assert abs(g.total - (math.sqrt(2) + 2.0)) < 1e-14
    assert abs(g.mean - (math.sqrt(2) + 2.0) / 3) < 1e-14
    per, total = relative_weight_gap(a, b)  # unpacks as (per_layer, total)
    assert total == g.total
    g2 = relative_weight_gap(a, b, keys=["head.weight"])
    assert g2.per_layer == {"head.weight": 2.0} and g2.total == 2.0
    an = {k: v.numpy() for k, v in a.items()}
    assert abs(relative_weight_gap(an, b).total - g.total) < 1e-14
    assert relative_weight_gap(a, a).total == 0.0


def test_weight_gap_errors() -> None:
    a = {"w": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="different keys"):
        relative_weight_gap(a, {"v": torch.ones(2, 2)})
    with pytest.raises(ValueError, match=r"'w' has shape \(2, 2\) in model a and \(4,\) in model b"):
        relative_weight_gap(a, {"w": torch.ones(4)})
    with pytest.raises(ValueError, match="key 'x' missing from model_a_state"):
        relative_weight_gap(a, a, keys=["x"])
    with pytest.raises(ValueError, match="non-finite"):
        relative_weight_gap(a, {"w": torch.full((2, 2), float("nan"))})
    with pytest.raises(ValueError, match="no floating-point weights"):
        relative_weight_gap({"n": torch.tensor(1)}, {"n": torch.tensor(2)})
