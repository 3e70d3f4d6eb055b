"""Tests for theory/bounds/ (theory.bounds) against independent float64 computations (python loops, brute force, a tiny
inline similarity-descent simulation, inline DCL/NSCL losses)."""

import importlib.util
import math

import numpy as np
import pytest

from theory import bounds as bd
from theory.constants import delta_c_delta

RNG = np.random.default_rng


def _schedules(seed=0, n=6):
    rng = RNG(seed)
    out = [np.full(7, 0.3), np.linspace(1.0, 0.0, 11), np.array([2.0])]
    for _ in range(n):
        T = int(rng.integers(1, 40))
        out.append(rng.uniform(0, 3, size=T) * (rng.uniform(size=T) > 0.2))
    return out


def _loop_recurrence(eta, L, g):
    d, out = 0.0, [0.0]
    for t in range(len(eta)):
        d = (1.0 + eta[t] * L) * d + eta[t] * (g[t] if np.ndim(g) else g)
        out.append(d)
    return np.array(out)


# ------------------------------------------------------------------------------------------------ Thm 1
@pytest.mark.parametrize("B,C,delta,tau", [(64, 10, 0.1, 0.5), (512, 1000, 0.01, 1.0), (8, 100, 0.2, 0.1)])
def test_thm1_forms_against_loops(B, C, delta, tau):
    for eta in _schedules():
        T = len(eta)
        Delta = delta_c_delta(C, B, T, delta, tau)
        S = float(np.sum(eta))
        eq2 = math.exp(S / (2 * tau**2 * B)) * S * Delta / (tau * math.sqrt(B))
        assert bd.thm1_bound(eta, B, C, delta, tau) == pytest.approx(eq2, rel=1e-12)
        # exact product form by explicit double loop
        alpha = [e / (2 * tau**2 * B) for e in eta]
        gamma = [e * Delta / (tau * math.sqrt(B)) for e in eta]
        prod_form = sum(gamma[s] * math.prod(1 + alpha[u] for u in range(s + 1, T)) for s in range(T))
        un = bd.thm1_unrolled(eta, B, C, delta, tau)
        assert un == pytest.approx(prod_form, rel=1e-12, abs=1e-300)
        # recurrence with equality (Grönwall) gives the same number
        assert un == pytest.approx(_loop_recurrence(eta, 1 / (2 * tau**2 * B), Delta / (tau * math.sqrt(B)))[-1], rel=1e-12)
        # telescoping identity: exact = 2 tau sqrt(B) Delta (prod(1+alpha) - 1)
        assert un == pytest.approx(2 * tau * math.sqrt(B) * Delta * (math.prod(1 + a for a in alpha) - 1), rel=1e-9)
        gr = bd.thm1_bound_gronwall(eta, B, C, delta, tau)
        assert gr == pytest.approx(2 * tau * math.sqrt(B) * Delta * math.expm1(S / (2 * tau**2 * B)), rel=1e-12)
        sharp = bd.thm1_bound_sharp(eta, B, C, delta, tau)
        # ordering: sharp <= exact product <= gronwall closed form <= Eq. 2
        assert sharp <= un * (1 + 1e-12) and un <= gr * (1 + 1e-12) and gr <= eq2 * (1 + 1e-12)


def test_thm1_trajectory_and_per_step_delta():
    rng = RNG(1)
    eta = rng.uniform(0, 1, 25)
    B, C, delta, tau = 32, 20, 0.1, 0.5
    tr = bd.thm1_trajectory(eta, B, C, delta, tau)
    assert tr.shape == (26,) and tr[0] == 0.0 and np.all(np.diff(tr) >= 0)
    assert tr[-1] == pytest.approx(bd.thm1_unrolled(eta, B, C, delta, tau), rel=1e-12)
    Delta = delta_c_delta(C, B, len(eta), delta, tau)
    cl = bd.thm1_trajectory(eta, B, C, delta, tau, form="closed")
    for t in range(26):
        assert cl[t] == pytest.approx(bd.thm1_bound_from_delta(eta[:t], Delta, B, tau) if t else 0.0, rel=1e-12)
        assert tr[t] <= cl[t] * (1 + 1e-12)
    # per-step realised Delta_t
    Dt = rng.uniform(0, 2, 25)
    want = _loop_recurrence(eta, 1 / (2 * tau**2 * B), Dt / (tau * math.sqrt(B)))
    np.testing.assert_allclose(bd.thm1_trajectory_from_delta(eta, Dt, B, tau), want, rtol=1e-12)
    assert bd.thm1_unrolled_from_delta(eta, Dt, B, tau) == pytest.approx(want[-1], rel=1e-12)
    gap = rng.uniform(0, 0.1, 25)
    np.testing.assert_allclose(bd.thm1_trajectory_from_gap(eta, gap, B, tau), _loop_recurrence(eta, 1 / (2 * tau**2 * B), gap), rtol=1e-12)


def test_overflow_is_inf_not_error():
    eta = [1e6] * 3
    assert bd.thm1_bound(eta, 4, 10, 0.5, 0.1) == math.inf
    assert bd.thm1_bound_gronwall(eta, 4, 10, 0.5, 0.1) == math.inf
    assert bd.cor1_cka_bound(math.inf, 2.0).vacuous


def _gamma_sharpening_is_below_trivial():
    return bd.lem6_l2_sharp(1e9) < math.sqrt(2)


def test_lem6_sharp_values():
    for D in [0.0, 0.01, 0.5, 2.0, 100.0]:
        assert bd.lem6_l1_sharp(D) == pytest.approx(D / (1 + D / 2)) and bd.lem6_l1_sharp(D) <= D
        assert bd.lem6_l2_sharp(D) == pytest.approx(bd.lem6_l1_sharp(D) / math.sqrt(2))
    assert _gamma_sharpening_is_below_trivial()


# ------------------------------------------------ tiny coupled similarity descent (Eq. 1), inline reference
def _softmax(x):
    z = np.exp(x - x.max())
    return z / z.sum()


def _batch_grad(sigma, batch, labels, V, tau, kind):
    """Per-anchor (p - e_pos)/tau placed on the ordered coordinates (anchor row, key row), averaged over B."""
    G = np.zeros_like(sigma)
    B = len(batch)
    info = []
    rows = [(j, v) for j in batch for v in range(2)]
    row_index = [j * V + v for (j, v) in rows]
    for s, j in enumerate(batch):
        a, pos = j * V + 0, j * V + 1
        keys = [r for r in row_index if r != a]
        if kind == "NSCL":
            den = [r for r in keys if labels[r // V] != labels[j]]
        else:
            den = keys
        p = _softmax(sigma[a, den] / tau)
        g = np.zeros(len(keys))
        kidx = {r: i for i, r in enumerate(keys)}
        for r, pr in zip(den, p):
            g[kidx[r]] += pr
        g[kidx[pos]] -= 1.0
        G[a, keys] += g / (tau * B)
        info.append((a, keys))
    return G, info


def _pq(sigma, a, keys, labels, V, tau, anchor_sample):
    s = sigma[a, keys] / tau
    p = _softmax(s)
    neg = np.array([labels[r // V] != labels[anchor_sample] for r in keys])
    q = np.zeros_like(p)
    q[neg] = _softmax(s[neg])
    return p, q, neg


def test_coupled_similarity_descent_obeys_measured_and_realised_bounds():
    rng = RNG(3)
    N, V, C, B, tau, T = 24, 2, 4, 6, 0.5, 30
    labels = np.repeat(np.arange(C), N // C)
    Z = rng.normal(size=(N * V, 5))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    s_cl = Z @ Z.T
    s_ns = s_cl.copy()
    eta = rng.uniform(0.5, 3.0, T)
    drift, gaps, realised = [0.0], [], []
    left_box = False
    for t in range(T):
        while True:  # distinct anchors, at least one negative for each
            batch = rng.choice(N, size=B, replace=False)
            if len(set(labels[batch])) > 1:
                break
        g_cl, info = _batch_grad(s_cl, batch, labels, V, tau, "CL")
        g_ns_at_cl, _ = _batch_grad(s_cl, batch, labels, V, tau, "NSCL")
        g_ns, _ = _batch_grad(s_ns, batch, labels, V, tau, "NSCL")
        gaps.append(np.linalg.norm(g_cl - g_ns_at_cl))
        d_max = 0.0
        for (a, keys), j in zip(info, batch):
            p, q, neg = _pq(s_cl, a, keys, labels, V, tau, j)
            alpha = p[~neg].sum()
            r = np.exp(s_cl[a, keys] / tau)[~neg].sum() / np.exp(s_cl[a, keys] / tau)[neg].sum()
            assert np.abs(p - q).sum() == pytest.approx(2 * alpha, rel=1e-12)  # Lem. 6 identity
            assert alpha == pytest.approx(r / (1 + r), rel=1e-12)
            assert np.linalg.norm(p - q) <= math.sqrt(2) * alpha * (1 + 1e-12)  # sharpened l2
            # Eq. 14 with the realised counts and logit range m: the surrogate (Eq. 1, no projection) leaves
            # [-1, 1], so Lem. 4 needs e^{2m/tau} with m = max(1, max|s|) instead of e^{2/tau}
            m = max(1.0, float(np.abs(s_cl[a, keys]).max()))
            left_box = left_box or m > 1.0
            Dreal = 2 * math.exp(2 * m / tau) * (~neg).sum() / neg.sum()
            assert r <= Dreal / 2 * (1 + 1e-12)
            assert np.linalg.norm(p - q) <= bd.lem6_l2_sharp(Dreal) * (1 + 1e-12)
            d_max = max(d_max, np.linalg.norm(p - q))
        realised.append(d_max)
        # Lem. 8 term (A) equals (1/(tau B)) sqrt(sum ||p_i - q_i||^2) <= d_max/(tau sqrt B)
        assert gaps[-1] <= d_max / (tau * math.sqrt(B)) * (1 + 1e-12)
        # Lem. 2: NSCL gradient map is 1/(2 tau^2 B)-Lipschitz
        assert np.linalg.norm(g_ns_at_cl - g_ns) <= np.linalg.norm(s_cl - s_ns) / (2 * tau**2 * B) * (1 + 1e-12) + 1e-15
        s_cl = s_cl - eta[t] * g_cl
        s_ns = s_ns - eta[t] * g_ns
        drift.append(np.linalg.norm(s_cl - s_ns))
    drift = np.array(drift)
    by_gap = bd.thm1_trajectory_from_gap(eta, np.array(gaps), B, tau)
    by_delta = bd.thm1_trajectory_from_delta(eta, np.array(realised), B, tau)
    assert np.all(drift <= by_gap * (1 + 1e-10) + 1e-15)
    assert np.all(by_gap <= by_delta * (1 + 1e-12) + 1e-15)
    assert drift[-1] > 0
    assert left_box  # with these step sizes Sigma^CL leaves [-1, 1]: Lem. 4's premise is not kept by Eq. 1


# ------------------------------------------------------------------------------------- certificates
def test_cos_bounds_brute_force_and_tight():
    rng = RNG(4)
    for rho in [0.0, 0.1, 0.5, 0.9, 0.99]:
        # brute force over the boundary sphere, parametrised by the component a along u
        a = np.linspace(-rho, rho, 20001)
        w = np.sqrt(np.maximum(rho**2 - a**2, 0))
        cos = (1 + a) / np.sqrt((1 + a) ** 2 + w**2)
        assert cos.min() == pytest.approx(bd.cos_lower_bound_sharp(rho), abs=1e-7)
        assert bd.cos_lower_bound_sharp(rho) >= bd.cos_lower_bound_paper(rho) - 1e-15
        # random points inside the ball in dimension 7
        u = rng.normal(size=7)
        for _ in range(200):
            d = rng.normal(size=7)
            d *= rho * np.linalg.norm(u) * rng.uniform() ** (1 / 7) / np.linalg.norm(d)
            v = u + d
            c = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
            assert c >= bd.cos_lower_bound_sharp(rho) - 1e-12
        # tangent point attains it
        if rho > 0:
            e = rng.normal(size=7)
            e -= (e @ u) / (u @ u) * u
            e /= np.linalg.norm(e)
            v = u * (1 - rho**2) + rho * math.sqrt(1 - rho**2) * np.linalg.norm(u) * e
            assert np.linalg.norm(v - u) == pytest.approx(rho * np.linalg.norm(u))
            assert u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) == pytest.approx(math.sqrt(1 - rho**2), rel=1e-12)
    assert bd.cos_lower_bound_sharp(1.0) == -1.0 and bd.cos_lower_bound_paper(3.0) == pytest.approx(-0.5)


def _cos_gram(Z):
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    return Z @ Z.T


def _cka_ref(S1, S2):
    n = len(S1)
    H = np.eye(n) - np.ones((n, n)) / n
    K1, K2 = H @ S1 @ H, H @ S2 @ H
    return float(np.sum(K1 * K2) / (np.linalg.norm(K1) * np.linalg.norm(K2)))


def _rsa_ref(S1, S2):
    iu = np.triu_indices(len(S1), 1)
    return float(np.corrcoef(1 - S1[iu], 1 - S2[iu])[0, 1])


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3, 1.0])
def test_cor1_cor2_and_sharp_certificates_hold(noise):
    rng = RNG(5)
    N = 30
    Z1 = rng.normal(size=(N, 6)) + np.repeat(rng.normal(size=(3, 6)) * 2, 10, axis=0)
    Z2 = Z1 + noise * rng.normal(size=Z1.shape)
    S1, S2 = _cos_gram(Z1), _cos_gram(Z2)
    cka, rsa = _cka_ref(S1, S2), _rsa_ref(S1, S2)
    drift = np.linalg.norm(S1 - S2)
    n = N
    H = np.eye(n) - np.ones((n, n)) / n
    A = np.linalg.norm(H @ S1 @ H)
    iu = np.triu_indices(N, 1)
    a = 1 - S1[iu]
    M = len(a)
    sig = a.std(ddof=0)
    assert math.sqrt(M) * sig == pytest.approx(np.linalg.norm(a - a.mean()), rel=1e-12)
    c1 = bd.cor1_cka_bound(drift, A)
    c1s = bd.cka_certificate_sharp(drift, A)
    assert c1.ratio == pytest.approx(drift / A) and c1.lower_bound == pytest.approx((1 - c1.ratio) / (1 + c1.ratio))
    assert cka >= c1s.lower_bound - 1e-12 and c1s.lower_bound >= c1.lower_bound - 1e-15
    c2 = bd.cor2_rsa_bound(drift, M, sig)
    c2s = bd.rsa_certificate_sharp(drift, M, sig, symmetric=True)  # S1 - S2 is symmetric here
    assert rsa >= c2s.lower_bound - 1e-12 and rsa >= c2.lower_bound - 1e-12
    assert c2s.ratio == pytest.approx(c2.ratio / math.sqrt(2))
    m1, m2 = bd.cka_ratio_measured(S1, S2), bd.rsa_ratio_measured(S1, S2)
    assert m1.ratio <= c1.ratio + 1e-15 and m2.ratio <= c2s.ratio + 1e-15
    assert cka >= m1.lower_bound - 1e-12 and rsa >= m2.lower_bound - 1e-12
    assert c1.vacuous == (c1.ratio >= 1)


def test_symmetric_rsa_flag_identity():
    rng = RNG(6)
    X = rng.normal(size=(9, 9))
    X = X + X.T
    iu = np.triu_indices(9, 1)
    assert np.linalg.norm(X[iu]) <= np.linalg.norm(X) / math.sqrt(2) + 1e-12
    Xo = X - np.diag(np.diag(X))
    assert np.linalg.norm(Xo[iu]) == pytest.approx(np.linalg.norm(Xo) / math.sqrt(2))


def test_measured_ratio_non_psd_surrogate_matrices():
    # the Sigma-space surrogate need not stay PSD: the measured certificates still hold
    rng = RNG(7)
    for _ in range(20):
        S1 = rng.uniform(-1, 1, size=(12, 12))
        S2 = S1 + rng.normal(scale=rng.uniform(0.01, 2), size=S1.shape)
        m1, m2 = bd.cka_ratio_measured(S1, S2), bd.rsa_ratio_measured(S1, S2)
        assert _cka_ref(S1, S2) >= m1.lower_bound - 1e-12
        assert _rsa_ref(S1, S2) >= m2.lower_bound - 1e-12


# ---------------------------------------------------------------------------------------------- Thm 2
@pytest.mark.parametrize("beta,G", [(0.5, 1.0), (3.0, 0.2)])
def test_thm2_forms(beta, G):
    B, C, delta, tau = 128, 50, 0.05, 0.5
    for eta in _schedules(8):
        T = len(eta)
        Delta = delta_c_delta(C, B, T, delta, tau)
        S = float(np.sum(eta))
        closed = bd.thm2_bound(eta, beta, G, B, C, delta, tau)
        assert closed == pytest.approx(G * Delta / (beta * tau) * math.expm1(beta * S), rel=1e-12)
        loop = _loop_recurrence(eta, beta, G * Delta / tau)
        un = bd.thm2_unrolled(eta, beta, G, B, C, delta, tau)
        assert un == pytest.approx(loop[-1], rel=1e-11)
        assert un == pytest.approx(G * Delta / (beta * tau) * (math.prod(1 + beta * e for e in eta) - 1), rel=1e-9)
        mid = bd.thm2_unrolled_exp(eta, beta, G, B, C, delta, tau)
        want_mid = G * Delta / tau * sum(eta[t] * math.exp(beta * sum(eta[t + 1 :])) for t in range(T))
        assert mid == pytest.approx(want_mid, rel=1e-12)
        assert un <= mid * (1 + 1e-12) and mid <= closed * (1 + 1e-12)
        np.testing.assert_allclose(bd.thm2_trajectory(eta, beta, G, B, C, delta, tau), loop, rtol=1e-11)


# --------------------------------------------------------------------------------------------- App C
def test_appc_eq7_eq8_eq9():
    rng = RNG(9)
    eta = rng.uniform(0, 0.5, 15)
    tau, B, Cs, Ms = 0.5, 64, 1.3, 2.0
    xi = rng.uniform(0, 4, 15)
    g = rng.uniform(0, math.sqrt(2 / B) / tau, 15)
    S = eta.sum()
    want8 = math.exp(S / (2 * tau**2 * B)) * (Cs * np.sum(eta * g) + Ms / 2 * np.sum(eta**2 * xi))
    assert bd.appc_eq8_bound(eta, tau, B, Cs, Ms, xi, g) == pytest.approx(want8, rel=1e-12)
    want9 = math.exp(S / (2 * tau**2 * B)) * (math.sqrt(2) * Cs / (tau * math.sqrt(B)) * S + Ms / 2 * np.sum(eta**2 * xi))
    assert bd.appc_eq9_bound(eta, tau, B, Cs, Ms, xi) == pytest.approx(want9, rel=1e-12)
    # Eq. 7 recurrence unrolled by loop; <= Eq. 8; measured g <= Lem. 3 bound => Eq. 8 <= Eq. 9
    b = eta * Cs * g + Ms / 2 * eta**2 * xi
    d = 0.0
    for t in range(15):
        d = (1 + eta[t] / (2 * tau**2 * B)) * d + b[t]
    assert bd.appc_eq7_unrolled(eta, tau, B, Cs, Ms, xi, g) == pytest.approx(d, rel=1e-12)
    assert d <= want8 <= want9
    assert bd.appc_eq7_unrolled(eta, tau, B, Cs, Ms, xi) <= want9


# ------------------------------------------------------------------------------------------ loss gap
def _dcl_nscl_inline(S, ids, labels, tau):
    """Per-anchor DCL and NSCL losses (blog Part I, general tau), python loop over rows; S (NK, NK)."""
    dcl, nscl = [], []
    n = len(ids)
    for a in range(n):
        for b in range(n):
            if b == a or ids[b] != ids[a]:
                continue
            num = S[a, b] / tau
            den_dcl = [S[a, k] / tau for k in range(n) if ids[k] != ids[a]]
            den_ns = [S[a, k] / tau for k in range(n) if labels[k] != labels[a]]
            dcl.append(-num + math.log(sum(math.exp(x) for x in den_dcl)))
            nscl.append(-num + math.log(sum(math.exp(x) for x in den_ns)))
    return np.array(dcl), np.array(nscl)


def _setup(rng, counts, K=2, d=4):
    labels_s = np.repeat(np.arange(len(counts)), counts)
    N = len(labels_s)
    ids = np.repeat(np.arange(N), K)
    labels = labels_s[ids]
    return ids, labels, N


@pytest.mark.parametrize("counts,tau", [([3, 3, 3, 3], 1.0), ([3, 3, 3, 3], 0.5), ([5, 2, 1, 4, 2], 0.3), ([2, 2], 2.0)])
def test_loss_gap_bound_random_similarities(counts, tau):
    rng = RNG(10)
    ids, labels, N = _setup(rng, counts)
    C, n_max = len(counts), max(counts)
    bound = bd.loss_gap_bound(C, tau, n_max=n_max, N=N)
    assert bound == pytest.approx(math.log1p(n_max * math.exp(2 / tau) / (N - n_max)))
    if len(set(counts)) == 1:
        assert bound == pytest.approx(bd.loss_gap_bound(C, tau)) and bound == pytest.approx(math.log1p(math.exp(2 / tau) / (C - 1)))
    for trial in range(6):
        if trial % 2:
            Z = rng.normal(size=(len(ids), 3))
            S = _cos_gram(Z)
        else:
            S = rng.uniform(-1, 1, size=(len(ids), len(ids)))
        dcl, ns = _dcl_nscl_inline(S, ids, labels, tau)
        gap = dcl.mean() - ns.mean()
        assert 0 <= gap <= bound
        assert np.all(dcl - ns >= -1e-12) and np.all(dcl - ns <= bound + 1e-12)
        assert bound <= bd.loss_gap_bound(C, tau, n_max=n_max, N=N, form="linear")


def test_loss_gap_bound_attained_with_counts():
    # same-class logits +1, negatives -1: per-anchor gap = log(1 + (n-1) e^{2/tau}/(N-n)) exactly
    tau, counts = 0.7, [4, 4, 4]
    ids, labels, N = _setup(RNG(0), counts)
    S = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    dcl, ns = _dcl_nscl_inline(S, ids, labels, tau)
    K = 2
    want = bd.loss_gap_bound_counts(K * (4 - 1), K * (N - 4), tau)
    np.testing.assert_allclose(dcl - ns, want, rtol=1e-12)
    assert want < bd.loss_gap_bound(3, tau)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch missing")
def test_loss_gap_against_theory_losses():
    try:
        import torch

        from theory.losses import contrastive_loss
    except ImportError:
        pytest.skip("theory.losses not available")
    rng = RNG(11)
    tau, counts = 0.5, [3, 2, 4]
    ids, labels, N = _setup(rng, counts)
    S = _cos_gram(rng.normal(size=(len(ids), 5)))
    dcl, ns = _dcl_nscl_inline(S, ids, labels, tau)
    St = torch.tensor(S, dtype=torch.float64)
    it, lt = torch.tensor(ids), torch.tensor(labels)
    self_mask = torch.eye(len(ids), dtype=torch.bool)
    l_dcl = contrastive_loss(St, "DCL", tau, it, it, lt, lt, self_mask=self_mask)
    l_ns = contrastive_loss(St, "NSCL", tau, it, it, lt, lt, self_mask=self_mask)
    assert float(l_dcl) == pytest.approx(dcl.mean(), rel=1e-12)
    assert float(l_ns) == pytest.approx(ns.mean(), rel=1e-12)
    assert 0 <= float(l_dcl - l_ns) <= bd.loss_gap_bound(3, tau, n_max=4, N=N)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call,fragment",
    [
        (lambda: bd.thm1_bound(0.1, 8, 10, 0.1, 1.0), "eta must be a 1-D sequence"),
        (lambda: bd.thm1_bound([0.1, -1], 8, 10, 0.1, 1.0), "eta must be >= 0, got eta[1]=-1.0"),
        (lambda: bd.thm1_bound([0.1], 8, 1, 0.1, 1.0), "C (number of classes) must be an integer >= 2"),
        (lambda: bd.thm1_bound([0.1], 8, 10, 1.5, 1.0), "delta must satisfy 0 < delta < 1"),
        (lambda: bd.thm1_bound([0.1], 2, 10, 0.001, 1.0), "Delta_{C,delta} is undefined"),
        (lambda: bd.thm1_unrolled_from_delta([0.1, 0.2], [1.0], 8, 1.0), "Delta must be a scalar or a sequence of length T=2"),
        (lambda: bd.thm1_unrolled_from_delta([0.1], -1.0, 8, 1.0), "Delta must be a finite number >= 0"),
        (lambda: bd.thm1_trajectory([0.1], 8, 10, 0.1, 1.0, form="x"), "form must be 'unrolled' or 'closed'"),
        (lambda: bd.cor1_cka_bound(1.0, 0.0), "k_cl_fro must be a finite number > 0, got k_cl_fro=0.0"),
        (lambda: bd.cor1_cka_bound(-1.0, 1.0), "drift_bound must be a number >= 0"),
        (lambda: bd.cor2_rsa_bound(1.0, 0, 1.0), "M must be an integer >= 1"),
        (lambda: bd.cor2_rsa_bound(1.0, 3, 0.0), "sigma_D must be a finite number > 0"),
        (lambda: bd.thm2_bound([0.1], 0.0, 1.0, 8, 10, 0.1, 1.0), "beta must be a finite number > 0"),
        (lambda: bd.appc_eq9_bound([0.1], 1.0, 8, 1.0, 1.0, [1.0, 2.0]), "xi must be a scalar or a sequence of length T=1"),
        (lambda: bd.loss_gap_bound(10, 1.0, n_max=5), "n_max and N must be given together"),
        (lambda: bd.loss_gap_bound(2, 1.0, n_max=5, N=5), "n_max must be < N"),
        (lambda: bd.loss_gap_bound(2, 1.0, n_max=1, N=5), "n_max must be >= N/C"),
        (lambda: bd.loss_gap_bound(10, 1.0, form="x"), "form must be 'log' or 'linear'"),
        (lambda: bd.loss_gap_bound_counts(-1, 3, 1.0), "n_same must be an integer >= 0"),
        (lambda: bd.cka_ratio_measured(np.zeros((3, 3)), np.ones((3, 3))), "CKA is undefined"),
        (lambda: bd.rsa_ratio_measured(np.eye(3), np.ones((3, 2))), "must be a square"),
    ],
)
def test_bad_inputs_one_line(call, fragment):
    with pytest.raises(ValueError) as ei:
        call()
    assert fragment in str(ei.value), str(ei.value)
    assert "\n" not in str(ei.value)


def test_appc_c_sigma_at_least_one_for_ordered_coordinates():
    # Sigma(w)_{ik} = cos(W x_i, W x_k) on ordered off-diagonal coordinates (i, k), i != k. Since Sigma(w) is
    # symmetric, rows (i,k) and (k,i) of J coincide, so J J^T is singular and ||J J^T - I||_2 >= 1 (App. C's
    # C_Sigma >= 1): Eq. 9's first term is then >= sqrt(2) S / (tau sqrt B).
    rng = RNG(12)
    N, d_in, d_out = 5, 3, 2
    X = rng.normal(size=(N, d_in))
    W0 = rng.normal(size=(d_out, d_in))
    coords = [(i, k) for i in range(N) for k in range(N) if i != k]

    def sig(w):
        Z = X @ w.reshape(d_out, d_in).T
        Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        S = Z @ Z.T
        return np.array([S[i, k] for i, k in coords])

    h = 1e-6
    w0 = W0.ravel()
    J = np.stack([(sig(w0 + h * e) - sig(w0 - h * e)) / (2 * h) for e in np.eye(w0.size)], axis=1)
    P = J @ J.T
    assert np.linalg.norm(P - np.eye(len(coords)), 2) >= 1 - 1e-6
    for scale in (0.1, 1.0, 10.0):  # any rescaling of the step (lr) keeps the null direction
        assert np.linalg.norm(scale * P - np.eye(len(coords)), 2) >= 1 - 1e-6
