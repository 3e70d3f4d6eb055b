"""Tiny synthetic result sets for the figures tests: run directories written directly (no training), with the
same files and columns as experiments.bound_vs_empirical / simulate.sigma_descent, and values that follow a
known formula so that a test can read them back from the figures' CSV outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from runio import write_csv

BASE = {"dataset": "synthetic", "arch": "mlp", "classes": 4, "class_seed": 0, "tau": 0.5, "batch_size": 16,
        "lr": 0.1, "epochs": 3, "losses": ["CL", "NSCL"], "init_seed": 0, "order_seed": 1, "aug_seed": 2,
        "label_noise": 0.0, "label_noise_seed": 0, "out": "x", "width": 0.05, "proj_hidden": 8, "proj_dim": 6}


def cka_value(C: int, tau: float, B: int, lr: float, epoch: float, noise: float = 0.0, seed: int = 0) -> float:
    """The synthetic CL-NSCL CKA: rises with C and tau, falls with epoch and with lr*B (distinct per input)."""
    return 1.0 - 0.2 / C - 0.02 * epoch / tau - 0.001 * lr * B - 0.3 * noise - 0.001 * seed


def test_lossgap(C: int, tau: float, epoch: int) -> dict:
    """theory.csv's test-batch loss-gap columns (lossgap_test_*): the train values + TEST_OFFSET, gap 0.9x."""
    bound = math.log1p(math.exp(2 / tau) / (C - 1))
    gap = 0.9 * bound * (0.5 - 0.05 * epoch)
    nscl = 3.0 - 0.2 * epoch + TEST_OFFSET
    return {"lossgap_test_loss_kind_clmodel": nscl + gap, "lossgap_test_loss_nscl_clmodel": nscl,
            "lossgap_test_gap_clmodel": gap, "lossgap_test_bound_balanced_clmodel": bound,
            "lossgap_test_loss_nscl_nsclmodel": nscl - 0.1}


TEST_OFFSET = 0.4


def encoder_run(d: Path, steps_per_epoch: int = 2, test_batch: bool = True, **changes) -> Path:
    """Write one encoder run directory with config ``BASE | changes``; returns its path. ``test_batch=False``:
    theory.csv without the test-batch loss-gap columns (a run made before bound_vs_empirical recorded them)."""
    cfg = {**BASE, **changes}
    d.mkdir(parents=True)
    C, tau, B, lr = int(cfg["classes"]), float(cfg["tau"]), int(cfg["batch_size"]), float(cfg["lr"])
    noise, seed = float(cfg["label_noise"]), int(cfg["init_seed"])
    losses = list(cfg["losses"])
    cl = "DCL" if "DCL" in losses else "CL"
    E = int(cfg["epochs"])
    metrics, models, theory, steps = [], [], [], []
    for ep in range(E + 1):
        step = ep * steps_per_epoch
        for split in ("train", "test"):
            for j, other in enumerate(m for m in losses if m != cl):
                v = cka_value(C, tau, B, lr, ep, noise, seed) - 0.1 * j - (0.01 if split == "test" else 0.0)
                metrics.append({"epoch": ep, "step": step, "sum_eta": lr * step, "split": split,
                                "pair": f"{cl}-{other}", "model_a": cl, "model_b": other, "cka": v, "rsa": v - 0.05,
                                "weight_gap_mean": 0.1 * ep * (j + 1), "weight_gap_total": 0.2 * ep,
                                "cka_lb": 0.5 - 0.2 * ep if other == "NSCL" and split == "train" else None,
                                "cka_lb_sharp": 0.8 - 0.1 * ep if other == "NSCL" and split == "train" else None,
                                "rsa_lb": 0.3, "rsa_lb_sharp": 0.6})
        for m in losses:
            models.append({"epoch": ep, "step": step, "model": m, "nccc": 0.5 + 0.01 * ep,
                           "linear_probe": 0.6 + 0.01 * ep if ep == E else None, "train_loss": 2.0 - 0.1 * ep})
        gap = math.log1p(math.exp(2 / tau) / (C - 1)) * (0.5 - 0.05 * ep)
        theory.append({"epoch": ep, "step": step, "kind": cl, "lossgap_loss_kind_clmodel": 3.0 - 0.2 * ep + gap,
                       "lossgap_loss_nscl_clmodel": 3.0 - 0.2 * ep, "lossgap_gap_clmodel": gap,
                       "lossgap_bound_balanced_clmodel": math.log1p(math.exp(2 / tau) / (C - 1)),
                       "lossgap_loss_nscl_nsclmodel": 2.9 - 0.2 * ep, "thm2_e": 0.1 * ep, "thm2_bound": 1.0 * ep,
                       "lem7_lhs_at_cl": 0.01, "lem7_bound_at_cl": 0.1 if ep == E else None})
        if test_batch:
            theory[-1].update(test_lossgap(C, tau, ep))
    for t in range(E * steps_per_epoch):
        steps.append({"step": t, "epoch": t // steps_per_epoch, "eta": lr, **{f"loss_{m}": 2.0 for m in losses}})
    write_csv(d / "metrics.csv", metrics)
    write_csv(d / "models.csv", models)
    write_csv(d / "theory.csv", theory)
    write_csv(d / "steps.csv", steps)
    resolved = {"C": C, "steps_per_epoch": steps_per_epoch, "total_steps": E * steps_per_epoch, "contrastive": cl}
    (d / "config.json").write_text(json.dumps({"config": cfg, "resolved": resolved}))
    return d


SIGMA_BASE = {"n": 16, "classes": 4, "batch_size": 8, "tau": 1.0, "eta": 1.0, "steps": 20, "delta": 0.05,
              "views": "slots", "view_slots": 2, "sigma": "ordered", "replacement": True, "project": "clip",
              "init_seed": 1, "batch_seed": 2, "aug_seed": 3, "checks": False, "eval_every": 5}


def sigma_gap(C: int, tau: float, B: int, eta: float, step: int, seed: int = 1) -> float:
    """The synthetic 1 - CKA of a Sigma-space run (shrinks with C, tau, B; grows with steps and eta)."""
    return 1e-6 * (step + 1) * eta / (C * tau * B) * (1 + 0.01 * seed)


def sigma_run(d: Path, **changes) -> Path:
    cfg = {**SIGMA_BASE, **changes}
    d.mkdir(parents=True)
    C, tau, B, eta = int(cfg["classes"]), float(cfg["tau"]), int(cfg["batch_size"]), float(cfg["eta"])
    T, ev, seed = int(cfg["steps"]), int(cfg["eval_every"]), int(cfg["init_seed"])
    write_csv(d / "steps.csv", [{"step": t, "eta": eta, "drift_fro": 0.01 * (t + 1), "bound_thm1_unrolled": 1.0 * (t + 1),
                                 "bound_thm1_closed": 2.0 * (t + 1)} for t in range(T)])
    evals = []
    for s in sorted({0, T, *range(ev, T + 1, ev)} if ev else {0, T}):
        g = sigma_gap(C, tau, B, eta, s, seed)
        evals.append({"step": s, "cka": 1 - g, "rsa": 1 - 2 * g, "cka_lb_paper": 0.3, "cka_lb_sharp": 0.8})
    write_csv(d / "evals.csv", evals)
    (d / "checks.json").write_text("{}")
    (d / "config.json").write_text(json.dumps({"config": cfg, "resolved": {}}))
    return d
