"""Sympy derivations of the paper's algebra, each returning the expressions and a boolean check.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", App. D
(Lem. 2 softmax-CE gradient / Hessian and the ||J||_inf <= 1/2 step, Lem. 3, Lem. 6 identity, the Grönwall
unrolling of Thm. 1 / Thm. 2, Cor. 1/2 algebra) plus the sharper statements proved in theory/bounds/
(tight cosine bound, Lem. 6 sharpening, loss-gap monotonicity).

Every function returns a ``SymbolicCheck(name, exprs, ok)``: ``exprs`` maps names to sympy expressions (and
the symbols used, so tests can ``lambdify`` them), ``ok`` is True when sympy proves the identity/inequality.
The tests compare the lambdified expressions with the numeric code in theory/bounds/ and theory/losses/.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp

__all__ = [
    "SymbolicCheck",
    "softmax_ce_gradient",
    "softmax_ce_hessian",
    "jacobian_inf_norm_bound",
    "lemma3_gradient_norm",
    "lemma6_l1_identity",
    "lemma6_sharpening",
    "gronwall_unrolling",
    "cor_algebra",
    "sharp_cosine_bound",
    "loss_gap_algebra",
    "all_checks",
]


class SymbolicCheck(NamedTuple):
    name: str
    exprs: dict
    ok: bool


def _is_zero(e: sp.Expr) -> bool:
    return sp.simplify(e) == 0


def softmax_ce_gradient(K: int = 3) -> SymbolicCheck:
    """Lem. 2/3: for loss = -s_0/tau + log sum_k exp(s_k/tau), grad_s loss = (p - e_0)/tau, p = softmax(s/tau).

    exprs: s (symbols), tau, loss, grad (list), p (list).
    """
    s = sp.symbols(f"s0:{K}", real=True)
    tau = sp.symbols("tau", positive=True)
    Z = sum(sp.exp(x / tau) for x in s)
    loss = -s[0] / tau + sp.log(Z)
    p = [sp.exp(x / tau) / Z for x in s]
    grad = [sp.diff(loss, x) for x in s]
    ok = all(_is_zero(grad[k] - (p[k] - (1 if k == 0 else 0)) / tau) for k in range(K))
    return SymbolicCheck("softmax_ce_gradient", {"s": s, "tau": tau, "loss": loss, "grad": grad, "p": p}, ok)


def softmax_ce_hessian(K: int = 3) -> SymbolicCheck:
    """Lem. 2: Hessian of the softmax-CE loss = (Diag p - p p^T)/tau^2 (the positive term is linear).

    exprs: s, tau, hessian (sympy Matrix), p.
    """
    g = softmax_ce_gradient(K)
    s, tau, loss, p = g.exprs["s"], g.exprs["tau"], g.exprs["loss"], g.exprs["p"]
    Hs = sp.hessian(loss, s)
    P = sp.Matrix(p)
    want = (sp.diag(*p) - P * P.T) / tau**2
    ok = all(_is_zero(Hs[i, j] - want[i, j]) for i in range(K) for j in range(K))
    return SymbolicCheck("softmax_ce_hessian", {"s": s, "tau": tau, "hessian": Hs, "p": p}, ok)


def jacobian_inf_norm_bound(K: int = 3) -> SymbolicCheck:
    """Lem. 2: row r of J = Diag p - p p^T has abs-sum p_r(1-p_r) + sum_{l!=r} p_r p_l = 2 p_r (1 - p_r) on the
    simplex, and max_{x in [0,1]} 2x(1-x) = 1/2 (at x = 1/2); ||J||_2 = 1/2 is attained at p = (1/2, 1/2).

    exprs: p (symbols), row_abs_sum (list), f (2x(1-x)), x, max_value, argmax.
    """
    p = sp.symbols(f"p0:{K}", positive=True)
    rows = []
    for r in range(K):
        # entries: diagonal p_r - p_r^2 = p_r(1-p_r) >= 0 for p_r in (0,1); off-diagonal -p_r p_l <= 0
        rows.append(p[r] * (1 - p[r]) + sum(p[r] * p[l] for l in range(K) if l != r))
    on_simplex = [sp.simplify(rows[r].subs(p[-1], 1 - sum(p[:-1]))) for r in range(K)]
    x = sp.symbols("x", real=True)
    f = 2 * x * (1 - x)
    crit = sp.solve(sp.diff(f, x), x)
    cands = [sp.Integer(0), sp.Integer(1)] + [c for c in crit if 0 <= c <= 1]
    vmax = max(f.subs(x, c) for c in cands)
    argmax = [c for c in cands if f.subs(x, c) == vmax]
    ok_rows = all(
        _is_zero(on_simplex[r] - (2 * p[r] * (1 - p[r])).subs(p[-1], 1 - sum(p[:-1]))) for r in range(K)
    )
    J2 = sp.Matrix([[sp.Rational(1, 4), -sp.Rational(1, 4)], [-sp.Rational(1, 4), sp.Rational(1, 4)]])
    eig_max = max(J2.eigenvals().keys())
    ok = ok_rows and vmax == sp.Rational(1, 2) and argmax == [sp.Rational(1, 2)] and eig_max == sp.Rational(1, 2)
    return SymbolicCheck(
        "jacobian_inf_norm_bound",
        {"p": p, "row_abs_sum": rows, "f": f, "x": x, "max_value": vmax, "argmax": argmax[0], "J_half_eigmax": eig_max},
        ok,
    )


def lemma3_gradient_norm() -> SymbolicCheck:
    """Lem. 3: ||p - e_{i'}||^2 = (1 - p_{i'})^2 + sum_{k!=i'} p_k^2 <= 2 (1 - p_{i'})^2 <= 2.

    Uses sum_{k!=i'} p_k^2 <= (sum_{k!=i'} p_k)^2 = (1 - p_{i'})^2 (non-negative p). Checked for 3 keys:
    the slack (sum p_k)^2 - sum p_k^2 = 2 p_1 p_2 >= 0.
    """
    p0, p1, p2 = sp.symbols("p0 p1 p2", nonnegative=True)
    sq = (1 - p0) ** 2 + p1**2 + p2**2
    slack = sp.expand(2 * (1 - p0) ** 2 - sq).subs(p0, 1 - p1 - p2)
    ok = _is_zero(sp.expand(slack) - 2 * p1 * p2) and sp.expand(2 * p1 * p2).is_nonnegative is not False
    return SymbolicCheck("lemma3_gradient_norm", {"norm_sq": sq, "slack": sp.expand(slack)}, bool(ok))


def lemma6_l1_identity(n_pos: int = 2, n_neg: int = 3) -> SymbolicCheck:
    """Lem. 6: with p the softmax over pos u neg and q the softmax over neg only, ||p - q||_1 = 2 alpha,
    alpha = Z_pos/(Z_pos + Z_neg); also q_j - p_j = p_j alpha/(1 - alpha) >= 0 on negatives and
    alpha = r/(1 + r), r = Z_pos/Z_neg.

    exprs: e_pos, e_neg (positive symbols = exp(s/tau)), l1, alpha.
    """
    ep = sp.symbols(f"a0:{n_pos}", positive=True)
    en = sp.symbols(f"b0:{n_neg}", positive=True)
    Zp, Zn = sum(ep), sum(en)
    Z = Zp + Zn
    alpha = Zp / Z
    p_pos = [e / Z for e in ep]
    p_neg = [e / Z for e in en]
    q_neg = [e / Zn for e in en]
    diffs = [sp.simplify(q - p) for q, p in zip(q_neg, p_neg)]
    sign_ok = all(sp.simplify(d - p * alpha / (1 - alpha)) == 0 for d, p in zip(diffs, p_neg))
    nonneg = all(sp.simplify(d).is_positive for d in diffs)
    l1 = sum(p_pos) + sum(diffs)  # |p_k| = p_k on positives, |p_j - q_j| = q_j - p_j on negatives
    r = Zp / Zn
    ok = sign_ok and nonneg and _is_zero(l1 - 2 * alpha) and _is_zero(alpha - r / (1 + r))
    return SymbolicCheck("lemma6_l1_identity", {"e_pos": ep, "e_neg": en, "l1": l1, "alpha": alpha}, ok)


def lemma6_sharpening() -> SymbolicCheck:
    """2 alpha = 2r/(1+r) is increasing in r, and at r = Delta/2 equals Delta/(1 + Delta/2) <= Delta
    (theory.bounds.lem6_l1_sharp); sqrt(2) alpha = Delta/(sqrt 2 (1 + Delta/2)) (lem6_l2_sharp)."""
    r, D = sp.symbols("r Delta", nonnegative=True)
    two_alpha = 2 * r / (1 + r)
    inc = sp.simplify(sp.diff(two_alpha, r))  # 2/(1+r)^2 > 0
    l1 = sp.simplify(two_alpha.subs(r, D / 2))
    l2 = sp.simplify(sp.sqrt(2) * (r / (1 + r)).subs(r, D / 2))
    ok = (
        _is_zero(inc - 2 / (1 + r) ** 2)
        and _is_zero(l1 - D / (1 + D / 2))
        and _is_zero(D - l1 - D**2 / (D + 2))  # D - l1 = D^2/(D+2) >= 0
        and _is_zero(l2 - D / (sp.sqrt(2) * (1 + D / 2)))
    )
    return SymbolicCheck("lemma6_sharpening", {"r": r, "Delta": D, "l1_sharp": l1, "l2_sharp": l2}, ok)


def gronwall_unrolling(T: int = 4) -> SymbolicCheck:
    """Thm. 1 / Thm. 2 unrolling: D_{t+1} = (1 + alpha_t) D_t + gamma_t, D_0 = 0, gives
    D_T = sum_s gamma_s prod_{u>s}(1 + alpha_u) (expanded symbolic identity for this T); with gamma_t = c alpha_t
    it telescopes to c (prod_u (1 + alpha_u) - 1); and the scalar inequalities behind the closed forms:
    1 + x <= e^x and e^x - 1 <= x e^x for x >= 0 (derivatives e^x - 1 >= 0 and x e^x >= 0, equality at 0).

    exprs: alpha, gamma (symbol tuples), recurrence, product_form, telescoped, c.
    """
    a = sp.symbols(f"alpha0:{T}", nonnegative=True)
    g = sp.symbols(f"gamma0:{T}", nonnegative=True)
    c = sp.symbols("c", nonnegative=True)
    D = sp.Integer(0)
    for t in range(T):
        D = (1 + a[t]) * D + g[t]
    prod_form = sum(g[s] * sp.prod([1 + a[u] for u in range(s + 1, T)]) for s in range(T))
    ok1 = sp.expand(D - prod_form) == 0
    tele = c * (sp.prod([1 + a[u] for u in range(T)]) - 1)
    ok2 = sp.expand(prod_form.subs({g[t]: c * a[t] for t in range(T)}) - tele) == 0
    x = sp.symbols("x", nonnegative=True)
    f1 = sp.exp(x) - 1 - x  # f1(0) = 0, f1' = e^x - 1 >= 0
    f2 = x * sp.exp(x) - (sp.exp(x) - 1)  # f2(0) = 0, f2' = x e^x >= 0
    ok3 = (
        f1.subs(x, 0) == 0
        and _is_zero(sp.diff(f1, x) - (sp.exp(x) - 1))
        and f2.subs(x, 0) == 0
        and _is_zero(sp.diff(f2, x) - x * sp.exp(x))
    )
    return SymbolicCheck(
        "gronwall_unrolling",
        {"alpha": a, "gamma": g, "c": c, "recurrence": D, "product_form": prod_form, "telescoped": tele},
        bool(ok1 and ok2 and ok3),
    )


def cor_algebra() -> SymbolicCheck:
    """Cor. 1/2: (A^2 - A d)/(A (A + d)) = (1 - rho)/(1 + rho) with d = rho A (A > 0)."""
    A = sp.symbols("A", positive=True)
    d, rho = sp.symbols("d rho", nonnegative=True)
    lhs = (A**2 - A * d) / (A * (A + d))
    ok = _is_zero(lhs.subs(d, rho * A) - (1 - rho) / (1 + rho))
    return SymbolicCheck("cor_algebra", {"A": A, "d": d, "rho": rho, "lhs": lhs}, ok)


def sharp_cosine_bound() -> SymbolicCheck:
    """Tight cosine bound (theory.bounds.cos_lower_bound_sharp): h(a) = (rho^2 - a^2)/(1 + a)^2 has its
    maximum over [-rho, rho] at a = -rho^2 with value rho^2/(1 - rho^2), so cos >= (1 + h)^{-1/2} = sqrt(1 - rho^2).
    Never weaker than the paper: (1 - rho^2) - ((1 - rho)/(1 + rho))^2 has the sign of
    (1 - rho^2)(1 + rho)^2 - (1 - rho)^2 = rho (1 - rho) (rho^2 + 3 rho + 4) >= 0 on [0, 1] (factorised by sympy).
    """
    a = sp.symbols("a", real=True)
    rho = sp.symbols("rho", positive=True)
    h = (rho**2 - a**2) / (1 + a) ** 2
    crit = sp.solve(sp.diff(h, a), a)
    hmax = sp.simplify(h.subs(a, -(rho**2)))
    cos_min = sp.simplify(1 / sp.sqrt(1 + hmax))
    gap = sp.factor(sp.expand((1 - rho**2) * (1 + rho) ** 2 - (1 - rho) ** 2))
    ok = (
        crit == [-(rho**2)]
        and _is_zero(hmax - rho**2 / (1 - rho**2))
        and _is_zero(cos_min**2 - (1 - rho**2))
        and _is_zero(gap - (-rho * (rho - 1) * (rho**2 + 3 * rho + 4)))
    )
    exprs = {"a": a, "rho": rho, "h": h, "h_max": hmax, "cos_min": cos_min, "gap": gap}
    return SymbolicCheck("sharp_cosine_bound", exprs, ok)


def loss_gap_algebra() -> SymbolicCheck:
    """Loss-gap bound: d/dn (n - 1)/(N - n) = (N - 1)/(N - n)^2 > 0, so the per-anchor bound
    log(1 + (n_y - 1) e^{2/tau}/(N - n_y)) is maximised by the largest class; n_max/(N - n_max) at n_max = N/C
    equals 1/(C - 1); the tight per-anchor gap log(Z_all/Z_neg) at extreme logits equals the count form.
    """
    n, N, C, tau = sp.symbols("n N C tau", positive=True)
    f = (n - 1) / (N - n)
    df = sp.simplify(sp.diff(f, n))
    bal = sp.simplify((n / (N - n)).subs(n, N / C))
    ns, nn = sp.symbols("n_same n_neg", positive=True)
    z_all = ns * sp.exp(1 / tau) + nn * sp.exp(-1 / tau)
    z_neg = nn * sp.exp(-1 / tau)
    tight = sp.simplify(sp.log(z_all / z_neg) - sp.log(1 + ns * sp.exp(2 / tau) / nn))
    ok = (
        _is_zero(df - (N - 1) / (N - n) ** 2)
        and _is_zero(bal - 1 / (C - 1))
        and _is_zero(sp.expand_log(tight, force=True))
    )
    return SymbolicCheck("loss_gap_algebra", {"n": n, "N": N, "C": C, "tau": tau, "dfdn": df, "balanced": bal}, ok)


def all_checks() -> list[SymbolicCheck]:
    """Run every derivation (small sizes)."""
    return [
        softmax_ce_gradient(),
        softmax_ce_hessian(),
        jacobian_inf_norm_bound(),
        lemma3_gradient_norm(),
        lemma6_l1_identity(),
        lemma6_sharpening(),
        gronwall_unrolling(),
        cor_algebra(),
        sharp_cosine_bound(),
        loss_gap_algebra(),
    ]
