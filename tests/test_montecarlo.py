"""Tests for simulate/montecarlo.py (Lemma 5 / Cor. 3 batch-composition event)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from simulate.montecarlo import (
    bad_count_table,
    clopper_pearson,
    lemma5_exact,
    lemma5_monte_carlo,
    lemma5_per_anchor_exact,
    lemma5_step_exact,
    lemma5_worst_eps,
    main,
)
from theory.constants import eps_b_delta


def _brute_step(C: int, B: int, eps: float, slot: str) -> float:
    """P[some anchor of one batch is bad] by enumerating all C^B label sequences (with replacement)."""
    thr = 1 - 1 / C - eps
    bad = 0
    for labels in itertools.product(range(C), repeat=B):
        counts = np.bincount(labels, minlength=C)
        for y in labels:
            neg = B - counts[y]
            stat = neg / B if slot == "included" else neg / (B - 1)
            if stat < thr:
                bad += 1
                break
    return bad / C**B


def _brute_step_noreplace(C: int, B: int, N: int, eps: float) -> float:
    """Same, without replacement from N = C n items (item k has class k // n), all B-subsets."""
    n = N // C
    thr = 1 - 1 / C - eps
    bad = tot = 0
    for sub in itertools.combinations(range(N), B):
        labels = [k // n for k in sub]
        counts = np.bincount(labels, minlength=C)
        tot += 1
        bad += any((B - counts[y]) / B < thr for y in labels)
    return bad / tot


@pytest.mark.parametrize("C,B,eps,slot", [(2, 4, 0.1, "included"), (3, 5, 0.2, "included"), (3, 5, 0.2, "excluded"),
                                          (4, 6, 0.05, "included"), (5, 3, 0.3, "excluded")])  # fmt: skip
def test_step_exact_matches_enumeration(C, B, eps, slot):
    assert lemma5_step_exact(C, B, eps, slot) == pytest.approx(_brute_step(C, B, eps, slot), abs=1e-12)


def test_step_exact_without_replacement_matches_enumeration():
    for C, B, N, eps in [(2, 4, 8, 0.1), (3, 4, 9, 0.15), (4, 5, 12, 0.3)]:
        got = lemma5_step_exact(C, B, eps, "included", replacement=False, N=N)
        assert got == pytest.approx(_brute_step_noreplace(C, B, N, eps), abs=1e-12)


def test_per_anchor_exact_is_binomial_cdf():
    # included: negatives ~ Bin(B-1, 1-1/C); bad iff negatives < B (1 - 1/C - eps)
    C, B, eps = 5, 20, 0.15
    p = 1 - 1 / C
    thr = B * (p - eps)
    expected = stats.binom.cdf(math.ceil(thr) - 1, B - 1, p)
    assert lemma5_per_anchor_exact(C, B, eps) == pytest.approx(expected, rel=1e-12)
    # excluded: mean over B-1 other draws
    thr_ex = (B - 1) * (p - eps)
    expected_ex = stats.binom.cdf(math.ceil(thr_ex) - 1, B - 1, p)
    assert lemma5_per_anchor_exact(C, B, eps, "excluded") == pytest.approx(expected_ex, rel=1e-12)


def test_tiny_probability_has_no_cancellation():
    # all B draws in one class: exactly C * C^-B = C^(1-B); bad iff n_c = B when eps is just below 1/B ... 1-1/C
    C, B = 3, 12
    eps = (1 - 1 / C) - 0.5 / B  # only (B - n)/B < 0.5/B, i.e. n = B, is bad
    assert lemma5_step_exact(C, B, eps) == pytest.approx(C ** (1 - B), rel=1e-9)


@pytest.mark.parametrize("replacement", [True, False])
def test_monte_carlo_within_ci_of_exact(replacement):
    rng = np.random.default_rng(1)
    kw = dict(C=4, B=8, T=3, eps=0.2, n_trials=6000, rng=rng, replacement=replacement, N=None if replacement else 16)
    r = lemma5_monte_carlo(**kw)
    assert r["ci_low"] <= r["p_exists_exact"] <= r["ci_high"]
    assert r["step_ci_low"] <= r["p_step_exact"] <= r["step_ci_high"]
    # anchor frequency: unbiased estimate of the exact per-anchor probability
    assert abs(r["p_anchor_hat"] - r["p_anchor_exact"]) < 0.02
    assert r["p_exists_exact"] == pytest.approx(1 - (1 - r["p_step_exact"]) ** 3, rel=1e-12)


def test_known_answer_certain_event_beats_the_bound():
    # B=2, C=20, eps=0.43 < 1/B - 1/C: at most 1 negative < 2 (1 - 1/20 - 0.43) = 1.04, so every anchor is bad
    r = lemma5_monte_carlo(C=20, B=2, T=1, eps=0.43, n_trials=200, rng=np.random.default_rng(0))
    assert r["p_exists_exact"] == 1.0 and r["p_hat"] == 1.0
    assert r["bound_paper"] == pytest.approx(2 * math.exp(-4 * 0.43**2))
    assert r["violated"] and not r["holds"]
    # the lemma's i.i.d. Bernoulli(1-1/C) model would give P[Bin(2, .95) <= 1] = 1 - .95^2
    assert r["p_anchor_paper_model"] == pytest.approx(1 - 0.95**2)


def test_known_answer_cor3_counterexample_b2():
    # B=2, C=10, T=1, delta = bound at eps just below 0.9: P[event fails] = P[both draws same class] = 1/10
    rows = lemma5_worst_eps(10, 2, 1)
    worst = max(rows, key=lambda r: r["ratio_exact"])
    assert worst["p_exists_exact"] == pytest.approx(0.1, rel=1e-9)
    assert worst["bound_paper"] == pytest.approx(2 * math.exp(-4 * 0.9**2), rel=1e-6)
    assert worst["ratio_exact"] > 1.2


def test_delta_gives_eps_b_delta_and_bound_delta():
    r = lemma5_exact(10, 64, 100, delta=0.05)
    assert r["eps"] == pytest.approx(eps_b_delta(64, 100, 0.05))
    assert r["bound_paper"] == pytest.approx(0.05)
    assert r["holds"]


def test_bad_table_and_ci():
    assert bad_count_table(2, 4, 0.1).tolist() == [False, False, False, True, True]  # (4-n)/4 < .4 -> n >= 3
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))


@pytest.mark.parametrize(
    "kw",
    [
        dict(C=1, B=4, T=1, eps=0.1),
        dict(C=2, B=4, T=1),
        dict(C=2, B=4, T=1, eps=0.1, delta=0.1),
        dict(C=2, B=4, T=1, eps=0.1, anchor_slot="both"),
        dict(C=2, B=1, T=1, eps=0.1, anchor_slot="excluded"),
        dict(C=2, B=4, T=1, eps=0.1, replacement=False),
        dict(C=3, B=4, T=1, eps=0.1, replacement=False, N=10),
    ],
)
def test_bad_input_raises(kw):
    with pytest.raises(ValueError):
        lemma5_monte_carlo(n_trials=10, rng=np.random.default_rng(0), **kw)


def test_cli_runs(capsys):
    assert main(["--classes", "10", "--batch-size", "2,8", "--steps", "1", "--eps", "0.3,0.899", "--trials", "50"]) == 0
    out = capsys.readouterr().out
    assert "P_exact" in out and len(out.strip().splitlines()) == 5
