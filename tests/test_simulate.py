"""Sigma-space engine (simulate/step.py, layout.py, run.py) against a slow per-anchor reference of Eq. 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import simulate.run as run_module
from simulate.batches import batch_items, draw_batch
from simulate.config import NonFiniteError, SigmaConfig, eta_values, theory_constants, validate_config
from simulate.layout import build_layout
from simulate.reference import make_reference
from simulate.run import run_sigma_descent
from simulate.step import compute_step, full_drift


def tiny(**kw) -> SigmaConfig:
    base = dict(n=6, classes=3, batch_size=4, tau=0.5, eta=0.7, steps=6, delta=0.1, embed_dim=5,
                eval_every=0, lemma5_trials=0, plot=False, checks=False)
    base.update(kw)
    return SigmaConfig(**base)


def paper_loss(S: torch.Tensor, batch, labels, V: int, tau: float, kind: str) -> torch.Tensor:
    """(1/B) sum_s ell_s with the paper's Sec. 3 losses written out per anchor and per key (python loops).

    CL denominator: sum_u [1{u != s} exp(S[i, x_u]/tau) + exp(S[i, x'_u]/tau)]; NSCL: the u with y_u != y_s.
    An NSCL anchor without negatives contributes 0 (the library's convention for an undefined loss).
    """
    B = len(batch.samples)
    j, a, b = batch.samples.tolist(), batch.anchor_slot.tolist(), batch.pos_slot.tolist()
    total = S.sum() * 0.0  # keeps the graph when no anchor contributes
    for s in range(B):
        i = j[s] * V + a[s]
        terms = []
        for u in range(B):
            xa, xb = j[u] * V + a[u], j[u] * V + b[u]
            if kind == "CL":
                if u != s:
                    terms.append(S[i, xa] / tau)
                terms.append(S[i, xb] / tau)
            elif int(labels[j[u]]) != int(labels[j[s]]):
                terms += [S[i, xa] / tau, S[i, xb] / tau]
        if not terms:
            continue
        den = torch.log(sum(torch.exp(t) for t in terms))
        total = total + den - S[i, j[s] * V + b[s]] / tau
    return total / B


def reference_run(cfg: SigmaConfig):
    """Slow Eq. 1: autograd of the loop loss wrt Sigma (ordered) or its upper triangle (symmetric); with
    diag="fixed" the diagonal is not a coordinate (its gradient is dropped: the loss still reads it)."""
    ref = make_reference(cfg)
    V = ref.views
    eta = eta_values(cfg)
    bg = torch.Generator().manual_seed(cfg.batch_seed)
    ag = torch.Generator().manual_seed(cfg.aug_seed)
    S = {"CL": ref.sigma0.clone(), "NSCL": ref.sigma0.clone()}
    batches = []
    for t in range(cfg.steps):
        batch = draw_batch(ref.n, cfg.batch_size, V, cfg.replacement, bg, ag)
        batches.append(batch)
        for kind in ("CL", "NSCL"):
            if cfg.sigma == "symmetric":
                theta = torch.triu(S[kind]).clone().requires_grad_(True)
                full = torch.triu(theta) + torch.triu(theta, 1).T
                paper_loss(full, batch, ref.labels, V, cfg.tau, kind).backward()
                with torch.no_grad():
                    th = theta - eta[t] * theta.grad
                    new = torch.triu(th) + torch.triu(th, 1).T
            else:
                P = S[kind].clone().requires_grad_(True)
                paper_loss(P, batch, ref.labels, V, cfg.tau, kind).backward()
                with torch.no_grad():
                    new = P - eta[t] * P.grad
            if cfg.diag == "fixed":
                new = new.clone()
                new.diagonal().copy_(S[kind].diagonal())
            if cfg.project == "clip":
                touched = torch.zeros_like(new, dtype=torch.bool)
                rows, cols = batch_items(batch, V)
                touched[rows[:, None], cols[None, :]] = True
                if cfg.sigma == "symmetric":
                    touched |= touched.T.clone()
                new = torch.where(touched, new.clamp(-1, 1), new)
            S[kind] = new.detach()
    return S, batches


CASES = [
    dict(),  # ordered, slots, with replacement (duplicates occur)
    dict(sigma="symmetric"),
    dict(views="identity"),
    dict(views="identity", sigma="symmetric"),
    dict(replacement=False),
    dict(view_slots=3, project="clip", eta=3.0),
    dict(eta_schedule="cosine", n=9, batch_size=5),
    dict(classes=2, batch_size=3, n=4),  # NSCL anchors without negatives occur
    dict(diag="free"),  # duplicated draws put Sigma(i, i) into the CL denominator: it moves
    dict(diag="free", sigma="symmetric"),
    dict(diag="free", views="identity"),  # the positive logit is Sigma(i, i)
    dict(diag="free", views="identity", sigma="symmetric"),
]


@pytest.mark.parametrize("opts", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "default" for c in CASES])
def test_engine_matches_slow_reference(opts):
    cfg = tiny(**opts)
    res = run_sigma_descent(cfg, None, quiet=True)
    S_ref, _ = reference_run(cfg)
    torch.testing.assert_close(res.sigma_cl, S_ref["CL"], rtol=0, atol=1e-12)
    torch.testing.assert_close(res.sigma_ns, S_ref["NSCL"], rtol=0, atol=1e-12)
    assert not torch.equal(res.sigma_cl, make_reference(cfg).sigma0)  # Sigma actually moved
    if cfg.sigma == "symmetric":
        assert torch.equal(res.sigma_cl, res.sigma_cl.T) and torch.equal(res.sigma_ns, res.sigma_ns.T)


@pytest.mark.parametrize("opts", [dict(), dict(sigma="symmetric"), dict(views="identity", project="none"),
                                  dict(views="identity", sigma="symmetric", project="none")],
                         ids=["ordered", "symmetric", "identity", "identity-symmetric"])
def test_diag_fixed_stays_one_free_moves(opts):
    """diag=fixed (default): every diagonal entry is exactly 1 after every step; diag=free: the same batches
    move the CL diagonal, exactly as the loop reference. (views=identity: the positive Sigma(i, i) = 1 is pushed
    up, so only --project none lets it move.)"""
    fixed = run_sigma_descent(tiny(steps=12, **opts), None, quiet=True)
    free = run_sigma_descent(tiny(steps=12, diag="free", **opts), None, quiet=True)
    assert fixed.config["diag"] == "fixed" and SigmaConfig().diag == "fixed"
    for S in (fixed.sigma_cl, fixed.sigma_ns):
        assert torch.equal(S.diagonal(), torch.ones(S.shape[0], dtype=S.dtype))
    moved = (free.sigma_cl.diagonal() != 1.0).sum()
    assert moved > 0  # a duplicated draw (or identity's positive) read Sigma(i, i)
    if opts.get("views") != "identity":  # slots: NSCL never reads its own diagonal (same class)
        assert torch.equal(free.sigma_ns.diagonal(), torch.ones(free.sigma_ns.shape[0], dtype=torch.float64))
    S_ref, _ = reference_run(tiny(steps=12, diag="free", **opts))
    torch.testing.assert_close(free.sigma_cl.diagonal(), S_ref["CL"].diagonal(), rtol=0, atol=1e-12)


def test_reference_case_has_duplicates_and_invalid_nscl():
    """The slow-reference cases really exercise duplicate anchors and anchors without negatives."""
    cfg = tiny(steps=30)
    ref = make_reference(cfg)
    bg, ag = torch.Generator().manual_seed(cfg.batch_seed), torch.Generator().manual_seed(cfg.aug_seed)
    dups = 0
    for _ in range(cfg.steps):
        rows, _ = batch_items(draw_batch(6, 4, 2, True, bg, ag), 2)
        dups += len(set(rows.tolist())) < 4
    assert dups > 0
    res = run_sigma_descent(tiny(classes=2, batch_size=3, n=4, steps=20, checks=True), None, quiet=True)
    assert sum(r["n_invalid_nscl"] for r in res.step_rows) > 0


def test_shared_randomness(monkeypatch):
    """One batch (samples + view pairs) per step, used by BOTH runs, reproducible from the seeds."""
    calls = []
    orig = run_module.draw_batch

    def spy(*a, **k):
        b = orig(*a, **k)
        calls.append(b)
        return b

    monkeypatch.setattr(run_module, "draw_batch", spy)
    cfg = tiny(steps=5, classes=2, n=8, batch_size=3)
    res = run_sigma_descent(cfg, None, quiet=True)
    assert len(calls) == cfg.steps
    _, batches = reference_run(cfg)
    for got, want in zip(calls, batches):
        for f in ("samples", "anchor_slot", "pos_slot"):
            assert torch.equal(getattr(got, f), getattr(want, f))
    # the supports agree with one shared batch: every entry NSCL moved, CL moved too (NSCL drops the
    # same-class keys, CL keeps all), and each step's positive entries moved in both runs
    S0 = make_reference(cfg).sigma0
    moved_cl = res.sigma_cl != S0
    moved_ns = res.sigma_ns != S0
    assert bool((moved_ns & ~moved_cl).sum() == 0)
    labels = make_reference(cfg).labels
    for b in calls:
        rows, cols = batch_items(b, 2)
        pos = cols[cfg.batch_size:]
        has_neg = (labels[b.samples][:, None] != labels[b.samples][None, :]).any(1)  # NSCL anchor defined
        assert bool(moved_cl[rows, pos].all()) and bool(moved_ns[rows[has_neg], pos[has_neg]].all())


@pytest.mark.parametrize("opts", [dict(), dict(sigma="symmetric"), dict(project="clip", eta=20.0),
                                  dict(views="identity")])
def test_drift_incremental_equals_full(opts):
    cfg = tiny(n=30, classes=3, batch_size=8, steps=40, **opts)
    res = run_sigma_descent(cfg, None, quiet=True)
    full = full_drift(res.sigma_cl, res.sigma_ns)
    assert full > 0
    assert res.drift == pytest.approx(full, rel=1e-10)
    direct = float(torch.linalg.matrix_norm(res.sigma_cl - res.sigma_ns))
    assert full == pytest.approx(direct, rel=1e-13)
    assert res.eval_rows[-1]["drift_full"] == pytest.approx(full, rel=1e-15)


def test_geometry_scatter_accumulates_duplicates():
    """Duplicate (row, key) pairs are summed: the block gradient equals a dense index_put_(accumulate=True)."""
    M = 6
    rows = torch.tensor([0, 0, 2])
    cols = torch.cat([rows, torch.tensor([1, 1, 3])])
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    geom = build_layout(rows, cols, lab[rows], lab[cols], M, symmetric=False)
    g = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dense = torch.zeros(M, M, dtype=torch.float64)
    dense.index_put_((rows[:, None].expand(3, 6), cols[None, :].expand(3, 6)), g / 3, accumulate=True)
    U = geom.sigma_grad(g)
    blk = torch.zeros(M, M, dtype=torch.float64)
    blk[geom.block_rows[:, None], geom.unique_cols[None, :]] = U
    torch.testing.assert_close(blk, dense, rtol=0, atol=1e-15)
    # symmetric: G + G^T - Diag G
    geom_s = build_layout(rows, cols, lab[rows], lab[cols], M, symmetric=True)
    Us = geom_s.sigma_grad(g)
    blk_s = torch.zeros(M, M, dtype=torch.float64)
    blk_s[geom_s.block_rows[:, None], geom_s.unique_cols[None, :]] = Us
    torch.testing.assert_close(blk_s, dense + dense.T - torch.diag(torch.diagonal(dense)), rtol=0, atol=1e-15)


def test_reference_set_structure():
    cfg = tiny(n=40, classes=4, embed_dim=16, separation=3.0, aug_noise=0.2)
    ref = make_reference(cfg)
    S = ref.sigma0
    assert S.shape == (80, 80) and torch.equal(S, S.T)
    assert torch.all(torch.diagonal(S) == 1.0) and float(S.abs().max()) <= 1.0
    lab = ref.item_labels
    same = lab[:, None] == lab[None, :]
    off = ~torch.eye(80, dtype=torch.bool)
    assert float(S[same & off].mean()) > float(S[~same].mean()) + 0.3
    # separation 0: no class structure
    S0 = make_reference(tiny(n=40, classes=4, embed_dim=16, separation=0.0)).sigma0
    assert abs(float(S0[same & off].mean()) - float(S0[~same].mean())) < 0.1
    # identity views: N x N
    assert make_reference(tiny(views="identity")).sigma0.shape == (6, 6)


def test_load_reference_from_npy(tmp_path):
    rng = np.random.default_rng(0)
    E = rng.normal(size=(12, 2, 7))
    y = np.repeat(np.array([5, 9, 11]), 4)
    np.save(tmp_path / "e.npy", E)
    np.save(tmp_path / "y.npy", y)
    cfg = tiny(init_path=str(tmp_path / "e.npy"), labels_path=str(tmp_path / "y.npy"))
    ref = make_reference(cfg)
    assert ref.n == 12 and ref.views == 2 and ref.classes == 3 and ref.balanced
    X = E / np.linalg.norm(E, axis=-1, keepdims=True)
    X = X.reshape(24, 7)
    want = np.clip(X @ X.T, -1, 1)
    np.fill_diagonal(want, 1.0)
    np.testing.assert_allclose(ref.sigma0.numpy(), want, rtol=0, atol=1e-15)
    assert ref.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    res = run_sigma_descent(cfg, None, quiet=True)
    assert res.config["n"] == 12 and res.config["classes"] == 3
    # (N, d) embeddings: view slots from aug noise
    np.save(tmp_path / "e2.npy", rng.normal(size=(12, 7)))
    ref2 = make_reference(tiny(init_path=str(tmp_path / "e2.npy"), labels_path=str(tmp_path / "y.npy")))
    assert ref2.sigma0.shape == (24, 24)


@pytest.mark.parametrize("kw, match", [
    (dict(tau=0.0), "tau"), (dict(delta=1.0), "delta"), (dict(classes=1), "C"), (dict(n=7), "divisible"),
    (dict(batch_size=1), "batch_size"), (dict(views="mirror"), "views"), (dict(sigma="sym"), "sigma"),
    (dict(project="box"), "project"), (dict(view_slots=1), "view_slots"), (dict(eta=-1.0), "eta"),
    (dict(eta_schedule="linear"), "eta_schedule"), (dict(replacement=False, batch_size=7), "without replacement"),
    (dict(stop_after=6), "stop_after"), (dict(separation=-1.0), "separation"),
])
def test_validate_config_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        validate_config(tiny(**kw))
    assert "\n" not in str(e.value)


def test_eta_schedules(tmp_path):
    cos = eta_values(tiny(eta=2.0, eta_schedule="cosine", steps=4))
    np.testing.assert_allclose(cos, 2.0 * 0.5 * (1 + np.cos(np.pi * np.arange(4) / 4)))
    np.save(tmp_path / "eta.npy", np.array([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(eta_values(tiny(eta_schedule=str(tmp_path / "eta.npy"), steps=3)), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="length"):
        eta_values(tiny(eta_schedule=str(tmp_path / "eta.npy"), steps=4))
    np.testing.assert_array_equal(eta_values(tiny(eta=[1.0, 2.0], steps=2)), [1.0, 2.0])


def test_nonfinite_names_step_and_writes_outputs(tmp_path):
    cfg = tiny(eta=1e308, steps=5, checks=True)
    with pytest.raises(NonFiniteError, match=r"non-finite .* step [0-9]+"):
        run_sigma_descent(cfg, tmp_path, quiet=True)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "checks.json").is_file()
    assert (tmp_path / "steps.csv").is_file()


def test_compute_step_gradients_are_library_gradients():
    """G = (1/B) scatter of theory.losses.contrastive_grad rows; checked against autograd of the loop loss."""
    cfg = tiny(n=9, batch_size=5)
    ref = make_reference(cfg)
    gen = torch.Generator().manual_seed(3)
    S_ns = ref.sigma0 + 0.05 * torch.randn(ref.sigma0.shape, dtype=torch.float64, generator=gen)
    batch = draw_batch(9, 5, 2, True, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    rows, cols = batch_items(batch, 2)
    lab = ref.item_labels
    geom = build_layout(rows, cols, lab[rows], lab[cols], 18, False)
    st = compute_step(ref.sigma0, S_ns, geom, 0.5)
    for S, U, kind in ((ref.sigma0, st.U_cl, "CL"), (S_ns, st.U_ns, "NSCL")):
        P = S.clone().requires_grad_(True)
        paper_loss(P, batch, ref.labels, 2, 0.5, kind).backward()
        dense = torch.zeros(18, 18, dtype=torch.float64)
        dense[geom.block_rows[:, None], geom.unique_cols[None, :]] = U
        torch.testing.assert_close(dense, P.grad, rtol=0, atol=1e-14)


@pytest.mark.parametrize("opts", [dict(), dict(sigma="symmetric"), dict(views="identity"), dict(view_slots=3),
                                  dict(views="identity", sigma="symmetric"), dict(classes=2, n=4, batch_size=6)])
def test_block_gradient_equals_scatter_of_per_anchor_gradients(opts):
    """The hot path (one multiset softmax per unique anchor row of the block) = the (B, 2B) per-(anchor, key)
    library gradients scattered onto Sigma (duplicates summed), for both runs."""
    from theory.losses import contrastive_grad, contrastive_masks, prepare_masks

    cfg = tiny(n=12, batch_size=10, **opts) if "n" not in opts else tiny(**opts)
    ref = make_reference(cfg)
    V = ref.views
    gen = torch.Generator().manual_seed(5)
    S_ns = (ref.sigma0 + 0.3 * torch.randn(ref.sigma0.shape, dtype=torch.float64, generator=gen))
    if cfg.sigma == "symmetric":
        S_ns = 0.5 * (S_ns + S_ns.T)
    bg, ag = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    lab = ref.item_labels
    seen_dup = False
    for _ in range(5):
        batch = draw_batch(ref.n, cfg.batch_size, V, True, bg, ag)
        rows, cols = batch_items(batch, V)
        geom = build_layout(rows, cols, lab[rows], lab[cols], ref.n * V, cfg.sigma == "symmetric")
        seen_dup |= geom.R < cfg.batch_size
        st = compute_step(ref.sigma0, S_ns, geom, cfg.tau)
        B = cfg.batch_size
        ids = torch.arange(B)
        self_mask = torch.zeros(B, 2 * B, dtype=torch.bool)
        self_mask[ids, ids] = True
        for S, U, kind, prep in ((ref.sigma0, st.U_cl, "CL", geom.prep_cl), (S_ns, st.U_ns, "NSCL", geom.prep_ns)):
            pos, den = contrastive_masks(kind, ids, torch.cat([ids, ids]), lab[rows], lab[cols], self_mask)
            sim = S[rows[:, None], cols[None, :]]
            want = geom.sigma_grad(contrastive_grad(sim, pos, den, cfg.tau))
            torch.testing.assert_close(U, want, rtol=1e-12, atol=1e-15)
            # the engine's (B, 2B) masks and PreparedMasks are the library's
            lib = prepare_masks(pos, den)
            assert torch.equal(prep.pos_mask, pos) and torch.equal(prep.den_mask, den)
            for f in ("den_bias", "pos_rows", "pos_cols", "pos_w", "valid", "invalid_rows", "n_pos", "n_den"):
                assert torch.equal(getattr(prep, f), getattr(lib, f)), f
        assert torch.equal(st.sim_cl, ref.sigma0[rows[:, None], cols[None, :]])
    assert seen_dup


def test_checks_do_not_change_the_trajectory():
    """checks on / off: bit-identical Sigma (the checks only read the step's tensors)."""
    cfg = tiny(n=30, classes=3, batch_size=8, steps=15)
    a = run_sigma_descent(cfg, None, quiet=True)
    b = run_sigma_descent(tiny(n=30, classes=3, batch_size=8, steps=15, checks=True), None, quiet=True)
    assert torch.equal(a.sigma_cl, b.sigma_cl) and torch.equal(a.sigma_ns, b.sigma_ns) and a.drift == b.drift


def test_defaults_keep_sigma_in_the_box_and_legacy_regime_by_flags():
    d = SigmaConfig()
    assert (d.project, d.n, d.classes, d.batch_size, d.tau, d.eta, d.steps) == ("clip", 1000, 100, 512, 2.0, 16.0, 200)
    assert d.n % d.classes == 0
    # the default regime's certificate is non-vacuous (Delta < inf, Thm 1 exponent moderate)
    c = theory_constants(d.classes, d.batch_size, d.steps, d.delta, d.tau)
    assert 0.5 < c["Delta"] < 1.0
    assert d.eta * d.steps * c["lipschitz"] < 1.0
