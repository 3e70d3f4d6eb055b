"""Tests for experiments/optim.py: LARS against hand-computed steps and a float64 numpy loop, schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.optim import (
    LARS,
    batch_scaled_lr,
    build_optimizer,
    set_lr,
    sgd,
    simclr_lr,
    warmup_cosine,
    warmup_cosine_schedule,
)


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = torch.as_tensor(g, dtype=p.dtype).reshape(p.shape).clone()
    opt.step()


def test_lars_hand_computed_step():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))   # bias: excluded
    opt = LARS([w, b], lr=1.0, momentum=0.9, weight_decay=0.0, trust_coef=1e-3)
    # ||g|| = 1 -> trust ratio 1e-3 * 5 / 1 = 0.005; v = 0.005 g; w <- w - v
    _step(opt, [w, b], [[0.6, 0.8], [0.5, 0.5]])
    assert torch.allclose(w, torch.tensor([[2.997, 3.996]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(b, torch.tensor([0.5, -1.5], dtype=torch.float64), atol=1e-12)  # plain lr * g
    set_lr(opt, 0.1)
    _step(opt, [w, b], [[0.0, 0.0], [0.5, 0.5]])
    # bias: v = 0.9 * 0.5 + 0.1 * 0.5 = 0.5; w: g = 0 -> ratio 1, v = 0.9 * [0.003, 0.004]
    assert torch.allclose(b, torch.tensor([0.0, -2.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(w, torch.tensor([[2.997 - 0.0027, 3.996 - 0.0036]], dtype=torch.float64), atol=1e-12)


def test_lars_weight_decay_hand_computed():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    opt = LARS([w], lr=2.0, momentum=0.9, weight_decay=0.5, trust_coef=0.01)
    _step(opt, [w], [[1.0, 0.0]])
    g = np.array([1.0 + 1.5, 0.0 + 2.0])  # g + wd w
    ratio = 0.01 * 5.0 / math.sqrt(2.5 ** 2 + 2.0 ** 2)
    assert np.allclose(w.detach().numpy()[0], np.array([3.0, 4.0]) - 2.0 * ratio * g, atol=1e-12)


def _lars_reference(ws, grads, lrs, m, wd, eta, nesterov):
    """Float64 numpy loop of SimCLR's LARS; ws[i] 1-D arrays are treated as excluded (bias / BN)."""
    ws = [w.copy() for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for t, lr in enumerate(lrs):
        for i, w in enumerate(ws):
            g = grads[t][i].copy()
            if w.ndim > 1:
                g = g + wd * w
                wn, gn = np.sqrt((w ** 2).sum()), np.sqrt((g ** 2).sum())
                r = eta * wn / gn if (wn > 0 and gn > 0) else 1.0
            else:
                r = 1.0
            vs[i] = m * vs[i] + lr * r * g
            ws[i] = w - (m * vs[i] + lr * r * g if nesterov else vs[i])
    return ws


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_matches_numpy_loop(nesterov):
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 2, 2), (5,), (3, 4), (3,)]
    w0 = [rng.standard_normal(s) for s in shapes]
    w0[2][:] = 0.0  # zero weight -> trust ratio 1
    lrs = [0.0, 0.5, 1.0, 0.3]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in lrs]
    params = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    opt = LARS(params, lr=0.0, momentum=0.9, weight_decay=1e-2, trust_coef=1e-3, nesterov=nesterov)
    for t, lr in enumerate(lrs):
        set_lr(opt, lr)
        _step(opt, params, grads[t])
    ref = _lars_reference(w0, grads, lrs, 0.9, 1e-2, 1e-3, nesterov)
    for p, r in zip(params, ref):
        assert np.allclose(p.detach().numpy(), r, atol=1e-12)


def test_lars_without_exclusions_adapts_biases_and_sgd_equivalence():
    b = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([b], lr=1.0, momentum=0.9, weight_decay=0.0, trust_coef=1e-3, exclude_bias_and_bn=False)
    _step(opt, [b], [[0.6, 0.8]])
    assert torch.allclose(b, torch.tensor([2.997, 3.996], dtype=torch.float64), atol=1e-12)
    # only excluded (1-D) parameters and a constant lr: LARS == torch SGD with momentum
    rng = np.random.default_rng(1)
    p1 = torch.nn.Parameter(torch.tensor(rng.standard_normal(6)))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1 = LARS([p1], lr=0.2, momentum=0.9, weight_decay=0.1)
    o2 = torch.optim.SGD([p2], lr=0.2, momentum=0.9)
    for _ in range(3):
        g = rng.standard_normal(6)
        _step(o1, [p1], [g])
        _step(o2, [p2], [g])
    assert torch.allclose(p1, p2, atol=1e-12)


def test_sgd_factory_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    wd = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd == {(4, 3): 5e-4, (4,): 0.0}
    assert isinstance(build_optimizer("lars", model, 0.1), LARS)
    assert isinstance(build_optimizer("sgd", model, 0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'lars'"):
        build_optimizer("adam", model, 0.1)
    with pytest.raises(ValueError, match="momentum must be in"):
        LARS(model.parameters(), lr=0.1, momentum=1.0)


def test_warmup_cosine_known_points():
    T, W = 110, 10
    assert warmup_cosine(0, T, W, 1.0) == 0.0
    assert warmup_cosine(5, T, W, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(10, T, W, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(35, T, W, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(60, T, W, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(109, T, W, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert warmup_cosine(110, T, W, 1.0) == 0.0
    assert warmup_cosine(60, T, W, 1.0, final_lr=0.1) == pytest.approx(0.55)
    assert warmup_cosine(0, 10, 0, 2.0) == pytest.approx(2.0)
    sched = warmup_cosine_schedule(T, W, 1.2)
    assert len(sched) == T and max(sched) == pytest.approx(1.2) and sched[0] == 0.0
    with pytest.raises(ValueError, match="warmup_steps must be an integer in"):
        warmup_cosine(0, 10, 11, 1.0)
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        warmup_cosine(-1, 10, 1, 1.0)


def test_lr_scaling_rules():
    assert simclr_lr(1024) == pytest.approx(1.2)
    assert simclr_lr(256) == pytest.approx(0.3) and simclr_lr(511) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="batch_size must be >= 256"):
        simclr_lr(128)
    assert batch_scaled_lr(512, "linear") == pytest.approx(0.6)
    assert batch_scaled_lr(256, "sqrt") == pytest.approx(0.3 * 16 / 256)
    assert batch_scaled_lr(256, "fourth_root") == pytest.approx(0.3 * 4 / 256)
    assert batch_scaled_lr(1024, "constant") == 0.3
    assert batch_scaled_lr(1024, "paper") == pytest.approx(1.2)
    with pytest.raises(ValueError, match="rule must be one of"):
        batch_scaled_lr(256, "cubic")
