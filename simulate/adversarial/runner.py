"""The adversarial run and its records: every objective of the requested claims on every (tau, composition,
Sigma parameterisation), the ``ClaimResult`` records, the per-claim summary, adversarial.json / .npz, and the
reproduction of a saved record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runio import atomic_write, write_json
from runio.progress import progress
from theory.constants import (
    check_classes,
    check_delta,
    check_nonneg_float,
    check_positive_int,
    check_tau,
    eps_b_delta,
)

from .objectives import CLAIMS, PAPER_PREMISE_VARIANTS, claim_objectives, evaluate_objective, paper_premise
from .problem import (
    COMPOSITIONS,
    SIGMAS,
    BatchSpec,
    build_problem,
    delta_from_eps,
    event_eps,
    make_batch,
    torch_threads,
)
from .search import hessian_pair_start, search_claim

__all__ = [
    "HOLDS_TOL",
    "ClaimResult",
    "run_adversarial",
    "summarize",
    "save_results",
    "reproduce",
]

HOLDS_TOL = 1e-12  # a ratio <= 1 + HOLDS_TOL counts as "holds" (float64 rounding of an attained bound)


@dataclass
class ClaimResult:
    """Largest ratio found for one objective on one problem (JSON-serialisable apart from x / xp)."""

    rid: str
    claim: str
    variant: str
    kind: str
    composition: str
    sigma: str
    sym_grad: str
    ids: str
    diag: str
    B: int
    C: int
    tau: float
    eps: float | None
    Delta: float | None
    anchor: int | None
    ratio: float
    lhs: float
    rhs: float
    holds: bool
    batch: dict
    n_vars: int
    note: str = ""
    x: np.ndarray | None = field(default=None, repr=False)
    xp: np.ndarray | None = field(default=None, repr=False)
    in_premise: bool = True  # False: a form proved only for m = 1 / kappa = 1 (PAPER_PREMISE_VARIANTS) on this batch

    def record(self) -> dict:
        d = asdict(self)
        d.pop("x")
        d.pop("xp")
        return d


def _resolve_eps(batch: BatchSpec, C: int, eps, delta, steps) -> tuple[float | None, str]:
    """eps for Delta and a note; None if the batch is outside the event for the requested eps."""
    need = event_eps(batch, C)
    if delta is not None:
        e = eps_b_delta(batch.B, steps, check_delta(delta))
    elif eps == "auto" or eps is None:
        e = need
    else:
        e = check_nonneg_float("eps", eps)
    if e >= 1.0 - 1.0 / C:
        return None, f"eps={e:.4g} >= 1 - 1/C: Delta undefined"
    if need > e + 1e-15:
        return None, f"batch outside the Cor. 3 event for eps={e:.4g} (needs eps >= {need:.4g})"
    return e, ""


def run_adversarial(
    claims: Sequence[str] = CLAIMS,
    B: int = 4,
    C: int = 2,
    taus: Sequence[float] = (0.1, 0.5),
    compositions: Sequence[str] = COMPOSITIONS,
    sigmas: Sequence[str] = SIGMAS,
    sym_grad: str = "sum",
    ids: str = "position",
    diag: str = "free",
    eps: float | str | None = "auto",
    delta: float | None = None,
    steps: int = 1,
    restarts: int = 4,
    seed: int = 0,
    out_dir: Path | None = None,
    quiet: bool = False,
    threads: int | None = 1,
) -> list[ClaimResult]:
    """Run every objective of ``claims`` on every (tau, composition, sigma); optionally save results.

    ``threads``: torch intra-op threads during the search (restored afterwards; ``None``: unchanged).

    Writes into ``out_dir``: adversarial.json (config, one record per objective, per-claim summary) and
    adversarial.npz (arrays ``<rid>__x`` and ``<rid>__xp`` of the maximisers).
    """
    for c in claims:
        if c not in CLAIMS:
            raise ValueError(f"claims must be among {', '.join(CLAIMS)}, got {c!r}")
    B = check_positive_int("B", B)
    C = check_classes(C)
    taus = [check_tau(t) for t in taus]
    restarts = check_positive_int("restarts", restarts)
    steps = check_positive_int("steps", steps)
    rng = np.random.default_rng(seed)
    jobs = []
    for tau in taus:
        for comp in compositions:
            batch = make_batch(comp, B, C, rng)
            for sigma in sigmas:
                jobs.append((tau, comp, batch, sigma))
    results: list[ClaimResult] = []
    n = 0
    with torch_threads(threads):
        for tau, comp, batch, sigma in progress(jobs, quiet=quiet, desc="adversarial"):
            prob = build_problem(batch, sigma=sigma, sym_grad=sym_grad, ids=ids, diag=diag)
            e, note = _resolve_eps(batch, C, eps, delta, steps)
            Delta = None if e is None else delta_from_eps(C, e, tau)
            for claim in claims:
                if claim in ("L6", "L8") and Delta is None:
                    results.append(ClaimResult(
                        f"r{n}", claim, "skipped", "-", comp, sigma, sym_grad, ids, diag, B, C, tau, e, None, None,
                        math.nan, math.nan, math.nan, True, asdict(batch), prob.d, note,
                    ))  # fmt: skip
                    n += 1
                    continue
                hess_x: dict[str, np.ndarray] = {}
                for obj in claim_objectives(claim, prob):
                    if obj.per_anchor and sigma != sigmas[0]:
                        continue  # per-anchor quantities do not depend on the Sigma parameterisation
                    if obj.claim == "L2" and obj.pair:
                        # sup of the pair ratio = sup of the local operator norm (mean value theorem): polish
                        # from the Hessian maximiser (random starts only if there is none)
                        if obj.kind in hess_x:
                            st = [hessian_pair_start(prob, obj.kind, hess_x[obj.kind], tau)]
                            v, x, xp = search_claim(obj, prob, tau, Delta, rng, 0, starts=st, maxiter=30,
                                                    pair_random_starts=0)  # fmt: skip
                        else:
                            v, x, xp = search_claim(obj, prob, tau, Delta, rng, restarts)
                    else:
                        v, x, xp = search_claim(obj, prob, tau, Delta, rng, restarts)
                    if obj.claim == "L2" and obj.variant == "hessian":
                        hess_x[obj.kind] = x
                    r, lhs, rhs, anchor = evaluate_objective(obj, prob, x, xp, tau, Delta)
                    inside = obj.variant not in PAPER_PREMISE_VARIANTS or paper_premise(prob)
                    results.append(ClaimResult(
                        f"r{n}", claim, obj.variant, obj.kind, comp, sigma, sym_grad, ids, diag, B, C, tau, e, Delta,
                        anchor, r, lhs, rhs, bool(r <= 1.0 + HOLDS_TOL), asdict(batch), prob.d,
                        "" if inside else "outside the proved premise (anchors share a row / symmetric sum)", x, xp,
                        inside,
                    ))  # fmt: skip
                    n += 1
    if out_dir is not None:
        save_results(results, Path(out_dir), config=dict(
            claims=list(claims), B=B, C=C, taus=taus, compositions=list(compositions), sigmas=list(sigmas),
            sym_grad=sym_grad, ids=ids, diag=diag, eps=eps, delta=delta, steps=steps, restarts=restarts,
            seed=seed,
        ))  # fmt: skip
    return results


def summarize(results: Sequence[ClaimResult]) -> list[dict]:
    """Per claim and variant ("L3.batch", ...): the record with the largest ratio, and whether all held."""
    out = []
    keys = []
    for r in results:
        k = (r.claim, r.variant)
        if r.variant != "skipped" and k not in keys:
            keys.append(k)
    keys.sort(key=lambda k: CLAIMS.index(k[0]))
    for claim, variant in keys:
        rs = [r for r in results if (r.claim, r.variant) == (claim, variant) and math.isfinite(r.ratio)]
        if not rs:
            continue
        inside = [r for r in rs if getattr(r, "in_premise", True)]
        if not inside:  # only batches outside the proved premise: report the worst there, holds = n/a
            best = max(rs, key=lambda r: r.ratio)
            out.append({"claim": f"{claim}.{variant}", "max_ratio": math.nan, "rid": best.rid, "holds": None,
                        "max_ratio_outside_premise": best.ratio,
                        "at": f"outside premise: {best.kind} {best.composition} {best.sigma} tau={best.tau:g}"})
            continue
        best = max(inside, key=lambda r: r.ratio)
        at = f"{best.kind} {best.composition} {best.sigma} tau={best.tau:g}"
        if best.anchor is not None:
            at += f" anchor={best.anchor}"
        row = {"claim": f"{claim}.{variant}", "max_ratio": best.ratio, "at": at,
               "holds": all(r.holds for r in inside), "rid": best.rid}
        outside = [r for r in rs if not getattr(r, "in_premise", True)]
        if outside:  # e.g. Lem. 8 with the paper's constants on batches whose anchors share a row
            row["max_ratio_outside_premise"] = max(r.ratio for r in outside)
        out.append(row)
    for claim in CLAIMS:  # claims never evaluated (every batch outside the Cor. 3 event): say why
        rs = [r for r in results if r.claim == claim]
        if rs and all(r.variant == "skipped" for r in rs):
            out.append({"claim": claim, "max_ratio": math.nan, "at": f"skipped: {rs[0].note}", "holds": None,
                        "rid": rs[0].rid})  # fmt: skip
    return out


def save_results(results: Sequence[ClaimResult], out_dir: Path, config: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for r in results:
        if r.x is not None:
            arrays[f"{r.rid}__x"] = r.x
        if r.xp is not None:
            arrays[f"{r.rid}__xp"] = r.xp
    atomic_write(out_dir / "adversarial.npz", lambda f: np.savez(f, **arrays))
    doc = {"config": config, "summary": summarize(results), "records": [r.record() for r in results]}
    # NaN / Infinity literals (not strings): reproduce() reads ratios and Delta back as floats
    write_json(out_dir / "adversarial.json", doc, nonfinite="literal", indent=1, default=float)


def reproduce(record: dict, arrays: dict) -> tuple[float, float, float, int | None]:
    """Recompute (ratio, lhs, rhs, anchor) of a saved record from its batch, options and the saved maximiser."""
    batch = BatchSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["batch"].items()})
    prob = build_problem(batch, record["sigma"], record["sym_grad"], record["ids"], record.get("diag", "free"))
    objs = [o for o in claim_objectives(record["claim"], prob)
            if o.variant == record["variant"] and o.kind == record["kind"]]  # fmt: skip
    if len(objs) != 1:
        raise ValueError(f"record {record['rid']} does not identify one objective")
    rid = record["rid"]
    x = arrays[f"{rid}__x"]
    xp = arrays[f"{rid}__xp"] if f"{rid}__xp" in arrays else None
    return evaluate_objective(objs[0], prob, x, xp, record["tau"], record["Delta"])
