"""Monte-Carlo and exact checks of the batch-composition event (Lemma 5, Cor. 3).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", App. D.2.

Lemma 5 claims, for a batch of B draws from a class-balanced population with C classes and an anchor i of
the batch, that Y_s = 1{y_{j_s} != y_i}, s = 1..B, are i.i.d. Bernoulli(1 - 1/C), hence by Hoeffding and a
union bound over the T B anchor-step pairs

    P[ exists (t, i): (1/B) sum_{s=1}^B Y_s < 1 - 1/C - eps ]  <=  T B exp(-2 B eps^2).

The anchor is itself one of the B draws, so its own slot always has Y = 0: the number of negatives is
Binomial(B - 1, 1 - 1/C) (with replacement), not Binomial(B, 1 - 1/C). This module measures the event as
the paper writes it, without assuming the i.i.d. model:

  anchor_slot="included": statistic (1/B) sum over all B slots (the anchor's own slot counted, Y = 0),
                          the quantity Cor. 3 uses ("at least B (1 - 1/C - eps) negatives");
  anchor_slot="excluded": statistic (1/(B-1)) sum over the B - 1 other slots (truly i.i.d. with replacement).

If n_c is the number of batch draws of the anchor's class (anchor included), the number of negatives is B - n_c,
so anchor i is *bad* iff  (B - n_c)/B < 1 - 1/C - eps  (included)  or  (B - n_c)/(B - 1) < 1 - 1/C - eps
(excluded). Both are "n_c too large", so the per-step event is "some class present in the batch has too many
draws", which has an exact probability through the conditional representation of the class counts:
with replacement the counts are Multinomial(B; 1/C, ..., 1/C) = i.i.d. Poisson(lambda) conditioned on their
sum being B; without replacement (finite population N = C n) they are multivariate hypergeometric = i.i.d.
Binomial(n, theta) conditioned on the sum. Steps are independent, so P(exists t) = 1 - (1 - p_step)^T.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
from scipy import stats

from runio.cli import OneLineParser, comma_list, fail, parse_with_config
from theory.constants import (
    check_nonneg_int,
    check_classes,
    check_delta,
    check_positive_float,
    check_positive_int,
    eps_b_delta,
)

__all__ = [
    "ANCHOR_SLOTS",
    "bad_count_table",
    "clopper_pearson",
    "lemma5_per_anchor_exact",
    "lemma5_step_exact",
    "lemma5_exact",
    "lemma5_monte_carlo",
    "lemma5_scan",
    "lemma5_worst_eps",
    "main",
]

ANCHOR_SLOTS = ("included", "excluded")


# ----------------------------------------------------------------------------------------------------------
# argument handling


def _check_anchor_slot(anchor_slot: object) -> str:
    if anchor_slot not in ANCHOR_SLOTS:
        raise ValueError(f"anchor_slot must be 'included' or 'excluded', got anchor_slot={anchor_slot!r}")
    return anchor_slot  # type: ignore[return-value]


def _resolve_eps(B: int, T: int, eps: float | None, delta: float | None) -> tuple[float, float | None]:
    """Exactly one of eps / delta; delta gives eps = eps_{B,delta} (Cor. 3)."""
    if (eps is None) == (delta is None):
        raise ValueError(f"give exactly one of eps and delta, got eps={eps!r}, delta={delta!r}")
    if delta is not None:
        delta = check_delta(delta)
        return eps_b_delta(B, T, delta), delta
    return check_positive_float("eps", eps), None


def _check_population(C: int, B: int, replacement: bool, N: int | None) -> int | None:
    if not isinstance(replacement, (bool, np.bool_)):
        raise ValueError(f"replacement must be True or False, got replacement={replacement!r}")
    if replacement:
        return None if N is None else check_positive_int("N", N)
    if N is None:
        raise ValueError("N (finite population size) is required when replacement=False, got N=None")
    N = check_positive_int("N", N)
    if N % C != 0:
        raise ValueError(f"N must be a multiple of C={C} (class-balanced population), got N={N}")
    if N < B:
        raise ValueError(f"N must be >= B={B} to draw without replacement, got N={N}")
    return N


def bad_count_table(C: int, B: int, eps: float, anchor_slot: str = "included") -> np.ndarray:
    """bad[n] = True iff an anchor whose class has n draws in the batch (anchor included) violates Lemma 5.

    included: (B - n)/B < 1 - 1/C - eps;  excluded: (B - n)/(B - 1) < 1 - 1/C - eps.
    bad[0] is False (an absent class has no anchor). The Monte-Carlo and the exact computation use this one
    table, so they evaluate the same floating-point inequality.

    Shape: returns (B + 1,) bool.
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    anchor_slot = _check_anchor_slot(anchor_slot)
    if anchor_slot == "excluded" and B < 2:
        raise ValueError(f"anchor_slot='excluded' needs B >= 2 (no other draw), got B={B}")
    n = np.arange(B + 1, dtype=np.float64)
    neg = B - n
    thresh = 1.0 - 1.0 / C - eps
    stat = neg / B if anchor_slot == "included" else neg / (B - 1)
    bad = stat < thresh
    bad[0] = False
    return bad


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided binomial confidence interval for k successes in n trials."""
    n = check_positive_int("n", n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (0 <= int(k) <= n):
        raise ValueError(f"k must be an integer in [0, n={n}], got k={k!r}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must satisfy 0 < confidence < 1, got confidence={confidence!r}")
    a = 1.0 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


# ----------------------------------------------------------------------------------------------------------
# exact probabilities


def lemma5_per_anchor_exact(
    C: int, B: int, eps: float, anchor_slot: str = "included", replacement: bool = True, N: int | None = None
) -> float:
    """Exact P[anchor i is bad] for one (t, i).

    The anchor's class count is n_c = 1 + X, X = same-class draws among the other B - 1 slots:
    X ~ Binomial(B - 1, 1/C) with replacement, X ~ Hypergeom(N - 1, N/C - 1, B - 1) without.
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    N = _check_population(C, B, replacement, N)
    bad = bad_count_table(C, B, eps, anchor_slot)
    x = np.arange(B)  # X = 0..B-1
    if replacement:
        pmf = stats.binom.pmf(x, B - 1, 1.0 / C)
    else:
        pmf = stats.hypergeom.pmf(x, N - 1, N // C - 1, B - 1)
    return float(min(1.0, np.sum(pmf[bad[1:]])))


def _trunc_mul(a: np.ndarray, b: np.ndarray, degree: int) -> np.ndarray:
    return np.convolve(a, b)[: degree + 1]


def _power_and_tail_sum(full: np.ndarray, low: np.ndarray, power: int, degree: int):
    """(low^n, S_n) truncated at ``degree``, S_n = sum_{m=0}^{n-1} full^m low^(n-1-m) (nonnegative terms).

    full^n - low^n = S_n (full - low) telescopes, so P[some count in the tail] is computed as a sum of
    nonnegative terms (no cancellation; accurate for tiny probabilities). Doubling: S_2n = S_n low^n +
    full^n S_n, S_(n+1) = full^n + low S_n.
    """
    one = np.zeros(degree + 1)
    one[0] = 1.0
    if power == 1:
        return full[: degree + 1].copy(), low[: degree + 1].copy(), one
    if power % 2 == 0:
        fh, lh, sh = _power_and_tail_sum(full, low, power // 2, degree)
        s = _trunc_mul(sh, lh, degree) + _trunc_mul(fh, sh, degree)
        return _trunc_mul(fh, fh, degree), _trunc_mul(lh, lh, degree), s
    fp, lp, sp = _power_and_tail_sum(full, low, power - 1, degree)
    s = fp + _trunc_mul(low, sp, degree)
    return _trunc_mul(fp, full, degree), _trunc_mul(lp, low, degree), s


def lemma5_step_exact(
    C: int, B: int, eps: float, anchor_slot: str = "included", replacement: bool = True, N: int | None = None
) -> float:
    """Exact P[some anchor of ONE batch is bad] = P[max_c n_c > k], k = largest allowed class count.

    With replacement the class counts are i.i.d. X_c ~ Poisson(B/C) conditioned on sum X_c = B; without
    replacement i.i.d. X_c ~ Binomial(N/C, B/N) conditioned likewise. With f the pmf of X_c and l = f
    truncated to {0..k}:  P[max > k] = [u^B](f^C - l^C) / P[sum = B], and f^C - l^C = (f - l) sum_m f^m
    l^(C-1-m) is evaluated as a sum of nonnegative terms (accurate for tiny probabilities).
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    N = _check_population(C, B, replacement, N)
    bad = bad_count_table(C, B, eps, anchor_slot)
    if not bad.any():
        return 0.0
    if bad[1]:
        return 1.0  # every anchor is bad whatever the batch
    k = int(np.argmax(bad)) - 1  # bad is monotone in n: n <= k allowed
    if not np.all(bad[k + 1 :]) or np.any(bad[1 : k + 1]):
        raise AssertionError("bad_count_table is not monotone")  # pragma: no cover
    j = np.arange(B + 1)
    if replacement:
        full = stats.poisson.pmf(j, B / C)
        total = stats.poisson.pmf(B, B)
    else:
        n = N // C
        full = stats.binom.pmf(j, n, B / N)
        total = stats.binom.pmf(B, N, B / N)
    low = np.where(j <= k, full, 0.0)
    _, _, s = _power_and_tail_sum(full, low, C, B)
    p_bad = _trunc_mul(s, full - low, B)[B] / total
    return float(min(1.0, max(0.0, p_bad)))


def lemma5_exact(
    C: int,
    B: int,
    T: int,
    eps: float | None = None,
    delta: float | None = None,
    anchor_slot: str = "included",
    replacement: bool = True,
    N: int | None = None,
) -> dict:
    """Exact probabilities of the Lemma 5 bad event and the bounds it is compared with (no sampling).

    Returns a dict: eps, delta, p_exists_exact (P[exists (t,i) bad], T independent steps), p_step_exact,
    p_anchor_exact (one (t,i)), p_anchor_paper_model (P[Bin(B, 1-1/C) < B(1-1/C-eps)], the i.i.d. model the
    lemma states), hoeffding_anchor = exp(-2 B eps^2), bound_paper = T B exp(-2 B eps^2) (Lemma 5 as stated),
    bound_correct = T B x Hoeffding for the actual distribution (included: Bin(B-1, p) below B(p - eps) ->
    exp(-2 (B eps - p)^2 / (B-1)) if B eps > p else 1; excluded: exp(-2 (B-1) eps^2)), ratio_exact =
    p_exists_exact / bound_paper, holds = p_exists_exact <= bound_paper, anchor_holds = p_anchor_exact <=
    hoeffding_anchor.
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    T = check_positive_int("T", T)
    anchor_slot = _check_anchor_slot(anchor_slot)
    eps, delta = _resolve_eps(B, T, eps, delta)
    N = _check_population(C, B, replacement, N)
    p = 1.0 - 1.0 / C
    p_step = lemma5_step_exact(C, B, eps, anchor_slot, replacement, N)
    p_exists = float(-np.expm1(T * np.log1p(-p_step))) if p_step < 1.0 else 1.0
    p_anchor = lemma5_per_anchor_exact(C, B, eps, anchor_slot, replacement, N)
    # the lemma's model: B i.i.d. Bernoulli(p); P[sum < B (p - eps)]
    thr = B * (p - eps)
    k_model = math.ceil(thr) - 1  # largest integer strictly below thr
    p_model = float(stats.binom.cdf(k_model, B, p)) if k_model >= 0 else 0.0
    hoeff = math.exp(-2.0 * B * eps * eps)
    if anchor_slot == "included":
        if B == 1:
            hoeff_correct = 1.0
        else:
            gap = B * eps - p
            hoeff_correct = math.exp(-2.0 * gap * gap / (B - 1)) if gap > 0 else 1.0
    else:
        hoeff_correct = math.exp(-2.0 * (B - 1) * eps * eps)
    bound = T * B * hoeff
    return {
        "C": C,
        "B": B,
        "T": T,
        "eps": eps,
        "delta": delta,
        "anchor_slot": anchor_slot,
        "replacement": bool(replacement),
        "N": N,
        "p_exists_exact": p_exists,
        "p_step_exact": p_step,
        "p_anchor_exact": p_anchor,
        "p_anchor_paper_model": p_model,
        "hoeffding_anchor": hoeff,
        "hoeffding_anchor_correct": hoeff_correct,
        "bound_paper": bound,
        "bound_correct": T * B * hoeff_correct,
        "ratio_exact": p_exists / bound if bound > 0 else math.inf,
        "holds": p_exists <= bound,
        "anchor_holds": p_anchor <= hoeff,
    }


# ----------------------------------------------------------------------------------------------------------
# Monte Carlo


def _sample_labels(
    rng: np.random.Generator, m: int, B: int, C: int, replacement: bool, N: int | None
) -> np.ndarray:
    """Class labels of m batches of B draws. Shape: (m, B) int64."""
    if replacement:
        return rng.integers(0, C, size=(m, B))
    # without replacement from N = C n items, item k has class k // n
    keys = rng.random((m, N))
    idx = np.argpartition(keys, B - 1, axis=1)[:, :B] if B < N else np.argsort(keys, axis=1)
    return idx // (N // C)


def lemma5_monte_carlo(
    C: int,
    B: int,
    T: int,
    eps: float | None = None,
    delta: float | None = None,
    n_trials: int = 10_000,
    rng: np.random.Generator | None = None,
    anchor_slot: str = "included",
    replacement: bool = True,
    N: int | None = None,
    confidence: float = 0.95,
    max_batches_per_chunk: int = 200_000,
) -> dict:
    """Monte-Carlo estimate of the Lemma 5 bad event, with exact values and bounds for comparison.

    One trial = T independent batches of B class labels (i.i.d. uniform over C classes with replacement;
    uniform B-subsets of a class-balanced population of N items without replacement). Anchor i = every slot
    of a batch (B anchors per step, duplicates included); it is bad per ``bad_count_table``.

    Returns the dict of ``lemma5_exact`` plus: n_trials, p_hat (fraction of trials with a bad (t,i)), ci_low,
    ci_high (Clopper-Pearson at ``confidence``), ratio = p_hat / bound_paper, violated = ci_low >
    bound_paper (significant Monte-Carlo evidence the stated bound fails), p_anchor_hat (fraction of all
    (trial, t, i) that are bad), anchor_ci_low / anchor_ci_high (CI treating the n_trials T B anchor events
    as independent, which they are not within a batch: indicative only), p_step_hat (fraction of batches
    with a bad anchor) with step_ci_low / step_ci_high (batches are independent: exact CI).
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    T = check_positive_int("T", T)
    n_trials = check_positive_int("n_trials", n_trials)
    anchor_slot = _check_anchor_slot(anchor_slot)
    if rng is None or not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got rng={rng!r}")
    eps, delta = _resolve_eps(B, T, eps, delta)
    N = _check_population(C, B, replacement, N)
    bad = bad_count_table(C, B, eps, anchor_slot)
    res = lemma5_exact(C, B, T, eps=eps, anchor_slot=anchor_slot, replacement=replacement, N=N)
    res["delta"] = delta

    per_batch_cost = B + C + (0 if replacement else N)
    trials_per_chunk = max(1, min(n_trials, max_batches_per_chunk * 8 // max(1, per_batch_cost * T)))
    trials_bad = 0
    anchors_bad = 0
    steps_bad = 0
    done = 0
    while done < n_trials:
        m = min(trials_per_chunk, n_trials - done)
        labels = _sample_labels(rng, m * T, B, C, replacement, N)  # (m T, B)
        rows = np.repeat(np.arange(m * T), B)
        counts = np.bincount(rows * C + labels.ravel(), minlength=m * T * C).reshape(m * T, C)
        n_anchor = np.take_along_axis(counts, labels, axis=1)  # (m T, B): class count of each slot's class
        bad_slot = bad[n_anchor]
        anchors_bad += int(bad_slot.sum())
        bad_step = bad_slot.any(axis=1)
        steps_bad += int(bad_step.sum())
        trials_bad += int(bad_step.reshape(m, T).any(axis=1).sum())
        done += m

    lo, hi = clopper_pearson(trials_bad, n_trials, confidence)
    n_anchor_events = n_trials * T * B
    alo, ahi = clopper_pearson(anchors_bad, n_anchor_events, confidence)
    slo, shi = clopper_pearson(steps_bad, n_trials * T, confidence)
    p_hat = trials_bad / n_trials
    res.update(
        {
            "n_trials": n_trials,
            "confidence": confidence,
            "p_hat": p_hat,
            "ci_low": lo,
            "ci_high": hi,
            "ratio": p_hat / res["bound_paper"] if res["bound_paper"] > 0 else math.inf,
            "violated": lo > res["bound_paper"],
            "p_step_hat": steps_bad / (n_trials * T),
            "step_ci_low": slo,
            "step_ci_high": shi,
            "p_anchor_hat": anchors_bad / n_anchor_events,
            "anchor_ci_low": alo,
            "anchor_ci_high": ahi,
        }
    )
    return res


def lemma5_scan(
    C_values: Sequence[int],
    B_values: Sequence[int],
    T_values: Sequence[int],
    eps_values: Sequence[float] | None = None,
    delta_values: Sequence[float] | None = None,
    anchor_slot: str = "included",
    replacement: bool = True,
    N: int | None = None,
) -> list[dict]:
    """Exact Lemma 5 / Cor. 3 check over a grid (one ``lemma5_exact`` dict per point).

    Points where eps_{B,delta} >= 1 - 1/C (Delta undefined) are still evaluated: the lemma itself is stated
    for every eps > 0.
    """
    if (eps_values is None) == (delta_values is None):
        raise ValueError("give exactly one of eps_values and delta_values")
    rows = []
    for C in C_values:
        for B in B_values:
            for T in T_values:
                for v in eps_values if eps_values is not None else delta_values:  # type: ignore[union-attr]
                    kw = {"eps": v} if eps_values is not None else {"delta": v}
                    rows.append(lemma5_exact(C, B, T, anchor_slot=anchor_slot, replacement=replacement, N=N, **kw))
    return rows


def lemma5_worst_eps(
    C: int,
    B: int,
    T: int,
    anchor_slot: str = "included",
    replacement: bool = True,
    N: int | None = None,
    rel_gap: float = 1e-9,
) -> list[dict]:
    """Exact Lemma 5 check at the adversarial eps of every step of the (piecewise-constant) probability.

    As eps grows the largest allowed class count k drops by one at the breakpoints
    eps_k = (k + 1)/B - 1/C (included) or 1 - 1/C - (B - k - 1)/(B - 1) (excluded); the probability is
    constant just below a breakpoint while the bound T B exp(-2 B eps^2) is smallest there, so
    eps = eps_k (1 - rel_gap) maximises p / bound on each piece. Returns one ``lemma5_exact`` dict per
    breakpoint with 0 < eps_k (sorted by eps).
    """
    C = check_classes(C)
    B = check_positive_int("B", B)
    anchor_slot = _check_anchor_slot(anchor_slot)
    out = []
    for k in range(B):
        if anchor_slot == "included":
            e = (k + 1) / B - 1.0 / C
        else:
            if B < 2:
                raise ValueError(f"anchor_slot='excluded' needs B >= 2 (no other draw), got B={B}")
            e = 1.0 - 1.0 / C - (B - k - 1) / (B - 1)
        e *= 1.0 - rel_gap
        if e <= 0:
            continue
        out.append(lemma5_exact(C, B, T, eps=e, anchor_slot=anchor_slot, replacement=replacement, N=N))
    return out


# ----------------------------------------------------------------------------------------------------------
# CLI


def _int_list(s: str, name: str = "value") -> list[int]:
    return comma_list(s, int, name)


def _float_list(s: str, name: str = "value") -> list[float]:
    return comma_list(s, float, name)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulate.montecarlo``: exact scan (+ optional Monte-Carlo) of Lemma 5 / Cor. 3."""
    ap = OneLineParser(prog="python -m simulate.montecarlo", description=main.__doc__)
    ap.add_argument("--classes", default="2,10,100", help="comma list of C")
    ap.add_argument("--batch-size", default="2,4,8,32,128", help="comma list of B")
    ap.add_argument("--steps", default="1,100", help="comma list of T (the union bound over T B anchors)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--delta", default=None, help="comma list; eps = eps_{B,delta} (Cor. 3) (default: 0.01,0.1 unless --eps)")
    g.add_argument("--eps", default=None, help="comma list of eps, instead of --delta (default: none)")
    ap.add_argument("--anchor-slot", default="included", choices=ANCHOR_SLOTS,
                    help="count the anchor's own slot in the batch (Lem. 5 as stated) or not")
    ap.add_argument("--no-replacement", action="store_true", help="batches without replacement (needs --N; default: with)")
    ap.add_argument("--N", type=int, default=None, help="population size for --no-replacement (default: none)")
    ap.add_argument("--trials", type=int, default=0, help="Monte-Carlo trials per point (default: 0 = exact only)")
    ap.add_argument("--seed", type=int, default=0, help="Monte-Carlo seed (default: 0)")
    ap.add_argument("--only-violations", action="store_true", help="print only the points where the bound fails (default: all)")
    args = parse_with_config(ap, argv)
    try:
        check_nonneg_int("trials", args.trials)
        check_nonneg_int("seed", args.seed)
        if args.N is not None:
            check_positive_int("N", args.N)
        kw = {"eps_values": _float_list(args.eps, "eps")} if args.eps else {"delta_values": _float_list(args.delta or "0.01,0.1", "delta")}
        rows = lemma5_scan(
            _int_list(args.classes, "classes"), _int_list(args.batch_size, "batch_size"), _int_list(args.steps, "steps"),
            anchor_slot=args.anchor_slot, replacement=not args.no_replacement, N=args.N, **kw,
        )  # fmt: skip
        rng = np.random.default_rng(args.seed)
        print(f"{'C':>5} {'B':>5} {'T':>5} {'eps':>8} {'P_exact':>10} {'P_mc':>10} {'bound':>10} {'ratio':>8} holds")
        for r in rows:
            p_mc = math.nan
            if args.trials > 0:
                eps_kw = {"eps": r["eps"]}
                mc = lemma5_monte_carlo(
                    r["C"], r["B"], r["T"], n_trials=args.trials, rng=rng, anchor_slot=args.anchor_slot,
                    replacement=not args.no_replacement, N=args.N, **eps_kw,
                )  # fmt: skip
                p_mc = mc["p_hat"]
            if args.only_violations and r["holds"]:
                continue
            print(
                f"{r['C']:>5} {r['B']:>5} {r['T']:>5} {r['eps']:>8.4f} {r['p_exists_exact']:>10.3e} "
                f"{p_mc:>10.3e} {r['bound_paper']:>10.3e} {r['ratio_exact']:>8.3g} {r['holds']}"
            )
    except ValueError as e:
        return fail(ap.prog, e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
