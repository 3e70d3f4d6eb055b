"""Accumulation of the claims over a run: per-claim trackers and the check suite the run calls."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

import runio

from theory.bounds import cka_certificate_sharp, rsa_certificate_sharp

from .montecarlo import lemma5_monte_carlo
from .claims import CLAIM_ORDER, CLAIMS, EQ_RTOL, RTOL, _NA_SIGMA, _STEP_CLAIMS, ClaimEval, _eval, snapshot, step_claims


class ClaimTracker:
    """Counts for one claim over the run; keeps the first violation (file) and the worst (in memory)."""

    def __init__(self, cid: str):
        self.cid = cid
        self.kind = CLAIMS[cid]["kind"]
        self.evaluated = 0
        self.violations = 0
        self.premise_failed = 0
        self.violations_outside = 0
        self.max_ratio = -math.inf
        self.min_ratio = math.inf
        self.step_of_max: int | None = None
        self.lhs_at_max: float | None = None
        self.rhs_at_max: float | None = None
        self.max_ratio_outside = -math.inf
        self.first_violation_step: int | None = None
        self.first_file: str | None = None
        self.worst_badness = -math.inf
        self.worst: dict | None = None
        self.last: dict | None = None
        self.max_rhs_held = -math.inf  # largest RHS where the premise held (a certificate's lower bound)

    def _viol(self, r: Tensor) -> Tensor:
        if self.kind == "eq":
            return (r - 1.0).abs() > EQ_RTOL
        return r > 1.0 + RTOL

    def record(self, step: int, ev: ClaimEval, payload: Callable[[], dict] | None, out_dir: Path | None) -> float | None:
        """Add one step's instances; return the max ratio over premise-held instances (None if none)."""
        held = ev.premise
        n = int(held.numel())
        nh = int(held.sum())
        self.evaluated += nh
        self.premise_failed += n - nh
        r = ev.ratio
        viol = self._viol(r)
        self.last = {"step": step, "lhs": float(ev.lhs.max()), "rhs": float(ev.rhs.max()), "ratio": float(r.max())}
        if nh < n:
            vo = viol & ~held
            self.violations_outside += int(vo.sum())
            self.max_ratio_outside = max(self.max_ratio_outside, float(r[~held].max()))
        if nh == 0:
            return None
        self.max_rhs_held = max(getattr(self, "max_rhs_held", -math.inf), float(ev.rhs[held].max()))
        rh = torch.where(held, r, torch.full_like(r, -math.inf))
        i = int(rh.argmax())
        rmax = float(rh[i])
        if rmax > self.max_ratio:
            self.max_ratio, self.step_of_max = rmax, step
            self.lhs_at_max, self.rhs_at_max = float(ev.lhs[i]), float(ev.rhs[i])
        if self.kind == "eq":
            self.min_ratio = min(self.min_ratio, float(torch.where(held, r, torch.full_like(r, math.inf)).min()))
        vh = viol & held
        nv = int(vh.sum())
        if nv:
            self.violations += nv
            bad = (r - 1.0).abs() if self.kind == "eq" else r
            bad = torch.where(vh, bad, torch.full_like(bad, -math.inf))
            j = int(bad.argmax())
            badness = float(bad[j])
            is_first = self.first_violation_step is None
            is_worse = badness > self.worst_badness
            if is_first:
                self.first_violation_step = step
            if payload is not None and (is_first or is_worse):
                snap = payload()
                snap.update({"claim": self.cid, "ratio": float(r[j]), "lhs": float(ev.lhs[j]),
                             "rhs": float(ev.rhs[j]), "instance": j})
                if is_first and out_dir is not None:
                    self.first_file = _save_npz(out_dir, f"{self.cid}_first.npz", snap)
                if is_worse:
                    self.worst = snap
            self.worst_badness = max(self.worst_badness, badness)
        return rmax

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, d: dict) -> None:
        self.__dict__.update(d)


def _save_npz(out_dir: Path, name: str, snap: dict) -> str:
    d = out_dir / "counterexamples"
    d.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in snap.items()}
    runio.atomic_write(d / name, lambda f: np.savez_compressed(f, **arrays))
    return str(Path("counterexamples") / name)


class CheckSuite:
    """All claim trackers of a run; ``evaluate_step`` is called once per step by the engine."""

    def __init__(self, tau: float, B: int, C: int, T: int, delta: float, consts: dict, options: dict,
                 out_dir: Path | None, symmetric: bool):
        self.tau, self.B, self.C, self.T, self.delta = tau, B, C, T, delta
        self.consts = consts
        self.options = options
        self.out_dir = out_dir
        self.symmetric = symmetric
        self.trackers = {cid: ClaimTracker(cid) for cid in CLAIM_ORDER}
        self.lemma5: dict | None = None
        self.stats = {"steps": 0, "steps_with_dup_rows": 0, "steps_event_false": 0, "steps_logits_out": 0,
                      "anchors_invalid_nscl": 0, "mean_neg_frac": 0.0, "max_row_mult": 1}
        # Thm1_mult trajectory (sharp, realised row multiplicities) and the paper premise (THM1_PREMISE) so far
        self.mult_bound = 0.0
        self.premise_paper_all = True

    def evaluate_step(self, st, step: int, eta: float, drift_t: float, drift_next: float, batch,
                      item_labels: Tensor) -> dict:
        claims, info = step_claims(st, self.consts, self.C, drift_t, drift_next, eta)
        payload = lambda: snapshot(st, step, eta, drift_t, drift_next, batch, self.consts, self.C)  # noqa: E731
        row = {}
        for cid in _STEP_CLAIMS:
            r = self.trackers[cid].record(step, claims[cid], payload, self.out_dir)
            row[f"ratio_{cid}"] = r
        s = self.stats
        s["steps"] += 1
        s["steps_with_dup_rows"] += int(info["row"]["dup_anchor_rows"] > 0)
        s["steps_event_false"] += int(not info["row"]["event_ok"])
        s["steps_logits_out"] += int(info["row"]["logits_ok_frac"] < 1.0)
        s["anchors_invalid_nscl"] += info["row"]["n_invalid_nscl"]
        s["mean_neg_frac"] += (float(claims["Cor3"].lhs.mean()) - s["mean_neg_frac"]) / s["steps"]
        s["max_row_mult"] = max(s.get("max_row_mult", 1), info["row"]["row_mult_max"])
        self.mult_bound = (1.0 + eta * info["mult_alpha"]) * self.mult_bound + eta * info["mult_gamma"]
        self.premise_paper_all = self.premise_paper_all and info["premise_step_paper"]
        info["row"]["bound_thm1_mult"] = self.mult_bound
        info["row"].update(row)
        return info

    def evaluate_trajectory(self, step: int, drift: float, closed: float, unrolled: float, gap_bound: float,
                            premise_all: bool) -> None:
        paper = premise_all and self.premise_paper_all
        self.trackers["Thm1"].record(step, _eval(drift, closed, paper), None, None)
        self.trackers["Thm1_unrolled"].record(step, _eval(drift, unrolled, paper), None, None)
        self.trackers["Thm1_mult"].record(step, _eval(drift, self.mult_bound, premise_all), None, None)
        self.trackers["Thm1_gap"].record(step, _eval(drift, gap_bound), None, None)

    def evaluate_eval_point(self, ev: dict, premise_all: bool) -> None:
        step = ev["step"]
        paper = premise_all and self.premise_paper_all
        # Cors. 1-2 (tight cosine) with the Thm1_mult drift bound, valid with duplicated rows
        ev["bound_mult"] = self.mult_bound if step > 0 else 0.0
        ev["cka_lb_mult"] = cka_certificate_sharp(ev["bound_mult"], ev["k_cl_fro"]).lower_bound
        ev["rsa_lb_mult"] = rsa_certificate_sharp(ev["bound_mult"], ev["n_pairs"], ev["sigma_d"],
                                                  symmetric=self.symmetric).lower_bound
        for metric, pre in (("cka", "Cor1"), ("rsa", "Cor2")):
            value = ev[metric]
            for suffix, key, prem in (("", "paper", paper), ("_sharp", "sharp", paper), ("_mult", "mult", premise_all),
                                      ("_meas", "meas", True), ("_meas_sharp", "meas_sharp", True),
                                      ("_exact", "exact", True)):
                lb = ev[f"{metric}_lb_{key}"]
                self.trackers[pre + suffix].record(step, _eval(value, lb, prem, ratio=_deficit(value, lb)), None, None)

    def finalize_lemma5(self, n: int, replacement: bool, trials: int, seed: int) -> None:
        tr = self.trackers["L5"]
        if trials == 0:
            self.lemma5 = {"reason": "lemma5_trials = 0"}
            return
        res = lemma5_monte_carlo(self.C, self.B, self.T, delta=self.delta, n_trials=trials,
                                 rng=np.random.default_rng(seed), anchor_slot="included",
                                 replacement=replacement, N=None if replacement else n)
        self.lemma5 = res
        # exact probability vs the stated bound, and the Monte-Carlo estimate's lower CI vs the bound
        tr.evaluated = trials
        tr.max_ratio = float(res["ratio_exact"])
        tr.lhs_at_max, tr.rhs_at_max = float(res["p_exists_exact"]), float(res["bound_paper"])
        tr.violations = int((not res["holds"]) or bool(res["violated"]))

    # -- checkpointing
    def state_dict(self) -> dict:
        return {"trackers": {k: v.state_dict() for k, v in self.trackers.items()}, "stats": dict(self.stats),
                "lemma5": self.lemma5, "mult_bound": self.mult_bound, "premise_paper_all": self.premise_paper_all}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d["trackers"].items():
            self.trackers[k].load_state_dict(v)
        self.stats = dict(d["stats"])
        self.lemma5 = d["lemma5"]
        self.mult_bound = d.get("mult_bound", 0.0)
        self.premise_paper_all = d.get("premise_paper_all", True)

    # -- report
    def _dynamic_note(self, cid: str) -> str:
        s = self.stats
        if cid in ("L1", "L2", "L2_CL", "L3_batch"):
            return (f"{s['steps_with_dup_rows']}/{s['steps']} steps had anchors sharing a row"
                    + ("; symmetric Sigma couples every pair of anchor blocks" if self.symmetric else ""))
        if cid in ("L8", "L8_A", "Thm1_rec", "Thm1", "Thm1_unrolled", "Cor1", "Cor1_sharp", "Cor2", "Cor2_sharp"):
            pre = (f"{s['steps_with_dup_rows']}/{s['steps']} steps had anchors sharing a row"
                   + ("; symmetric Sigma" if self.symmetric else "") + " (outside the proved premise: see the _mult "
                   "forms); ")
        else:
            pre = ""
        if cid in ("L4", "L6", "L6_l2", "Cor3_mass", "L8", "L8_A", "Thm1_rec", "Thm1", "Thm1_unrolled", "Cor1",
                   "Cor1_sharp", "Cor2", "Cor2_sharp", "L8_mult", "Thm1_rec_mult", "Thm1_mult", "Cor1_mult",
                   "Cor2_mult"):
            extra = "" if math.isfinite(self.consts["Delta"]) else "; Delta undefined (eps >= 1 - 1/C): vacuous"
            if cid.endswith("_mult"):
                extra += f"; max row multiplicity {s.get('max_row_mult', 1)}"
            return pre + (f"{s['steps_logits_out']}/{s['steps']} steps had logits outside [-1, 1]; "
                    f"{s['steps_event_false']}/{s['steps']} steps had the Cor. 3 event false" + extra)
        if cid in ("Cor3", "Cor3_excl"):
            return (f"mean negative fraction (own slot counted) {s['mean_neg_frac']:.4f} vs 1 - 1/C = "
                    f"{1 - 1 / self.C:.4f}; bound 1 - 1/C - eps = {self.consts['frac_bound']:.4f}")
        if cid == "L5":
            if self.lemma5 is None:
                return "not evaluated (run incomplete)"
            if "reason" in self.lemma5:
                return self.lemma5["reason"]
            r = self.lemma5
            return (f"exact P = {r['p_exists_exact']:.3g} vs bound T B e^(-2 B eps^2) = {r['bound_paper']:.3g}; "
                    f"Monte Carlo {r['n_trials']} trials p_hat = {r['p_hat']:.3g}; per-anchor exact "
                    f"{r['p_anchor_exact']:.3g} vs the lemma's i.i.d. model {r['p_anchor_paper_model']:.3g}")
        if cid == "L6_identity":
            return f"{s['anchors_invalid_nscl']} anchors without negatives skipped"
        return ""

    def to_json(self) -> dict:
        doc: dict[str, Any] = {}
        for cid in CLAIM_ORDER:
            tr = self.trackers[cid]
            spec = CLAIMS[cid]
            na = spec["note"] == _NA_SIGMA
            ev = tr.evaluated
            holds = None if (ev == 0 or na) else tr.violations == 0
            # a certificate (lower bound) that never exceeded 0 where evaluated certifies nothing: "vacuous"
            vacuous = bool(spec["kind"] == "cert" and ev and holds and tr.max_rhs_held <= 0.0)
            obj = {
                "claim": cid, "paper": spec["paper"], "statement": spec["statement"], "kind": spec["kind"],
                "unit": spec["unit"], "evaluated": ev, "violations": tr.violations,
                "max_ratio": tr.max_ratio if ev else None,
                "step_of_max": tr.step_of_max, "lhs_at_max": tr.lhs_at_max, "rhs_at_max": tr.rhs_at_max,
                "holds": holds, "vacuous": vacuous, "max_lower_bound": tr.max_rhs_held if spec["kind"] == "cert" and ev
                else None, "premise": spec["premise"], "premise_failed": tr.premise_failed,
                "violations_outside_premise": tr.violations_outside,
                "max_ratio_outside_premise": tr.max_ratio_outside if tr.premise_failed else None,
                "first_violation_step": tr.first_violation_step,
                "options": self.options,
                "note": "; ".join(x for x in (spec["note"], self._dynamic_note(cid)) if x),
                "counterexample": {"first": tr.first_file, "worst": None},
                "tolerance": EQ_RTOL if spec["kind"] == "eq" else RTOL,
            }
            if spec["kind"] == "eq":
                obj["min_ratio"] = tr.min_ratio if ev else None
            if tr.last is not None and spec["kind"] in ("le", "cert") and cid.startswith(("Thm1", "Cor")):
                obj["final"] = tr.last
            if cid == "L5" and self.lemma5 is not None and "reason" not in self.lemma5:
                obj["lemma5"] = self.lemma5
            if na:
                obj["evaluated"] = 0
            if tr.worst is not None and self.out_dir is not None:
                obj["counterexample"]["worst"] = _save_npz(self.out_dir, f"{cid}_worst.npz", tr.worst)
            doc[cid] = obj
        doc["_meta"] = {"rtol": RTOL, "eq_rtol": EQ_RTOL, "constants": self.consts, "stats": self.stats,
                        "ratio_convention": "ratio <= 1 means the claim holds (see simulate/claims.py)"}
        return doc


def _deficit(value: float, lb: float) -> float:
    """(1 - value) / (1 - lb): <= 1 iff value >= lb (for lb < 1)."""
    if lb >= 1.0:
        return 0.0 if value >= 1.0 else math.inf
    return max(0.0, 1.0 - value) / (1.0 - lb) if value <= 1.0 else 0.0

