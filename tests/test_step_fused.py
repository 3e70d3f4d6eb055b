"""The fused Sigma-descent step (simulate/step.py compute_step / apply_step on one (2, R, K) buffer, issue 8's
throughput work) against the reference path: theory.losses.contrastive_softmax_prepared on the layout's bprep_cl /
bprep_ns (step_from_blocks) and the per-run update (_updated_block). Equality is exact (torch.equal): the fused
path performs the same elementwise operations and the same row softmaxes, so a run's outputs stay bit-identical."""

from __future__ import annotations

import math

import pytest
import torch

from simulate.batches import batch_items, draw_batch
from simulate.layout import build_layout
from simulate.step import StepTensors, apply_step, compute_step, step_and_apply, step_from_blocks
from theory.losses import contrastive_softmax_prepared


def _reference_step(S_cl, S_ns, lay, tau, eta, clip):
    """step_from_blocks (theory.losses on bprep_cl / bprep_ns) and the per-run update (no fused buffers)."""
    st = step_from_blocks(lay, lay.gather_block(S_cl), lay.gather_block(S_ns), tau)
    assert st.blk2 is None
    return st, apply_step(S_cl, S_ns, st, eta, clip)


def _sigmas(M: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(M, 6, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    S = (X @ X.T).to(dtype)
    return S, (S + 0.05 * torch.randn(M, M, generator=g, dtype=torch.float64).to(dtype)).clamp(-1, 1)


CASES = [  # (sigma, diag, V, replacement, dtype, classes)
    ("ordered", "fixed", 2, True, torch.float64, 4),
    ("ordered", "free", 2, False, torch.float64, 4),
    ("ordered", "fixed", 1, True, torch.float64, 3),
    ("ordered", "fixed", 3, True, torch.float32, 4),
    ("ordered", "fixed", 2, True, torch.float64, 1),  # one class: every NSCL row invalid (zero softmax rows)
    ("symmetric", "fixed", 2, True, torch.float64, 4),
    ("symmetric", "free", 2, False, torch.float32, 4),
]


@pytest.mark.parametrize("sigma,diag,V,replacement,dtype,classes", CASES)
def test_fused_step_equals_reference_path_exactly(sigma, diag, V, replacement, dtype, classes) -> None:
    N, B, tau, eta = 30, 24, 0.5, 2.0
    M = N * V
    labels = torch.arange(M) // V % classes
    A_cl, A_ns = _sigmas(M, dtype, 3)
    B_cl, B_ns = A_cl.clone(), A_ns.clone()
    bg, ag = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    for t in range(4):
        rows, cols = batch_items(draw_batch(N, B, V, replacement, bg, ag), V)
        lay = build_layout(rows, cols, labels[rows], labels[cols], M, sigma == "symmetric", diag, dtype)
        st = compute_step(A_cl, A_ns, lay, tau)
        assert isinstance(st, StepTensors) and st.blk2 is not None
        # the fused softmax equals theory.losses on the layout's prepared masks, p and x
        for blk, sm, prep in ((st.blk_cl, st.sm_cl, lay.bprep_cl), (st.blk_ns, st.sm_ns, lay.bprep_ns)):
            ref = contrastive_softmax_prepared(lay.logit_rows(blk), prep, tau)
            assert torch.equal(sm.p, ref.p) and torch.equal(sm.x, ref.x)
        d_fused, new_cl, new_ns = apply_step(A_cl, A_ns, st, eta, clip=True)
        ref_st, (d_ref, ref_cl, ref_ns) = _reference_step(B_cl, B_ns, lay, tau, eta, True)
        assert torch.equal(st.p_cl, ref_st.p_cl) and torch.equal(st.q_ns, ref_st.q_ns)
        assert torch.equal(new_cl, ref_cl) and torch.equal(new_ns, ref_ns)
        assert d_fused == d_ref and math.isfinite(d_fused)
        assert torch.equal(A_cl, B_cl) and torch.equal(A_ns, B_ns)
        assert not torch.equal(new_cl, st.blk_cl)  # the step moved Sigma
    if classes == 1:
        assert int(lay.ns_invalid_rows.numel()) == lay.R and float(st.q_ns.abs().sum()) == 0.0


def test_fused_layout_pieces_match_prepared_masks() -> None:
    """own_bias / same_label / bpos_* / ns_* are the pieces of bprep_cl / bprep_ns (a duplicate-heavy batch)."""
    N, B, V, M = 10, 16, 2, 20
    labels = torch.arange(M) // V % 3
    rows, cols = batch_items(draw_batch(N, B, V, True, torch.Generator().manual_seed(1),
                                        torch.Generator().manual_seed(2)), V)
    lay = build_layout(rows, cols, labels[rows], labels[cols], M, False, "fixed")
    cl, ns = lay.bprep_cl, lay.bprep_ns
    assert torch.equal(cl.den_bias.view(-1)[lay.own_flat], lay.own_bias)
    assert torch.equal(torch.isinf(ns.den_bias), lay.same_label)
    for (r, c, w), prep in ((lay.bpos_cl, cl), (lay.bpos_ns, ns)):
        assert torch.equal(r, prep.pos_rows) and torch.equal(c, prep.pos_cols) and torch.equal(w, prep.pos_w)
    assert torch.equal(lay.ns_valid, ns.valid) and torch.equal(lay.ns_invalid_rows, ns.invalid_rows)
    assert bool((lay.keys_per_col[lay.own_col] > 1).any())  # some anchor row shares its own column (duplicates)


@pytest.mark.parametrize("sigma,diag,V,replacement,dtype,classes", CASES)
@pytest.mark.parametrize("rows_per_chunk", [1, 5, 1000, None])
def test_chunked_step_and_apply_equals_compute_then_apply(sigma, diag, V, replacement, dtype, classes,
                                                          rows_per_chunk) -> None:
    """step_and_apply (the run's step: chunks of block rows gathered, updated and written back one after the other)
    is compute_step + apply_step exactly: Sigma, the drift change, the new blocks and the StepTensors the checks read."""
    N, B, tau, eta = 30, 24, 0.5, 2.0
    M = N * V
    labels = torch.arange(M) // V % classes
    A = _sigmas(M, dtype, 4)
    Bs = tuple(S.clone() for S in A)
    bg, ag = torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)
    for t in range(3):
        rows, cols = batch_items(draw_batch(N, B, V, replacement, bg, ag), V)
        lay = build_layout(rows, cols, labels[rows], labels[cols], M, sigma == "symmetric", diag, dtype)
        st, d, new_cl, new_ns = step_and_apply(*A, lay, tau, eta, t % 2 == 0, rows_per_chunk=rows_per_chunk)
        st2 = compute_step(*Bs, lay, tau)
        d2, new_cl2, new_ns2 = apply_step(*Bs, st2, eta, t % 2 == 0)
        assert d == d2 and torch.equal(new_cl, new_cl2) and torch.equal(new_ns, new_ns2)
        assert torch.equal(A[0], Bs[0]) and torch.equal(A[1], Bs[1])
        for f in ("blk_cl", "blk_ns", "p_cl", "q_ns"):
            assert torch.equal(getattr(st, f), getattr(st2, f)), f
        assert torch.equal(st.sm_cl.x, st2.sm_cl.x) and torch.equal(st.sm_ns.x, st2.sm_ns.x)
        assert torch.equal(st.U_cl, st2.U_cl) and torch.equal(st.U_ns, st2.U_ns)
