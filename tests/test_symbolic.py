"""Tests for theory/symbolic.py: each sympy derivation proves its identity (ok=True) and its lambdified
expressions agree with the numeric code (theory/bounds/, theory/losses/, inline numpy)."""

import math

import numpy as np
import pytest
import sympy as sp

from theory import bounds as bd
from theory import symbolic as sy

RNG = np.random.default_rng

try:  # theory/losses/ is written by another helper; the inline numpy reference is always used too
    import torch

    from theory import losses as L
except ImportError:  # pragma: no cover
    L = None


def _softmax(x):
    z = np.exp(x - x.max())
    return z / z.sum()


def test_all_checks_pass():
    for c in sy.all_checks():
        assert c.ok is True, c.name


def test_is_zero_negative_control():
    x = sp.symbols("x", positive=True)
    assert not sy._is_zero(sp.exp(x) - 1 - x)
    assert sy._is_zero(sp.log(sp.exp(x)) - x)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_gradient_and_hessian_match_numeric(tau):
    K = 4
    g = sy.softmax_ce_gradient(K)
    h = sy.softmax_ce_hessian(K)
    s, t = g.exprs["s"], g.exprs["tau"]
    fg = sp.lambdify([*s, t], g.exprs["grad"], "numpy")
    fh = sp.lambdify([*s, t], h.exprs["hessian"], "numpy")
    rng = RNG(0)
    for _ in range(5):
        x = rng.uniform(-1, 1, K)
        p = _softmax(x / tau)
        e0 = np.eye(K)[0]
        grad_np = (p - e0) / tau
        hess_np = (np.diag(p) - np.outer(p, p)) / tau**2
        np.testing.assert_allclose(np.array(fg(*x, tau), dtype=float), grad_np, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.array(fh(*x, tau), dtype=float), hess_np, rtol=1e-10, atol=1e-12)
        if L is not None:
            sim = torch.tensor(x[None, :], dtype=torch.float64)
            pos = torch.zeros(1, K, dtype=torch.bool)
            pos[0, 0] = True
            den = torch.ones(1, K, dtype=torch.bool)
            gl = L.contrastive_grad(sim, pos, den, tau)[0].numpy()
            hl = L.contrastive_hessian(sim, den, tau, 0).numpy()
            np.testing.assert_allclose(gl, grad_np, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(hl, hess_np, rtol=1e-12, atol=1e-14)
            # loss value from the symbolic expression vs theory.losses
            fl = sp.lambdify([*s, t], g.exprs["loss"], "numpy")
            lv = L.masked_contrastive_loss(sim, pos, den, tau).loss[0].item()
            assert lv == pytest.approx(float(fl(*x, tau)), rel=1e-12)


def test_jacobian_inf_norm_numeric():
    j = sy.jacobian_inf_norm_bound(K=3)
    assert j.exprs["max_value"] == sp.Rational(1, 2) and j.exprs["argmax"] == sp.Rational(1, 2)
    f = sp.lambdify(j.exprs["p"], j.exprs["row_abs_sum"], "numpy")
    rng = RNG(1)
    for _ in range(50):
        p = rng.dirichlet(np.ones(3) * rng.uniform(0.1, 3))
        J = np.diag(p) - np.outer(p, p)
        rows = np.abs(J).sum(axis=1)
        np.testing.assert_allclose(np.array(f(*p), dtype=float), rows, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(rows, 2 * p * (1 - p), rtol=1e-10, atol=1e-15)
        assert rows.max() <= 0.5 + 1e-15 and np.linalg.norm(J, 2) <= rows.max() + 1e-15
        if L is not None:
            assert L.jacobian_inf_norm(torch.tensor(p)).item() == pytest.approx(rows.max(), rel=1e-12)
    J = np.array([[0.25, -0.25], [-0.25, 0.25]])
    assert np.linalg.norm(J, 2) == pytest.approx(0.5)


def test_lemma3_numeric():
    c = sy.lemma3_gradient_norm()
    rng = RNG(2)
    for _ in range(50):
        p = rng.dirichlet(np.ones(5))
        v = p - np.eye(5)[0]
        assert v @ v <= 2 * (1 - p[0]) ** 2 + 1e-15 <= 2 + 1e-15
    assert c.ok


def test_lemma6_identity_numeric():
    c = sy.lemma6_l1_identity(2, 3)
    syms = [*c.exprs["e_pos"], *c.exprs["e_neg"]]
    f_l1 = sp.lambdify(syms, c.exprs["l1"], "numpy")
    f_a = sp.lambdify(syms, c.exprs["alpha"], "numpy")
    rng = RNG(3)
    tau = 0.4
    for _ in range(20):
        s = rng.uniform(-1, 1, 5)
        e = np.exp(s / tau)
        p = e / e.sum()
        q = np.zeros(5)
        q[2:] = e[2:] / e[2:].sum()
        assert np.abs(p - q).sum() == pytest.approx(float(f_l1(*e)), rel=1e-12)
        assert float(f_a(*e)) == pytest.approx(p[:2].sum(), rel=1e-12)
        if L is not None:
            gap = L.reweighting_gap(torch.tensor(p), torch.tensor(q))
            assert gap.l1.item() == pytest.approx(2 * p[:2].sum(), rel=1e-12)
            assert gap.l2.item() <= bd.lem6_l2_sharp(2 * math.exp(2 / tau) * 2 / 3) + 1e-15


def test_lemma6_sharpening_matches_bounds():
    c = sy.lemma6_sharpening()
    f1 = sp.lambdify(c.exprs["Delta"], c.exprs["l1_sharp"], "numpy")
    f2 = sp.lambdify(c.exprs["Delta"], c.exprs["l2_sharp"], "numpy")
    for D in [0.0, 0.013, 0.7, 5.0, 300.0]:
        assert float(f1(D)) == pytest.approx(bd.lem6_l1_sharp(D), rel=1e-14, abs=1e-300)
        assert float(f2(D)) == pytest.approx(bd.lem6_l2_sharp(D), rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("T", [1, 3, 5])
def test_gronwall_symbolic_equals_numeric(T):
    c = sy.gronwall_unrolling(T)
    a, g, cc = c.exprs["alpha"], c.exprs["gamma"], c.exprs["c"]
    f_rec = sp.lambdify([*a, *g], c.exprs["recurrence"], "numpy")
    f_prod = sp.lambdify([*a, *g], c.exprs["product_form"], "numpy")
    f_tel = sp.lambdify([*a, cc], c.exprs["telescoped"], "numpy")
    rng = RNG(T)
    B, tau, Delta = 16, 0.5, 0.8
    eta = rng.uniform(0, 2, T)
    alpha = eta / (2 * tau**2 * B)
    gamma = eta * Delta / (tau * math.sqrt(B))
    num = bd.thm1_unrolled_from_delta(eta, Delta, B, tau)
    assert float(f_rec(*alpha, *gamma)) == pytest.approx(num, rel=1e-12)
    assert float(f_prod(*alpha, *gamma)) == pytest.approx(num, rel=1e-12)
    assert float(f_tel(*alpha, 2 * tau * math.sqrt(B) * Delta)) == pytest.approx(num, rel=1e-12)
    assert num <= bd.thm1_bound_gronwall_from_delta(eta, Delta, B, tau) <= bd.thm1_bound_from_delta(eta, Delta, B, tau)
    # Thm 2 version: alpha = beta eta, gamma = eta G Delta / tau
    beta, G = 1.5, 0.3
    thm2_exact = bd.drift_recurrence(eta, beta, G * Delta / tau)[-1]
    assert float(f_prod(*(beta * eta), *(eta * G * Delta / tau))) == pytest.approx(thm2_exact, rel=1e-12)
    assert float(f_tel(*(beta * eta), G * Delta / (beta * tau))) == pytest.approx(thm2_exact, rel=1e-12)
    assert thm2_exact <= bd.thm2_bound_from_delta(eta, beta, G, Delta, tau) * (1 + 1e-12)


def test_cor_algebra_and_sharp_cosine_numeric():
    c = sy.cor_algebra()
    f = sp.lambdify([c.exprs["A"], c.exprs["d"]], c.exprs["lhs"], "numpy")
    s = sy.sharp_cosine_bound()
    fs = sp.lambdify(s.exprs["rho"], s.exprs["cos_min"], "numpy")
    fh = sp.lambdify([s.exprs["a"], s.exprs["rho"]], s.exprs["h"], "numpy")
    for A, d in [(2.0, 0.1), (1.0, 0.5), (3.0, 2.9), (1.0, 1.5)]:
        assert float(f(A, d)) == pytest.approx(bd.cos_lower_bound_paper(d / A), rel=1e-12)
    for rho in [0.05, 0.3, 0.8, 0.999]:
        assert float(fs(rho)) == pytest.approx(bd.cos_lower_bound_sharp(rho), rel=1e-10)
        grid = np.linspace(-rho, rho, 100001)
        assert fh(grid, rho).max() == pytest.approx(rho**2 / (1 - rho**2), rel=1e-6)


def test_loss_gap_algebra_numeric():
    c = sy.loss_gap_algebra()
    fb = sp.lambdify([c.exprs["N"], c.exprs["C"]], c.exprs["balanced"], "numpy")
    for C, n in [(10, 5000), (100, 500), (200, 500)]:
        x = float(fb(C * n, C))
        assert math.log1p(math.e**2 * x) == pytest.approx(bd.loss_gap_bound(C, 1.0), rel=1e-12)
        assert math.log1p(math.e**2 * x) == pytest.approx(bd.loss_gap_bound(C, 1.0, n_max=n, N=C * n), rel=1e-12)
