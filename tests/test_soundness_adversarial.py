"""Issue 6: simulate.adversarial on the sharper forms (Lem. 6 sharpened, Lem. 8 with Delta', with and without
row multiplicities), its reuse of theory.constants, and the reproduce path with diag="fixed"."""

import json
import math

import numpy as np
import pytest

from simulate import adversarial as adv
from theory import bounds as bd
from theory import constants


def test_delta_from_eps_is_the_constants_implementation():
    assert adv.delta_from_eps(3, 0.1, 0.7) == constants.delta_from_eps(3, 0.1, 0.7)
    # one formula: delta_c_delta == delta_from_eps(eps_b_delta)
    eps = constants.eps_b_delta(64, 10, 0.1)
    assert constants.delta_c_delta(4, 64, 10, 0.1, 0.5) == constants.delta_from_eps(4, eps, 0.5)
    Delta = 2 * math.exp(2 / 0.5) * (0.25 + eps) / (0.75 - eps)  # by hand
    assert constants.delta_from_eps(4, eps, 0.5) == pytest.approx(Delta, rel=1e-14)
    with pytest.raises(ValueError, match="eps must be < 1 - 1/C"):
        constants.delta_from_eps(2, 0.5, 1.0)


def test_reproduce_carries_diag_fixed(tmp_path):
    res = adv.run_adversarial(claims=("L3", "L6"), B=4, C=2, taus=(0.5,), compositions=("duplicates",),
                              sigmas=("ordered",), diag="fixed", restarts=1, seed=1, out_dir=tmp_path, quiet=True)
    doc = json.loads((tmp_path / "adversarial.json").read_text())
    arrays = dict(np.load(tmp_path / "adversarial.npz"))
    assert len(doc["records"]) == len(res) > 0 and all(r["diag"] == "fixed" for r in doc["records"])
    for rec in doc["records"]:
        r, _, _, anchor = adv.reproduce(rec, arrays)  # IndexError before the fix (diag dropped)
        assert r == pytest.approx(rec["ratio"], rel=1e-12, abs=1e-15) and anchor == rec["anchor"]


def test_sharper_forms_hold_and_paper_constants_fail_on_shared_rows():
    res = adv.run_adversarial(claims=("L6", "L8"), B=4, C=2, taus=(0.1,), compositions=("duplicates",),
                              sigmas=("ordered",), restarts=1, seed=0, quiet=True)
    by = {r.variant: r for r in res}
    # 'duplicates': two anchors on every row (m = 2): outside the premise of the paper-constant forms
    prob = adv.build_problem(adv.make_batch("duplicates", 4, 2))
    assert not adv.paper_premise(prob)
    assert bd.anchor_row_multiplicity(2 * np.asarray(prob.batch.sample_ids)) == (2, 8, 4)
    for v in ("A_sharp", "full_sharp"):
        assert not by[v].in_premise and by[v].ratio > 1.2  # found: the paper's 1/(tau sqrt B) is exceeded
    for v in ("A_mult", "full_mult", "l1_sharp", "l2_sharp"):
        assert by[v].in_premise and by[v].holds and by[v].ratio > 0.5, (v, by[v].ratio)
    s = {x["claim"]: x for x in adv.summarize(res)}
    assert s["L8.A_sharp"]["holds"] is None and s["L8.A_sharp"]["max_ratio_outside_premise"] > 1.2
    assert s["L8.A_mult"]["holds"] is True


@pytest.mark.parametrize("sigma,sym_grad,kappa", [("ordered", "sum", 1.0), ("symmetric", "sum", 2.0),
                                                  ("symmetric", "mean", 1.0)])
def test_hessian_mult_objective_rhs(sigma, sym_grad, kappa):
    prob = adv.build_problem(adv.make_batch("duplicates", 6, 2), sigma=sigma, sym_grad=sym_grad)
    (obj,) = [o for o in adv.claim_objectives("L2", prob) if o.variant == "hessian_mult" and o.kind == "NSCL"]
    (ref,) = [o for o in adv.claim_objectives("L2", prob) if o.variant == "hessian" and o.kind == "NSCL"]
    x = np.random.default_rng(0).uniform(-1, 1, prob.d)
    r, lhs, rhs, _ = adv.evaluate_objective(obj, prob, x, None, 0.3, None)
    _, lhs_ref, rhs_ref, _ = adv.evaluate_objective(ref, prob, x, None, 0.3, None)
    assert lhs == lhs_ref and rhs == pytest.approx(kappa * 2 * rhs_ref, rel=1e-14)  # m = 2
    assert r <= 1.0
