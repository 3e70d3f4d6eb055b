"""Sigma-space descent in float32 and on another device (issue 8): agreement with float64, the float64 checks,
device handling on the CPU, and the memory-light N x N helpers the large runs rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import simulate.certificates as cert
from simulate.batches import batch_items, draw_batch
from simulate.config import SigmaConfig, validate_config
from simulate.layout import build_layout
from simulate.reference import _gram, make_reference
from simulate.run import check_run_memory, run_sigma_descent
from simulate.step import apply_step, compute_step

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7


def small(**kw) -> SigmaConfig:
    base = dict(n=40, classes=4, batch_size=16, tau=0.5, eta=2.0, steps=20, delta=0.1, embed_dim=8,
                eval_every=10, lemma5_trials=0, plot=False, checks=True)
    base.update(kw)
    return SigmaConfig(**base)


@pytest.mark.parametrize("sigma", ["ordered", "symmetric"])
def test_one_step_float32_matches_float64_on_the_same_inputs(sigma: str) -> None:
    """One coupled step in float32 against float64 on the SAME (float32-representable) Sigma: the updated blocks
    differ by float32 rounding only. Tolerance: a step entry is blk - eta (p - w) n_r/(B tau) with |blk| <= 1,
    p, w in [0, 1], so each entry carries a few float32 roundings of terms of size <= 1 + 2 eta/tau
    (softmax, product, sum): 16 eps32 (1 + 2 eta/tau) (= 9.5e-6 here) bounds it with room."""
    cfg = small(sigma=sigma)
    ref = make_reference(cfg)
    S32 = ref.sigma0.to(torch.float32)
    S64 = S32.to(torch.float64)  # exactly the float32 values
    bg, ag = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    rows, cols = batch_items(draw_batch(ref.n, cfg.batch_size, ref.views, True, bg, ag), ref.views)
    lab = ref.item_labels
    out = {}
    for dt, S in ((torch.float32, S32), (torch.float64, S64)):
        lay = build_layout(rows, cols, lab[rows], lab[cols], S.shape[0], sigma == "symmetric", "fixed", dt)
        st = compute_step(S, S.clone(), lay, cfg.tau)
        assert st.p_cl.dtype == dt and st.blk_cl.dtype == dt
        _, new_cl, new_ns = apply_step(S.clone(), S.clone(), st, cfg.eta, clip=True)
        out[dt] = (new_cl.double(), new_ns.double(), st)
    tol = 16 * EPS32 * (1 + 2 * cfg.eta / cfg.tau)
    for a, b in zip(out[torch.float32][:2], out[torch.float64][:2]):
        err = float((a - b).abs().max())
        assert err <= tol, (err, tol)
    moved = float((out[torch.float64][0] - out[torch.float64][2].blk_cl).abs().max())
    assert moved > 100 * tol  # the step really moved Sigma
    # the checks' view of a float32 step is the float64 step on the same blocks, exactly
    st32, st64 = out[torch.float32][2], out[torch.float64][2]
    chk = st32.float64_cpu()
    assert chk.blk_cl.dtype == torch.float64 and st64.float64_cpu() is st64
    assert torch.equal(chk.blk_cl, st64.blk_cl) and torch.equal(chk.p_cl, st64.p_cl) and torch.equal(chk.q_ns, st64.q_ns)


def test_short_run_float32_matches_float64_and_its_verdicts() -> None:
    """20 steps: Sigma within T x the one-step tolerance (errors add, the map is contractive enough here), the
    same drift / CKA / RSA to float32 accuracy, and the same verdict for every claim except Thm1_gap, which is
    tight at t = 1 by construction (D_1 = eta_0 ||term (A)||) and so sees the update's float32 rounding."""
    r64 = run_sigma_descent(small(), None, quiet=True)
    r32 = run_sigma_descent(small(dtype="float32"), None, quiet=True)
    assert r32.sigma_cl.dtype == torch.float32 and r32.config["dtype"] == "float32"
    tol = 20 * 16 * EPS32 * (1 + 2 * 2.0 / 0.5)
    assert float((r32.sigma_cl.double() - r64.sigma_cl).abs().max()) <= tol
    assert float((r32.sigma_ns.double() - r64.sigma_ns).abs().max()) <= tol
    assert r32.drift == pytest.approx(r64.drift, rel=1e-4)
    assert r32.drift_full == pytest.approx(r32.drift, rel=1e-9)  # drift bookkeeping in float64
    assert abs(r32.cka - r64.cka) < 1e-6 and abs(r32.rsa - r64.rsa) < 1e-6
    for cid, o in r64.checks.items():
        if cid.startswith("_") or cid == "Thm1_gap":
            continue
        assert r32.checks[cid]["holds"] == o["holds"], cid
        assert r32.checks[cid]["violations"] == o["violations"], cid


def test_device_and_dtype_handling_on_cpu() -> None:
    a = run_sigma_descent(small(steps=3, device="cpu"), None, quiet=True)
    b = run_sigma_descent(small(steps=3), None, quiet=True)
    assert torch.equal(a.sigma_cl, b.sigma_cl) and a.sigma_cl.device.type == "cpu"
    with pytest.raises(ValueError, match="dtype must be one of float64, float32"):
        validate_config(small(dtype="float16"))
    for bad in ("tpu", "cuda:x", 3):
        with pytest.raises(ValueError, match="device must be cpu, cuda or cuda:K"):
            validate_config(small(device=bad))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"needs CUDA, but torch.cuda.is_available\(\) is False"):
            validate_config(small(device="cuda"))
    # memory: refused in one line before allocating; float32 halves the need
    with pytest.raises(ValueError, match=r"M = N V = 2000000 items.*float64 in RAM.*choose smaller"):
        check_run_memory(2_000_000, 512, torch.float64, torch.device("cpu"))
    check_run_memory(2000, 512, torch.float32, torch.device("cpu"))


def test_tiled_gram_equals_one_product() -> None:
    """Sigma_0 by mirrored tiles (GPU / float32 / large M) equals the one-product Gram: exactly symmetric, unit
    diagonal, entries within float64 rounding of X X^T, and its float32 version is that matrix rounded once."""
    X = torch.randn(37, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    one = _gram(X)
    tiled = _gram(X, block_rows=8)
    assert torch.equal(tiled, tiled.T) and torch.equal(tiled.diagonal(), torch.ones(37, dtype=torch.float64))
    assert float((tiled - one).abs().max()) < 4e-16
    f32 = _gram(X, torch.float32, block_rows=8)
    assert f32.dtype == torch.float32 and torch.equal(f32, tiled.to(torch.float32))


def test_blockwise_nxn_helpers_match_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval-point helpers (several row blocks) against the dense float64 formulas."""
    monkeypatch.setattr(cert, "BLOCK_ELEMS", 50)  # 2 rows per block at M = 25
    g = torch.Generator().manual_seed(3)
    S = torch.randn(25, 25, generator=g, dtype=torch.float64) * 0.7
    T = torch.randn(25, 25, generator=g, dtype=torch.float64) * 0.7
    D = S - T
    H = torch.eye(25, dtype=torch.float64) - 1.0 / 25
    assert cert.centred_fro(S, T) == pytest.approx(float(torch.linalg.matrix_norm(H @ D @ H)), rel=1e-13)
    iu = torch.triu_indices(25, 25, 1)
    assert cert.upper_std(S, T) == pytest.approx(float(D[iu[0], iu[1]].std(unbiased=False)), rel=1e-13)
    assert cert.fro(S, T) == pytest.approx(float(torch.linalg.matrix_norm(D)), rel=1e-14)
    mx, frac = cert.box_stats(S)
    assert mx == float(S.abs().max()) and frac == pytest.approx(float((S.abs() > 1).double().mean()), rel=1e-15)
    assert cert.centred_fro(S.to(torch.float32)) == pytest.approx(
        float(torch.linalg.matrix_norm(H @ S.to(torch.float32).double() @ H)), rel=1e-12)
    assert not math.isnan(cert.upper_std(S))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs it)")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_run_matches_cpu(dtype: str) -> None:
    """The same run on the GPU: same batches (CPU generators), Sigma equal to the CPU run's to rounding (float64:
    different reduction orders, 1e-12; float32: the float32 tolerance of the short-run test), identical verdicts."""
    cpu = run_sigma_descent(small(dtype=dtype), None, quiet=True)
    gpu = run_sigma_descent(small(dtype=dtype, device="cuda"), None, quiet=True)
    assert gpu.sigma_cl.device.type == "cuda"
    tol = 1e-12 if dtype == "float64" else 20 * 16 * EPS32 * (1 + 2 * 2.0 / 0.5)
    assert float((gpu.sigma_cl.cpu().double() - cpu.sigma_cl.double()).abs().max()) <= tol
    assert float((gpu.sigma_ns.cpu().double() - cpu.sigma_ns.double()).abs().max()) <= tol
    for cid, o in cpu.checks.items():
        if not cid.startswith("_") and cid != "Thm1_gap":
            assert gpu.checks[cid]["holds"] == o["holds"], cid
