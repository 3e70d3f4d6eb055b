"""Tests for theory/constants.py: eps_{B,delta}, Delta_{C,delta}(B; tau) and the argument validators."""

import math

import numpy as np
import pytest

from theory.constants import (
    check_classes,
    check_delta,
    check_eta_schedule,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_tau,
    delta_c_delta,
    eps_b_delta,
)


@pytest.mark.parametrize("B,T,delta", [(1, 1, 0.5), (16, 10, 0.1), (512, 1, 0.01), (1024, 48000, 0.05)])
def test_eps_b_delta_matches_hoeffding_inversion(B, T, delta):
    eps = eps_b_delta(B, T, delta)
    # definition: union bound T B exp(-2 B eps^2) equals delta exactly
    assert T * B * math.exp(-2.0 * B * eps * eps) == pytest.approx(delta, rel=1e-12)


def test_eps_known_value():
    # C=1000, B=512, delta=0.01, T=1 (App. B example): sqrt(log(51200)/1024)
    assert eps_b_delta(512, 1, 0.01) == pytest.approx(0.10290456939025662, rel=1e-14)


@pytest.mark.parametrize("C,B,T,delta,tau", [(10, 64, 1, 0.1, 1.0), (1000, 512, 1, 0.01, 1.0), (100, 1024, 50, 0.05, 0.1)])
def test_delta_c_delta_formula(C, B, T, delta, tau):
    eps = math.sqrt(math.log(T * B / delta) / (2 * B))
    want = 2 * math.exp(2 / tau) * (1 / C + eps) / (1 - 1 / C - eps)
    assert delta_c_delta(C, B, T, delta, tau) == pytest.approx(want, rel=1e-14)


def test_delta_c_delta_is_twice_ratio_bound_eq14():
    # Eq. 14: Z_pos/Z_neg <= e^{2/tau} |D_pos|/|D_neg| <= Delta/2 with |D_pos| = B(1/C+eps), |D_neg| = B(1-1/C-eps)
    C, B, T, delta, tau = 20, 256, 3, 0.1, 0.5
    eps = eps_b_delta(B, T, delta)
    n_pos, n_neg = B * (1 / C + eps), B * (1 - 1 / C - eps)
    z_pos_max, z_neg_min = n_pos * math.exp(1 / tau), n_neg * math.exp(-1 / tau)
    assert z_pos_max / z_neg_min == pytest.approx(delta_c_delta(C, B, T, delta, tau) / 2, rel=1e-13)


def test_delta_monotone_in_C_tau_B():
    base = dict(B=256, T=10, delta=0.1)
    d = [delta_c_delta(C, tau=1.0, **base) for C in (2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(d, d[1:]))
    d = [delta_c_delta(100, tau=t, **base) for t in (0.1, 0.5, 1.0, 5.0)]
    assert all(a > b for a, b in zip(d, d[1:]))
    d = [delta_c_delta(100, B, 10, 0.1, 1.0) for B in (64, 256, 1024, 4096)]
    assert all(a > b for a, b in zip(d, d[1:]))


def test_delta_undefined_raises_one_line():
    # B=2, T=1000, delta=0.01: eps = sqrt(log(2e5)/4) > 1 - 1/C
    with pytest.raises(ValueError) as ei:
        delta_c_delta(10, 2, 1000, 0.01, 1.0)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("eps_b_delta=") and ">= 1 - 1/C=0.9" in msg
    assert "undefined" in msg


@pytest.mark.parametrize(
    "fn,args,fragment",
    [
        (check_tau, (-1.0,), "tau must be > 0, got tau=-1.0"),
        (check_tau, (0.0,), "tau must be > 0"),
        (check_tau, (float("inf"),), "tau must be a finite number"),
        (check_tau, (float("nan"),), "tau must be a finite number"),
        (check_tau, ("1",), "tau must be a finite number"),
        (check_delta, (0.0,), "delta must satisfy 0 < delta < 1, got delta=0.0"),
        (check_delta, (1.0,), "delta must satisfy 0 < delta < 1"),
        (check_classes, (1,), "C (number of classes) must be an integer >= 2, got C=1"),
        (check_classes, (2.0,), "C (number of classes) must be an integer >= 2"),
        (check_classes, (True,), "must be an integer >= 2"),
        (check_positive_int, ("B", 0), "B must be an integer >= 1, got B=0"),
        (check_positive_int, ("B", 3.5), "B must be an integer >= 1, got B=3.5"),
        (check_positive_float, ("G", -2.0), "G must be a finite number > 0, got G=-2.0"),
        (check_nonneg_float, ("Delta", -1e-3), "Delta must be a finite number >= 0"),
        (eps_b_delta, (0, 1, 0.1), "B must be an integer >= 1"),
        (eps_b_delta, (8, 0, 0.1), "T must be an integer >= 1"),
        (delta_c_delta, (10, 8, 1, 0.1, -1.0), "tau must be > 0"),
    ],
)
def test_validators_one_line(fn, args, fragment):
    with pytest.raises(ValueError) as ei:
        fn(*args)
    assert fragment in str(ei.value)
    assert "\n" not in str(ei.value)


def test_validators_accept_and_convert():
    assert check_tau(np.float32(0.5)) == 0.5 and isinstance(check_tau(1), float)
    assert check_delta(0.05) == 0.05
    assert check_classes(np.int64(10)) == 10
    assert check_positive_int("T", np.int32(7)) == 7


def test_check_eta_schedule():
    out = check_eta_schedule([0.1, 0, 2])
    assert out.dtype == np.float64 and out.tolist() == [0.1, 0.0, 2.0]
    assert check_eta_schedule(np.ones(4), T=4).shape == (4,)
    for bad, frag in [
        (0.1, "eta must be a 1-D sequence"),
        ([], "non-empty"),
        ([[0.1, 0.2]], "non-empty 1-D"),
        ([0.1, -0.2], "eta must be >= 0, got eta[1]=-0.2"),
        ([0.1, float("nan")], "eta must be finite, got eta[1]=nan"),
        (["a"], "eta must be a 1-D sequence of finite numbers"),
    ]:
        with pytest.raises(ValueError, match=None) as ei:
            check_eta_schedule(bad)
        assert frag in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(ValueError, match="eta must have length T=3, got len"):
        check_eta_schedule([0.1, 0.2], T=3)
