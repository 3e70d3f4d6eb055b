"""Randomized soundness search: does every certificate the toolkit calls proved hold wherever its premise holds?

Issue 6 items 1-2. Over many small random regimes (N, C, B, tau, eta, T, delta, replacement on/off, ordered /
symmetric Sigma, clip / none, views slots / identity, diagonal fixed / free, duplicate-heavy batches with B >> N)
the coupled CL / NSCL
Sigma-descent of Eq. 1 is run with the engine's own step (simulate.batches / layout / step, the same random
streams as ``python -m simulate.sigma_descent`` with the same seeds), and at every step each certificate below
is compared with the measured quantity, computed here independently in dense float64 (full matrices, no
touched-block bookkeeping): drift ||Sigma_t^CL - Sigma_t^NSCL||_F, per-anchor softmaxes, CKA / RSA, losses.

Certificates (``BOUNDS``; every one is evaluated under its own premise, computed here at run time):

  Thm1, Thm1_gronwall, Thm1_unrolled, Thm1_sharp   theory.bounds.thm1_bound / _gronwall / thm1_unrolled /
        thm1_bound_sharp with horizon t (eta_0..eta_{t-1}); Thm1_rec, Thm1_rec_sharp: one step of the
        recurrence D_{t+1} <= (1 + eta L) D_t + eta Delta/(tau sqrt B) (Delta or lem6_l2_sharp(Delta)).
        Premise ``THM1_PREMISE``: Cor. 3 event (horizon t) and CL-denominator logits in [-1, 1] for every anchor
        at every step so far, ordered Sigma, every anchor on its own row (m = 1).
  Thm1_mult, Thm1_mult_sharp, Thm1_rec_mult        theory.bounds.thm1_unrolled_multiplicity /
        thm1_bound_sharp_multiplicity with the realised row multiplicities (kappa = 2 for symmetric Sigma).
        Premise: Cor. 3 event and bounded logits only (duplicates and symmetric Sigma allowed).
  Cor1, Cor1_sharp, Cor2, Cor2_sharp                Cors. 1-2 (paper / tight cosine) with the Thm1 drift bound
        (premise as Thm1); Cor1_sharp_thm1sharp, Cor2_sharp_thm1sharp with Thm1_sharp (as Thm1);
        Cor1_mult_sharp, Cor2_mult_sharp with Thm1_mult_sharp (as Thm1_mult).
  L6_sharp_l1, L6_sharp_l2                          per anchor, ||p - q||_1 <= Delta/(1 + Delta/2) and
        ||p - q||_2 <= Delta/(sqrt2 (1 + Delta/2)) on the merged columns (theory.bounds.lem6_*_sharp);
        premise: Cor. 3 event for the anchor and its logits in [-1, 1].
  LossGap_batch                                     per anchor, DCL - NSCL loss <= log(1 + n_same e^{2/tau}/n_neg)
        (theory.bounds.loss_gap_bound_counts); premise: logits in [-1, 1], >= 1 negative.
  LossGap_pop                                       population DCL - NSCL loss on Sigma_t^CL (all items as
        anchors, theory.losses.contrastive_loss) <= theory.bounds.loss_gap_bound(C, tau, n_max, N); premise:
        all off-diagonal entries of Sigma_t^CL in [-1, 1], views = slots with V = 2 (one positive).

``legacy`` columns: the Thm1 / Cor forms evaluated under the premise the toolkit used before the fix (Cor. 3 event
and bounded logits only, any rows, any Sigma mode): the search must find their violation (item 1).

CLI: ``python -m simulate.soundness --regimes 300 --seed 0 --out runs/soundness`` writes regimes.csv (one row
per regime), summary.json (regimes tried, steps checked, per bound: instances in premise, violations inside
premise, max ratio inside premise, legacy violations) and counterexamples/*.json (every regime with a
violation inside a premise, or a legacy violation: enough to rerun it).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from theory import bounds as bd
from theory.constants import delta_c_delta, eps_b_delta
from theory.losses import contrastive_loss
from theory.alignment_gram import cka_gram, rsa_gram
from theory.constants import exp_or_inf
from runio.progress import progress

__all__ = ["BOUNDS", "LEGACY", "Regime", "RegimeResult", "sample_regime", "check_regime", "search", "summarize",
           "format_summary", "main"]

RTOL = 1e-9  # relative slack for rounding: a ratio > 1 + RTOL is a violation

BOUNDS = (
    "Thm1", "Thm1_gronwall", "Thm1_unrolled", "Thm1_sharp", "Thm1_rec", "Thm1_rec_sharp",
    "Thm1_mult", "Thm1_mult_sharp", "Thm1_rec_mult",
    "Cor1", "Cor1_sharp", "Cor2", "Cor2_sharp", "Cor1_sharp_thm1sharp", "Cor2_sharp_thm1sharp",
    "Cor1_mult_sharp", "Cor2_mult_sharp",
    "L6_sharp_l1", "L6_sharp_l2", "LossGap_batch", "LossGap_pop",
)
# forms whose premise changed with the fix: evaluated also under the old premise (event + bounded logits)
LEGACY = ("Thm1", "Thm1_gronwall", "Thm1_unrolled", "Thm1_sharp", "Thm1_rec", "Thm1_rec_sharp",
          "Cor1", "Cor1_sharp", "Cor2", "Cor2_sharp", "Cor1_sharp_thm1sharp", "Cor2_sharp_thm1sharp")


@dataclass
class Regime:
    """One small Sigma-descent regime (the fields of simulate.config.SigmaConfig that the search varies)."""

    n: int
    classes: int
    batch_size: int
    tau: float
    eta: float
    steps: int
    delta: float
    views: str = "slots"
    view_slots: int = 2
    sigma: str = "ordered"
    replacement: bool = True
    project: str = "clip"
    separation: float = 1.0
    aug_noise: float = 0.5
    embed_dim: int = 8
    init_seed: int = 0
    batch_seed: int = 1
    aug_seed: int = 2
    diag: str = "fixed"  # the engine's diagonal option (SigmaConfig.diag): fixed at 1, or a free coordinate

    def to_config(self):
        from .config import SigmaConfig

        return SigmaConfig(**self.__dict__, checks=False, plot=False, eval_every=0, lemma5_trials=0)


@dataclass
class Stat:
    """Per bound: instances inside its premise, violations there, max ratio there; legacy counts."""

    n: int = 0
    viol: int = 0
    max_ratio: float = 0.0
    legacy_n: int = 0
    legacy_viol: int = 0
    legacy_max: float = 0.0
    first: dict | None = None  # first violation inside the premise
    legacy_first: dict | None = None

    def add(self, ratio: float, premise: bool, legacy_premise: bool, where: dict) -> None:
        if not math.isfinite(ratio) and not math.isnan(ratio):
            ratio = math.inf
        if premise:
            self.n += 1
            self.max_ratio = max(self.max_ratio, ratio)
            if ratio > 1.0 + RTOL:
                self.viol += 1
                if self.first is None:
                    self.first = {**where, "ratio": ratio}
        if legacy_premise:
            self.legacy_n += 1
            self.legacy_max = max(self.legacy_max, ratio)
            if ratio > 1.0 + RTOL:
                self.legacy_viol += 1
                if self.legacy_first is None:
                    self.legacy_first = {**where, "ratio": ratio}

    def add_many(self, ratios: torch.Tensor, premise: torch.Tensor, where: dict) -> None:
        """Vectorised ``add`` for per-anchor instances (no legacy premise). Shape: ratios, premise (B,)."""
        r = ratios[premise]
        self.n += int(r.numel())
        if r.numel():
            self.max_ratio = max(self.max_ratio, float(r.max()))
            bad = r > 1.0 + RTOL
            nb = int(bad.sum())
            if nb:
                self.viol += nb
                if self.first is None:
                    i = int(torch.nonzero(premise).flatten()[torch.nonzero(bad).flatten()[0]])
                    self.first = {**where, "anchor": i, "ratio": float(ratios[i])}

    def merge(self, o: "Stat") -> None:
        self.n += o.n
        self.viol += o.viol
        self.max_ratio = max(self.max_ratio, o.max_ratio)
        self.legacy_n += o.legacy_n
        self.legacy_viol += o.legacy_viol
        self.legacy_max = max(self.legacy_max, o.legacy_max)
        self.first = self.first or o.first
        self.legacy_first = self.legacy_first or o.legacy_first


@dataclass
class RegimeResult:
    regime: Regime
    steps_checked: int = 0
    stats: dict = field(default_factory=lambda: {b: Stat() for b in BOUNDS})
    max_multiplicity: int = 1
    skipped: str = ""

    @property
    def violations(self) -> int:
        return sum(s.viol for s in self.stats.values())

    @property
    def legacy_violations(self) -> int:
        return sum(s.legacy_viol for s in self.stats.values())


def _ratio(lhs: float, rhs: float) -> float:
    """lhs / rhs for an upper bound rhs >= 0 (0/0 = 0; x/0 = inf)."""
    if rhs == math.inf:
        return 0.0
    if rhs <= 0.0:
        return 0.0 if lhs <= 1e-300 else math.inf
    return lhs / rhs


def _ratio_lb(value: float, lb: float) -> float:
    """A lower bound lb <= value as a ratio that is > 1 iff violated: (1 - value)/(1 - lb) (both <= 1)."""
    if lb <= -1.0:
        return 0.0
    den = 1.0 - lb
    num = 1.0 - value
    if den <= 0.0:
        return 0.0 if num <= 1e-12 else math.inf
    return max(num, 0.0) / den


# ----------------------------------------------------------------------------------------------------------
# one regime


def sample_regime(rng: np.random.Generator) -> Regime:
    """A random small regime: half duplicate-heavy (B >> N, with replacement), half without duplicate anchor
    rows (no replacement, B <= N), so that both the old premise (m = 1) and the new one are exercised."""
    C = int(rng.choice([2, 2, 3, 4]))
    if rng.random() < 0.5:
        n = C * int(rng.choice([1, 1, 2, 3, 4]))
        B = int(rng.choice([8, 16, 24, 32, 48, 64]))
        replacement = True
    else:
        B = int(rng.choice([8, 12, 16, 24]))
        n = C * int(math.ceil(B / C)) * int(rng.choice([1, 2]))
        replacement = bool(rng.random() < 0.2)
    views = "identity" if rng.random() < 0.15 else "slots"
    return Regime(
        n=n, classes=C, batch_size=B,
        tau=float(rng.choice([0.1, 0.2, 0.3, 0.5, 1.0, 2.0])),
        eta=float(np.exp(rng.uniform(np.log(0.05), np.log(50.0)))),
        steps=int(rng.integers(1, 16)),
        delta=float(rng.choice([0.05, 0.3, 0.9])),
        views=views,
        view_slots=int(rng.choice([2, 2, 3])) if views == "slots" else 1,
        sigma="symmetric" if rng.random() < 0.25 else "ordered",
        replacement=replacement,
        project="none" if rng.random() < 0.2 else "clip",
        separation=float(rng.choice([0.0, 1.0, 3.0])),
        aug_noise=float(rng.choice([0.1, 0.5, 2.0])),
        embed_dim=int(rng.choice([4, 8])),
        diag="free" if rng.random() < 0.5 else "fixed",
        init_seed=int(rng.integers(2**31)), batch_seed=int(rng.integers(2**31)), aug_seed=int(rng.integers(2**31)),
    )


def _delta_or_inf(C: int, B: int, T: int, delta: float, tau: float) -> float:
    try:
        return delta_c_delta(C, B, T, delta, tau)
    except ValueError:
        return math.inf


def _anchor_quantities(S: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, lab: torch.Tensor, tau: float):
    """Dense per-anchor quantities at Sigma (independent of the engine's block bookkeeping).

    Returns dict of (B,) tensors: max |logit| over the CL denominator, n_same (own slot counted), l1 = ||p - q||_1
    per key, l2m = ||p - q||_2 on merged columns, gap = DCL - NSCL loss, n_same_keys (same label, other id),
    n_neg (other label keys). Shape: S (M, M); rows (B,); cols (2B,).
    """
    B = rows.shape[0]
    L = S[rows][:, cols]  # (B, 2B) logits
    ar = torch.arange(B)
    key_id = torch.arange(2 * B) % B
    self_m = torch.zeros(B, 2 * B, dtype=torch.bool)
    self_m[ar, ar] = True
    same = lab[cols][None, :] == lab[rows][:, None]
    den_cl = ~self_m
    den_ns = ~same
    den_dcl = key_id[None, :] != ar[:, None]
    neg_inf = torch.tensor(-math.inf, dtype=torch.float64)
    x = L / tau

    def lse(mask):
        return torch.logsumexp(torch.where(mask, x, neg_inf), dim=1)

    lz_cl, lz_ns, lz_dcl = lse(den_cl), lse(den_ns), lse(den_dcl)
    p = torch.where(den_cl, torch.exp(x - lz_cl[:, None]), torch.zeros((), dtype=torch.float64))
    has_neg = den_ns.any(1)
    q = torch.where(den_ns & has_neg[:, None], torch.exp(x - lz_ns[:, None]), torch.zeros((), dtype=torch.float64))
    d = p - q
    l1 = d.abs().sum(1)
    # merge keys sitting on one column (same item): coordinates of Sigma are items, not keys
    uc, inv = torch.unique(cols, return_inverse=True)
    dm = torch.zeros(B, uc.shape[0], dtype=torch.float64).index_add_(1, inv, d)
    l2m = dm.square().sum(1).sqrt()
    n_same = (lab[rows][None, :] == lab[rows][:, None]).sum(1)
    return {
        "max_abs": torch.where(den_cl, L.abs(), torch.zeros((), dtype=torch.float64)).amax(1),
        "n_same": n_same,
        "l1": l1,
        "l2m": l2m,
        "has_neg": has_neg,
        "gap": torch.where(has_neg, lz_dcl - lz_ns, torch.zeros((), dtype=torch.float64)),
        "n_same_keys": (den_dcl & same).sum(1),
        "n_neg": den_ns.sum(1),
    }


def _pop_gap(S: torch.Tensor, item_labels: torch.Tensor, V: int, tau: float) -> float:
    M = S.shape[0]
    ids = torch.arange(M) // V
    args = dict(anchor_ids=ids, key_ids=ids, anchor_labels=item_labels, key_labels=item_labels,
                self_mask=torch.eye(M, dtype=torch.bool))
    return float(contrastive_loss(S, "DCL", tau, **args)) - float(contrastive_loss(S, "NSCL", tau, **args))


def _upper_std(S: torch.Tensor) -> float:
    iu = torch.triu_indices(S.shape[0], S.shape[0], 1)
    return float(S[iu[0], iu[1]].std(unbiased=False))


def _centred_fro(S: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(S - S.mean(0, keepdim=True) - S.mean(1, keepdim=True) + S.mean()))


def check_regime(reg: Regime, keep_trace: bool = False) -> RegimeResult:
    """Run one regime with the engine's step and check every certificate at every step (see module docstring)."""
    from .batches import batch_items, draw_batch
    from .config import eta_values, validate_config
    from .layout import build_layout
    from .reference import make_reference
    from .step import apply_step, compute_step

    res = RegimeResult(reg)
    cfg = reg.to_config()
    try:
        validate_config(cfg)
    except ValueError as e:
        res.skipped = str(e)
        return res
    ref = make_reference(cfg)
    eta = eta_values(cfg)
    T, B, tau, C, delta = cfg.steps, cfg.batch_size, cfg.tau, ref.classes, cfg.delta
    N, V = ref.n, ref.views
    M = N * V
    lab = ref.item_labels
    symmetric = cfg.sigma == "symmetric"
    kappa = 2.0 if symmetric else 1.0
    S_cl, S_ns = ref.sigma0.clone(), ref.sigma0.clone()
    bg = torch.Generator().manual_seed(int(cfg.batch_seed))
    ag = torch.Generator().manual_seed(int(cfg.aug_seed))
    clip = cfg.project == "clip"
    Delta_T = _delta_or_inf(C, B, T, delta, tau)
    eps_T = eps_b_delta(B, T, delta)
    min_frac, logits_ok, m_hist, q_hist = [], [], [], []
    D = [0.0]
    n_max = int(torch.bincount(ref.labels).max())
    trace = []
    for t in range(T):
        batch = draw_batch(N, B, V, cfg.replacement, bg, ag)
        rows, cols = batch_items(batch, V)
        mult = bd.anchor_row_multiplicity(rows.numpy())
        m_hist.append(mult.m)
        q_hist.append(mult.q)
        res.max_multiplicity = max(res.max_multiplicity, mult.m)
        aq = _anchor_quantities(S_cl, rows, cols, lab, tau)
        frac = (B - aq["n_same"].double()) / B
        min_frac.append(float(frac.min()))
        ok_logit = aq["max_abs"] <= 1.0
        logits_ok.append(bool(ok_logit.all()))
        where = {"step": t}
        # per-anchor: Lem. 6 sharpened (Delta and event at the run horizon T)
        if math.isfinite(Delta_T):
            prem_a = (frac >= 1.0 - 1.0 / C - eps_T) & ok_logit & aq["has_neg"]
            res.stats["L6_sharp_l1"].add_many(aq["l1"] / bd.lem6_l1_sharp(Delta_T), prem_a, where)
            res.stats["L6_sharp_l2"].add_many(aq["l2m"] / bd.lem6_l2_sharp(Delta_T), prem_a, where)
        # per-anchor loss gap: log(1 + n_same e^{2/tau} / n_neg), computed here in float64
        hn = aq["has_neg"]
        gap_rhs = torch.log1p(aq["n_same_keys"].double() * exp_or_inf(2.0 / tau) / aq["n_neg"].clamp(min=1).double())
        if hn.any():  # the library function on one anchor, so the vectorised form above is tied to it
            s0 = int(torch.nonzero(hn).flatten()[0])
            lib = bd.loss_gap_bound_counts(int(aq["n_same_keys"][s0]), int(aq["n_neg"][s0]), tau)
            if not math.isclose(lib, float(gap_rhs[s0]), rel_tol=1e-12, abs_tol=1e-300):
                raise AssertionError(f"loss_gap_bound_counts disagrees: {lib} vs {float(gap_rhs[s0])}")
        gap_ratio = torch.where(gap_rhs > 0, aq["gap"] / gap_rhs.clamp(min=1e-300),
                                torch.where(aq["gap"].abs() <= 1e-15, 0.0, math.inf))
        res.stats["LossGap_batch"].add_many(gap_ratio, ok_logit & hn, where)
        # the engine's step
        geom = build_layout(rows, cols, lab[rows], lab[cols], M, symmetric, cfg.diag)
        st = compute_step(S_cl, S_ns, geom, tau)
        apply_step(S_cl, S_ns, st, float(eta[t]), clip)
        if not (bool(torch.isfinite(S_cl).all()) and bool(torch.isfinite(S_ns).all())):
            res.skipped = f"non-finite Sigma at step {t}"
            break
        D.append(float(torch.linalg.matrix_norm(S_cl - S_ns)))
        res.steps_checked += 1
        h = t + 1  # horizon of the bounds evaluated after this step
        et = eta[:h]
        Delta_h = _delta_or_inf(C, B, h, delta, tau)
        eps_h = eps_b_delta(B, h, delta)
        ev_old = all(f >= 1.0 - 1.0 / C - eps_h for f in min_frac) and all(logits_ok)
        ev_new = ev_old and not symmetric and max(m_hist) == 1
        step_ev = min_frac[t] >= 1.0 - 1.0 / C - eps_h and logits_ok[t]
        where = {"step": t, "drift": D[h], "multiplicity": mult.m}
        if keep_trace:
            trace.append({"step": t, "drift": D[h], "m": mult.m, "q": mult.q, "event_old": ev_old})
        if not math.isfinite(Delta_h):
            continue
        Ds = bd.lem6_l2_sharp(Delta_h)
        drift_bounds = {
            "Thm1": bd.thm1_bound(et, B, C, delta, tau),
            "Thm1_gronwall": bd.thm1_bound_gronwall(et, B, C, delta, tau),
            "Thm1_unrolled": bd.thm1_unrolled(et, B, C, delta, tau),
            "Thm1_sharp": bd.thm1_bound_sharp(et, B, C, delta, tau),
            "Thm1_mult": bd.thm1_unrolled_multiplicity(et, Delta_h, B, tau, m_hist, q_hist, kappa),
            "Thm1_mult_sharp": bd.thm1_bound_sharp_multiplicity(et, B, C, delta, tau, m_hist, q_hist, kappa),
        }
        for name, rhs in drift_bounds.items():
            mult_form = name.startswith("Thm1_mult")
            res.stats[name].add(_ratio(D[h], rhs), ev_old if mult_form else ev_new, False if mult_form else ev_old,
                                where)
        # one step of the recurrence (premise at step t only, horizon h constants)
        Lp = float(eta[t]) / (2 * tau * tau * B)
        step_new = step_ev and not symmetric and mult.m == 1
        for name, Dl in (("Thm1_rec", Delta_h), ("Thm1_rec_sharp", Ds)):
            rhs = (1 + Lp) * D[t] + float(eta[t]) * Dl / (tau * math.sqrt(B))
            res.stats[name].add(_ratio(D[h], rhs), step_new, step_ev, where)
        a_t = kappa * float(eta[t]) * mult.m / (2 * tau * tau * B)
        g_t = kappa * float(eta[t]) * math.sqrt(mult.q) * Ds / (tau * B)
        res.stats["Thm1_rec_mult"].add(_ratio(D[h], (1 + a_t) * D[t] + g_t), step_ev, False, where)
        # Cors. 1-2 at this step
        try:
            cka, rsa = cka_gram(S_cl, S_ns), rsa_gram(S_cl, S_ns)
            k_fro, sd = _centred_fro(S_cl), _upper_std(S_cl)
        except ValueError:
            continue
        if k_fro <= 0 or sd <= 0:
            continue
        Mp = M * (M - 1) // 2
        cors = {
            "Cor1": (cka, bd.cor1_cka_bound(drift_bounds["Thm1"], k_fro), "new"),
            "Cor1_sharp": (cka, bd.cka_certificate_sharp(drift_bounds["Thm1"], k_fro), "new"),
            "Cor2": (rsa, bd.cor2_rsa_bound(drift_bounds["Thm1"], Mp, sd), "new"),
            "Cor2_sharp": (rsa, bd.rsa_certificate_sharp(drift_bounds["Thm1"], Mp, sd, symmetric=symmetric), "new"),
            "Cor1_sharp_thm1sharp": (cka, bd.cka_certificate_sharp(drift_bounds["Thm1_sharp"], k_fro), "new"),
            "Cor2_sharp_thm1sharp": (rsa, bd.rsa_certificate_sharp(drift_bounds["Thm1_sharp"], Mp, sd,
                                                                   symmetric=symmetric), "new"),
            "Cor1_mult_sharp": (cka, bd.cka_certificate_sharp(drift_bounds["Thm1_mult_sharp"], k_fro), "mult"),
            "Cor2_mult_sharp": (rsa, bd.rsa_certificate_sharp(drift_bounds["Thm1_mult_sharp"], Mp, sd,
                                                              symmetric=symmetric), "mult"),
        }
        for name, (val, cert, kind) in cors.items():
            r = _ratio_lb(val, cert.lower_bound)
            if kind == "mult":
                res.stats[name].add(r, ev_old, False, where)
            else:
                res.stats[name].add(r, ev_new, ev_old, where)
        # population loss gap on Sigma^CL after the step
        if V == 2 and cfg.views == "slots":
            off = ~torch.eye(M, dtype=torch.bool)
            prem = bool((S_cl[off].abs() <= 1.0).all())
            rhs = bd.loss_gap_bound(C, tau, n_max=n_max, N=N) if n_max < N else math.inf
            res.stats["LossGap_pop"].add(_ratio(_pop_gap(S_cl, lab, V, tau), rhs), prem, False, where)
    if keep_trace:
        res.trace = trace  # type: ignore[attr-defined]
    return res


# ----------------------------------------------------------------------------------------------------------
# the search and its CLI


def search(regimes: int, seed: int = 0, quiet: bool = True, extra: list[Regime] | None = None) -> list[RegimeResult]:
    """Sample ``regimes`` random regimes (numpy Generator from ``seed``) plus ``extra``; check each."""
    rng = np.random.default_rng(seed)
    regs = [sample_regime(rng) for _ in range(regimes)] + list(extra or [])

    return [check_regime(r) for r in progress(regs, quiet=quiet, desc="soundness", unit="regime")]


def summarize(results: list[RegimeResult]) -> dict:
    """Totals over regimes: regimes tried / run, steps checked, per bound counts (see module docstring)."""
    tot = {b: Stat() for b in BOUNDS}
    for r in results:
        for b in BOUNDS:
            tot[b].merge(r.stats[b])
    per = {}
    for b in BOUNDS:
        s = tot[b]
        worst = None
        for r in results:
            if r.stats[b].viol or (b in LEGACY and r.stats[b].legacy_viol):
                worst = r
                break
        per[b] = {
            "in_premise": s.n, "violations_in_premise": s.viol, "max_ratio_in_premise": s.max_ratio,
            "legacy_in_premise": s.legacy_n if b in LEGACY else None,
            "legacy_violations": s.legacy_viol if b in LEGACY else None,
            "legacy_max_ratio": s.legacy_max if b in LEGACY else None,
            "first_regime": worst.regime.__dict__ if worst is not None else None,
            "first": s.first or s.legacy_first,
        }
    return {
        "regimes_tried": len(results),
        "regimes_run": sum(1 for r in results if not r.skipped or r.steps_checked),
        "regimes_with_duplicate_rows": sum(1 for r in results if r.max_multiplicity > 1),
        "steps_checked": sum(r.steps_checked for r in results),
        "violations_in_premise": sum(r.violations for r in results),
        "legacy_violations": sum(r.legacy_violations for r in results),
        "bounds": per,
    }


_CSV_FIELDS = ("n", "classes", "batch_size", "tau", "eta", "steps", "delta", "views", "view_slots", "sigma",
               "replacement", "project", "separation", "aug_noise", "embed_dim", "init_seed", "batch_seed",
               "aug_seed", "diag")


def _write(out: Path, results: list[RegimeResult], summary: dict) -> None:
    import runio

    rows = []
    for i, r in enumerate(results):
        row = {"regime": i, **{k: getattr(r.regime, k) for k in _CSV_FIELDS}, "steps_checked": r.steps_checked,
               "max_multiplicity": r.max_multiplicity, "violations_in_premise": r.violations,
               "legacy_violations": r.legacy_violations, "skipped": r.skipped}
        for b in BOUNDS:
            row[f"{b}_n"] = r.stats[b].n
            row[f"{b}_max"] = r.stats[b].max_ratio
        rows.append(row)
    runio.write_csv(out / "regimes.csv", rows)
    runio.write_json(out / "summary.json", summary)
    cdir = out / "counterexamples"
    for i, r in enumerate(results):
        if r.violations or r.legacy_violations:
            cdir.mkdir(parents=True, exist_ok=True)
            doc = {"regime": r.regime.__dict__, "violations": {
                b: {"in_premise": r.stats[b].first, "legacy": r.stats[b].legacy_first}
                for b in BOUNDS if r.stats[b].viol or r.stats[b].legacy_viol}}
            runio.write_json(cdir / f"regime_{i:04d}.json", doc)


def format_summary(summary: dict) -> str:
    lines = [f"regimes tried {summary['regimes_tried']} (with duplicate anchor rows: "
             f"{summary['regimes_with_duplicate_rows']}), steps checked {summary['steps_checked']}, "
             f"violations inside premise {summary['violations_in_premise']}, "
             f"legacy (pre-fix premise) violations {summary['legacy_violations']}",
             "| bound | in premise | violations | max ratio | legacy in premise | legacy violations | legacy max |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for b, s in summary["bounds"].items():
        lg = ("-", "-", "-") if s["legacy_in_premise"] is None else (
            s["legacy_in_premise"], s["legacy_violations"], f"{s['legacy_max_ratio']:.3g}")
        lines.append(f"| {b} | {s['in_premise']} | {s['violations_in_premise']} | {s['max_ratio_in_premise']:.3g} | "
                     f"{lg[0]} | {lg[1]} | {lg[2]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from runio.cli import OneLineParser, parse_with_config
    from runio.outdir import OutDirLock

    ap = OneLineParser(
        prog="python -m simulate.soundness",
        description="Randomized soundness search of every certificate labelled proved (issue 6).")
    ap.add_argument("--regimes", type=int, default=300, help="random regimes to try")
    ap.add_argument("--seed", type=int, default=0, help="seed of the regime sampler")
    ap.add_argument("--out", type=str, default="runs/soundness", help="output directory")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parse_with_config(ap, argv)
    if args.regimes < 1:
        ap.error(f"--regimes must be >= 1, got {args.regimes}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        lock = OutDirLock(args.out).acquire()  # --out checked (one line) and held before the search
    except ValueError as e:
        ap.error(str(e))
    try:
        return _run(args, lock.path)
    finally:
        lock.release()


def _run(args, out: Path) -> int:
    t0 = time.perf_counter()
    results = search(args.regimes, args.seed, quiet=args.quiet)
    summary = summarize(results)
    summary["seed"] = args.seed
    summary["wall_s"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    _write(out, results, summary)
    print(format_summary(summary))
    print(f"wrote {out}/summary.json, regimes.csv" + (", counterexamples/" if summary["violations_in_premise"]
                                                       or summary["legacy_violations"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
