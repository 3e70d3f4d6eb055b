"""experiments.measure: every measurement against an independent computation (N x N numpy, autograd, loops)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments import measure as ms
from experiments.models import build_simclr_model
from theory.losses import simclr_sim


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny_model(arch: str = "mlp", seed: int = 0, size: int = 6):
    m = build_simclr_model(arch, in_channels=3, width=0.05, image_size=size, proj_hidden=8, proj_dim=5, seed=seed)
    m.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        m(torch.rand(16, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)))
    return m


def _views(B: int, size: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(2 * B, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------
def test_cosine_gram_and_sigma_stats_match_n_by_n():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(37, 6)) + 0.5
    S = ms.cosine_gram(Z).numpy()
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    np.testing.assert_allclose(S, U @ U.T, atol=1e-14)
    assert np.all(np.diag(S) == 1.0)
    st = ms.sigma_stats(Z)
    H = np.eye(37) - 1.0 / 37
    iu = np.triu_indices(37, 1)
    assert st.k_fro == pytest.approx(np.linalg.norm(H @ S @ H), rel=1e-12)
    assert st.sigma_d == pytest.approx(np.std(1.0 - S[iu]), rel=1e-10)  # population std (ddof=0)
    assert st.M == 37 * 36 // 2 and st.N == 37
    with pytest.raises(ValueError):
        ms.sigma_stats(np.vstack([Z, np.zeros(6)]))


def test_alignment_identical_models_is_one_and_gap_zero():
    m = _tiny_model()
    m2 = copy.deepcopy(m)
    x = torch.rand(20, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    m.eval(), m2.eval()
    with torch.no_grad():
        fa, za = m(x)
        fb, zb = m2(x)
    al = ms.alignment(fa, za, fb, zb)
    for k in ("cka", "rsa", "cka_backbone", "rsa_backbone", "cka_linear_raw", "cka_linear_raw_debiased"):
        assert al[k] == pytest.approx(1.0, abs=1e-9), k
    wg = ms.weight_gap(m, m2)
    assert wg.total == 0.0 and all(v == 0.0 for v in wg.per_layer.values())
    assert ms.weight_distance(m, m2) == 0.0
    # the weight gap ignores BatchNorm running statistics (buffers)
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in wg.per_layer)


def test_weight_gap_per_layer_formula_and_distance():
    m = _tiny_model()
    m2 = copy.deepcopy(m)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    wg = ms.weight_gap(m, m2)
    sa, sb = m.state_dict(), m2.state_dict()
    for k, v in wg.per_layer.items():
        a, b = sa[k].double(), sb[k].double()
        ref = float((a - b).norm() / (0.5 * (a.norm() + b.norm())))
        assert v == pytest.approx(ref, rel=1e-12)
    assert wg.total == pytest.approx(sum(wg.per_layer.values()))
    ref_d = math.sqrt(sum(float(((p.detach().double() - q.detach().double()) ** 2).sum())
                          for p, q in zip(m.parameters(), m2.parameters())))
    assert ms.weight_distance(m, m2) == pytest.approx(ref_d, rel=1e-12)


def test_weight_gap_skips_a_head_present_in_one_model_only():
    a = build_simclr_model("mlp", width=0.05, image_size=6, proj_hidden=8, proj_dim=5, num_classes=3, seed=0)
    b = build_simclr_model("mlp", width=0.05, image_size=6, proj_hidden=8, proj_dim=5, seed=0)
    keys = ms.common_weight_keys(a, b)
    assert not any(k.startswith("head") for k in keys)
    assert ms.weight_gap(a, b).total == 0.0


def test_linear_probe_separable_and_nccc():
    g = torch.Generator().manual_seed(0)
    means = 4.0 * torch.randn(4, 10, generator=g)
    ytr = torch.arange(200) % 4
    yte = torch.arange(80) % 4
    Xtr = means[ytr] + torch.randn(200, 10, generator=g)
    Xte = means[yte] + torch.randn(80, 10, generator=g)
    assert ms.linear_probe_accuracy(Xtr, ytr, Xte, yte, max_iter=30) >= 0.99
    assert ms.nccc(Xtr, ytr, Xte, yte) >= 0.99
    # label-free features: chance level, and the probe is deterministic in its seed
    Xr = torch.randn(200, 10, generator=g)
    a1 = ms.linear_probe_accuracy(Xr, ytr, Xte, yte, seed=1, max_iter=20)
    assert a1 == ms.linear_probe_accuracy(Xr, ytr, Xte, yte, seed=1, max_iter=20)
    assert a1 < 0.6
    with pytest.raises(ValueError):
        ms.linear_probe_accuracy(Xtr, ytr[:10], Xte, yte)


def _loop_loss(z1, z2, labels, tau, kind):
    """Per-anchor losses of the 2B-anchor SimCLR batch by explicit loops (Sec. 3)."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    y = torch.cat([labels, labels])
    B = z1.shape[0]
    out = []
    for a in range(2 * B):
        p = (a + B) % (2 * B)
        num = float(z[a] @ z[p]) / tau
        den = []
        for k in range(2 * B):
            if k == a:
                continue
            if kind == "CL" or (kind == "DCL" and k != p) or (kind == "NSCL" and y[k] != y[a]):
                den.append(float(z[a] @ z[k]) / tau)
        out.append(-num + math.log(sum(math.exp(v) for v in den)))
    return np.array(out)


@pytest.mark.parametrize("kind", ["CL", "DCL"])
@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_loss_gap_matches_loops_and_bounds_hold(kind, tau):
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(12, 4, generator=g)
    z2 = z1 + 0.3 * torch.randn(12, 4, generator=g)
    labels = torch.arange(12) % 3
    lg = ms.loss_gap(z1, z2, labels, tau, kind=kind)
    ref = _loop_loss(z1, z2, labels, tau, kind) - _loop_loss(z1, z2, labels, tau, "NSCL")
    assert lg["gap"] == pytest.approx(ref.mean(), rel=1e-10)
    assert lg["gap"] >= 0
    assert lg["holds_counts"] and lg["gap"] <= lg["bound_counts"] <= lg["bound_companion"] + 1e-12
    # per-anchor count bound, by hand: same-class keys in the denominator (CL: + the positive view)
    n_same = 2 * (4 - 1) + (1 if kind == "CL" else 0)
    assert lg["bound_counts"] == pytest.approx(math.log1p(n_same * math.exp(2 / tau) / (2 * 8)), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------
# App. B constants on a real (tiny) network
def test_batch_grad_matches_training_loss_definition():
    m = ms.theory_copy(_tiny_model())
    v = _views(4)
    y = torch.tensor([0, 1, 0, 2])
    g = ms.batch_grad(m, v, y, "NSCL", 0.5)
    _, z = m(v.double())
    loss = simclr_sim(z[:4], z[4:], y).loss("NSCL", 0.5)
    ref = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(m.parameters()))])
    torch.testing.assert_close(g, ref.double())


def test_pair_grad_norms_match_vmap_per_sample_gradients():
    m = ms.theory_copy(_tiny_model("small_cnn"))
    xu, xv = torch.rand(3, 3, 6, 6), torch.rand(3, 3, 6, 6)
    got = ms.pair_grad_norms(m, xu, xv)
    params = {n: p.detach() for n, p in m.named_parameters()}
    buffers = dict(m.named_buffers())

    def sim(p, a, b):
        _, z = torch.func.functional_call(m, {**buffers, **p}, (torch.stack([a, b]),))
        return F.cosine_similarity(z[0:1], z[1:2])[0]

    g = torch.func.vmap(torch.func.grad(sim), in_dims=(None, 0, 0))(params, xu.double(), xv.double())
    ref = torch.sqrt(sum((t ** 2).reshape(3, -1).sum(1) for t in g.values()))
    torch.testing.assert_close(got, ref)


def test_estimate_beta_is_a_hessian_vector_norm_and_restores_weights():
    m = ms.theory_copy(_tiny_model())
    v = _views(4, seed=2)
    y = torch.tensor([0, 1, 0, 2])
    before = [p.detach().clone() for p in m.parameters()]
    d = torch.randn(sum(p.numel() for p in m.parameters()), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    est = ms.estimate_beta(m, v, y, ["CL"], 0.5, {"r": d}, rel=1e-6)
    assert all(torch.equal(a, p) for a, p in zip(before, m.parameters()))
    # ||H d|| / ||d|| by double backward (independent of the finite difference)
    params = list(m.parameters())
    _, z = m(v.double())
    loss = simclr_sim(z[:4], z[4:], y).loss("CL", 0.5)
    gr = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in gr])
    hv = torch.autograd.grad(flat @ (d / d.norm()), params)
    ref = float(torch.cat([t.reshape(-1) for t in hv]).norm())
    assert est.beta == pytest.approx(ref, rel=1e-3)


def test_lem7_holds_with_the_exact_batch_G():
    """Lem. 7's proof: ||grad CL - grad NSCL|| <= (G/tau) mean_a 2 alpha_a with G = max over EVERY pair of the
    batch (computed exhaustively here, so the inequality is deterministic)."""
    m = ms.theory_copy(_tiny_model(seed=3))
    B = 4
    v = _views(B, seed=4)
    y = torch.tensor([0, 0, 1, 1])
    pairs = torch.tensor([(i, k) for i in range(2 * B) for k in range(2 * B) if i != k])
    G = float(ms.pair_grad_norms(m, v[pairs[:, 0]], v[pairs[:, 1]]).max())
    for tau in (0.3, 1.0):
        res = ms.lem7_check(m, v, y, tau, G, Delta=10.0)
        gk = ms.batch_grad(m, v, y, "CL", tau)
        gn = ms.batch_grad(m, v, y, "NSCL", tau)
        assert res["lhs"] == pytest.approx(float((gk - gn).norm()), rel=1e-12)
        assert res["holds_realized"] and res["lhs"] <= res["realized_bound"]
        assert res["bound"] == pytest.approx(G / tau * 10.0)
        assert 0 < res["alpha_mean"] < 1 and res["nscl_invalid"] == 0


def test_sample_pairs_are_distinct_views():
    g = torch.Generator().manual_seed(0)
    p = ms.sample_pairs(10, 7, g)
    assert p.shape == (7, 2) and bool((p[:, 0] != p[:, 1]).all()) and int(p.max()) < 10
    assert bool((p[:3, 1] == p[:3, 0] + 5).all())  # positives first


# ----------------------------------------------------------------------------------------------------------
# App. C: ||J||_2 and the Taylor remainder
def test_jacobian_spectral_norm_matches_explicit_jacobian():
    m = ms.theory_copy(_tiny_model(seed=6))
    x = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(7))
    names = [n for n, _ in m.named_parameters()]
    prim = tuple(p.detach() for _, p in m.named_parameters())
    J = torch.autograd.functional.jacobian(lambda *ps: ms.sigma_of_params(m, x, dict(zip(names, ps))), prim)
    Jm = torch.cat([j.reshape(25, -1) for j in J], dim=1)
    true = float(torch.linalg.matrix_norm(Jm, ord=2))
    est = ms.jacobian_spectral_norm(m, x, iters=60)
    assert est <= true * (1 + 1e-9)
    assert est == pytest.approx(true, rel=1e-3)
    # rows of the diagonal entries (cos(z, z) = 1) are zero
    assert float(Jm[torch.arange(5) * 6].abs().max()) < 1e-12


def test_taylor_remainder_is_second_order():
    m = ms.theory_copy(_tiny_model(seed=8))
    x = torch.rand(6, 3, 6, 6, generator=torch.Generator().manual_seed(9))
    w0 = {n: p.detach().clone() for n, p in m.named_parameters()}
    g = torch.Generator().manual_seed(10)
    d = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in w0.items()}
    r = [ms.taylor_remainder(m, x, w0, {n: w0[n] + h * d[n] for n in w0}) for h in (1e-4, 5e-5)]
    assert r[0]["R_fro"] / r[1]["R_fro"] == pytest.approx(4.0, rel=0.05)  # O(h^2)
    assert r[0]["dw_norm"] == pytest.approx(2 * r[1]["dw_norm"])
    assert r[1]["M_hat"] == pytest.approx(2 * r[1]["R_fro"] / r[1]["dw_norm"] ** 2)
    # J dw by central differences
    h, eps = 1e-4, 1e-3
    sp = ms.sigma_of_params(m, x, {n: w0[n] + eps * h * d[n] for n in w0})
    sm = ms.sigma_of_params(m, x, {n: w0[n] - eps * h * d[n] for n in w0})
    jdw_fd = float(((sp - sm) / (2 * eps)).norm())
    assert r[0]["jdw_fro"] == pytest.approx(jdw_fd, rel=1e-6)
