"""Measured CL-NSCL alignment of real encoders vs the paper's certified bounds (Thm. 1, Cors. 1-2, Lem. 7, Thm. 2).

``python -m experiments.bound_vs_empirical [--config run.toml] [flags]`` trains CL and NSCL (``--losses`` adds
SCL, CE, DCL) in lockstep (experiments.train.LockstepTrainer: same init, batches, augmentations) and at every
evaluation measures, on a fixed train reference set and a fixed test reference set:

* CKA / RSA of Sec. 3 (cosine Gram of the projections; also of the backbone features), Kornblith linear CKA on
  raw backbone features (+ debiased) for every pair (CL, X) and any ``--pairs``;
* the certified lower bounds of Cors. 1-2 for the CL-NSCL pair, evaluated with this run's sum of actual step
  sizes sum_{t<s} eta_t, B, tau, C, delta, horizon T and the measured ||K^CL||_F and sigma_D: the paper's
  (1 - rho)/(1 + rho) with the Eq. 2 drift bound, and the sharper sqrt(1 - rho^2) with the exact-product drift
  bound and the sharpened Lem. 6 (theory.bounds); also the measured network drift ||Sigma^CL - Sigma^NSCL||_F;
* relative weight gaps (Sec. 5.1), NCCC and linear-probe accuracy per model (Tab. 1);
* the CL-NSCL loss gap with the companion paper's bound on a train reference batch (``lossgap_*``) and a test
  reference batch (``lossgap_test_*``: same construction on the test reference set, own augmentation seed);
* App. B on the real network: G and beta (empirical LOWER estimates of the suprema), Lem. 7 on the last
  training batch, Thm. 2 (||w^CL - w^NSCL|| vs its bound with this run's eta schedule);
* ``--surrogate``: the Sigma-space surrogate of Eq. 1 run alongside (App. C), started from the encoder's own
  initial Sigma over the training set (two fixed augmented view slots per image) and driven by the trainer's
  batches and step sizes: ||Sigma_network - Sigma_surrogate||_F over time and the Eq. 9 bound with estimated
  constants (or the list of missing ones).

Thm. 1 and Cors. 1-2 are proved for the Sigma-space surrogate, NOT for the network: on the network the
"certified" curves are the paper's formulas evaluated with the run's numbers, and every figure says so.

Outputs in ``--out``: config.json, manifest.json (seeds, versions, git revision, input digests), metrics.csv
(one row per evaluation x split x pair), models.csv (per model: NCCC, linear probe, loss), theory.csv (G, beta,
Lem. 7, Thm. 2, loss gap), weight_gap.csv (per layer), steps.csv (per step: eta, losses), surrogate.csv,
metrics.json (all of it), alignment.png/.pdf and theory.png/.pdf (+ surrogate.png/.pdf). A bad config is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from runio import command_line, package_versions, read_json, write_csv, write_json
from runio.cli import fail
from runio.outdir import OutDirLock
from theory.bounds import (
    appc_eq7_unrolled,
    appc_eq9_bound,
    cka_certificate_sharp,
    cor1_cka_bound,
    cor2_rsa_bound,
    lem6_l2_sharp,
    anchor_row_multiplicity,
    rsa_certificate_sharp,
    thm1_bound_from_delta,
    thm1_unrolled_multiplicity,
    thm2_bound_from_delta,
)
from theory.constants import delta_c_delta, eps_b_delta
from theory.alignment_gram import cka_gram

from . import measure as ms
from .config import RunConfig, parse_cli
from .data import ImageDataset, class_subset, fixed_subset, load_dataset
from .run_record import (
    CKPT_NAME,
    RESUME_MUTABLE_KEYS,
    STATUS_NAME,
    WEIGHTS_FINAL,
    WEIGHTS_INIT,
    check_resume,
    checkpoint_payload,
    load_run_checkpoint,
    restore_run,
    run_status,
    save_run_checkpoint,
    save_weights,
    wants_weights,
    write_status,
)
from .sigma_surrogate import MAX_SURROGATE_ITEMS, SigmaSurrogate

__all__ = ["run_experiment", "run_status", "check_resume", "RESUME_MUTABLE_KEYS", "prepare", "load_data", "format_table", "write_csv", "write_json", "main", "THM1_NOTE",
           "MAX_SURROGATE_ITEMS"]

THM1_NOTE = "Thm 1 is proved for the Σ-space surrogate, not for the network"


# ----------------------------------------------------------------------------------------------------------
# setup
def load_data(cfg: RunConfig) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) datasets of the run, restricted to the C' classes if ``cfg.classes`` is set."""
    if cfg.dataset == "synthetic":
        base = cfg.classes if cfg.classes is not None and cfg.classes > 10 else 10
        kw = dict(num_classes=base, size=cfg.image_size, seed=cfg.data_seed)
        train = load_dataset("synthetic", split="train", n_per_class=cfg.n_per_class, **kw)
        test = load_dataset("synthetic", split="test", n_per_class=cfg.test_per_class, **kw)
    else:
        train = load_dataset(cfg.dataset, cfg.data_root, split="train")
        test = load_dataset(cfg.dataset, cfg.data_root, split="test")
    if cfg.classes is not None and cfg.classes != train.num_classes:
        train = class_subset(train, cfg.classes, cfg.class_seed)
        test = class_subset(test, cfg.classes, cfg.class_seed)
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ValueError(f"train_size must be <= the training set size {len(train)}, got train_size={cfg.train_size}")
        train = fixed_subset(train, cfg.train_size, cfg.data_seed)
    if train.num_classes < 2:
        raise ValueError(f"the training set needs >= 2 classes for NSCL, got {train.num_classes}")
    return train, test


class _Setup:
    """Everything ``run_experiment`` needs, built (and validated) before any training step."""

    def __init__(self, cfg: RunConfig) -> None:
        from .lockstep import LockstepTrainer
        from .train_config import TrainConfig

        self.cfg = cfg
        self.train, self.test = load_data(cfg)
        if cfg.ref_train > len(self.train):
            raise ValueError(f"ref_train must be <= the training set size {len(self.train)}, got ref_train={cfg.ref_train}")
        if cfg.ref_test > len(self.test):
            raise ValueError(f"ref_test must be <= the test set size {len(self.test)}, got ref_test={cfg.ref_test}")
        self.ref_train = fixed_subset(self.train, cfg.ref_train, cfg.ref_seed)
        self.ref_test = fixed_subset(self.test, cfg.ref_test, cfg.ref_seed)
        self.tcfg = TrainConfig(**cfg.train_config_kwargs())
        self.trainer = LockstepTrainer(self.tcfg, self.train, quiet=cfg.quiet)
        tr = self.trainer
        self.C = self.train.num_classes
        self.B = cfg.batch_size
        self.T = tr.total_steps
        self.eval_every = cfg.eval_every or tr.steps_per_epoch
        # evaluation steps of LockstepTrainer.fit: 0, every eval_every steps, and the end
        self.eval_steps = sorted(set([0, self.T] + list(range(self.eval_every, self.T + 1, self.eval_every))))
        n_ev = len(self.eval_steps)
        if cfg.theory_evals == 0 or cfg.theory_evals >= n_ev:
            self.heavy_steps = set(self.eval_steps)
        else:
            pick = np.unique(np.round(np.linspace(0, n_ev - 1, max(cfg.theory_evals, 2))).astype(int))
            self.heavy_steps = {self.eval_steps[i] for i in pick}
        self.contrastive = cfg.contrastive
        self.pairs = cfg.pair_list()
        try:
            self.Delta: float | None = delta_c_delta(self.C, self.B, self.T, cfg.delta, cfg.tau)
            self.Delta_note = ""
        except ValueError as e:
            self.Delta = None
            self.Delta_note = str(e)
        self.eps = eps_b_delta(self.B, self.T, cfg.delta)
        # reference batch: ref_batch samples of the train reference set with two fixed augmented views
        rb = fixed_subset(self.ref_train, cfg.ref_batch, cfg.ref_seed + 1)
        g = torch.Generator().manual_seed(cfg.theory_seed)
        self.ref_views = torch.cat([tr.augment(rb.images, g), tr.augment(rb.images, g)]).float()
        self.ref_labels = rb.labels.clone()
        # test reference batch (loss gap on held-out images): min(ref_batch, ref_test) samples of the test reference
        # set, same construction with its own fixed augmentation seed theory_seed + 1, so the train batch is unchanged
        rbt = fixed_subset(self.ref_test, min(cfg.ref_batch, len(self.ref_test)), cfg.ref_seed + 1)
        gt = torch.Generator().manual_seed(cfg.theory_seed + 1)
        self.ref_views_test = torch.cat([tr.augment(rbt.images, gt), tr.augment(rbt.images, gt)]).float()
        self.ref_labels_test = rbt.labels.clone()
        self.thm2_exact = (cfg.optimizer == "sgd" and cfg.momentum == 0 and cfg.weight_decay == 0
                           and cfg.grad_clip == 0)
        self.surrogate = SigmaSurrogate(self) if cfg.surrogate else None


# ----------------------------------------------------------------------------------------------------------
# the run
def prepare(cfg: RunConfig) -> _Setup:
    """Load data, build the trainer and reference sets; every ValueError here is a bad configuration."""
    return _Setup(cfg)


def _drift_bounds(s: _Setup, eta: np.ndarray, state: dict | None = None) -> tuple[float | None, float | None]:
    """(Eq. 2 drift bound, sharpest drift bound) after the steps ``eta`` (horizon T of the run in Delta).

    The sharp bound is theory.bounds.thm1_unrolled_multiplicity with the realised anchor-row multiplicities of
    each batch (``state["row_mult"]``, ``state["row_mult_sq"]``, recorded by the step hook): equal to
    thm1_bound_sharp when every anchor has its own row (m = 1, the premise of the sharp form; true here by
    construction, batches are slices of an epoch permutation, and checked at run time), valid otherwise.
    """
    if s.Delta is None:
        return None, None
    if eta.size == 0:
        return 0.0, 0.0
    B, tau = s.B, s.cfg.tau
    T = eta.size
    m = (state or {}).get("row_mult", [])[:T]
    q = (state or {}).get("row_mult_sq", [])[:T]
    if len(m) != T:  # no per-step record (e.g. a caller without the hook): batches are distinct by construction
        m, q = [1] * T, [B] * T
    return (thm1_bound_from_delta(eta, s.Delta, B, tau),
            thm1_unrolled_multiplicity(eta, lem6_l2_sharp(s.Delta), B, tau, m, q))


def _frob_drift(za: Tensor, zb: Tensor) -> float:
    """||Sigma(za) - Sigma(zb)||_F from features: ||U^T U||^2 + ||V^T V||^2 - 2 ||U^T V||^2 (float64)."""
    U = torch.nn.functional.normalize(za.to(torch.float64), dim=1, eps=0.0)
    V = torch.nn.functional.normalize(zb.to(torch.float64), dim=1, eps=0.0)
    sq = (float(torch.linalg.matrix_norm(U.T @ U)) ** 2 + float(torch.linalg.matrix_norm(V.T @ V)) ** 2
          - 2.0 * float(torch.linalg.matrix_norm(U.T @ V)) ** 2)
    return math.sqrt(max(sq, 0.0))


def run_experiment(cfg: RunConfig, resume: bool = False, setup: _Setup | None = None) -> dict[str, Any]:
    """Train, measure, write every output file into ``cfg.out``; returns the metrics.json document.

    resume=False: a fresh run (a stale ``ckpt.pt`` / ``status.json`` in ``cfg.out`` is removed first).
    resume=True: see :func:`check_resume`; a finished run is not repeated (its metrics.json is returned), a
    checkpoint is continued so that every result file equals an uninterrupted run's (timings aside), and with
    no checkpoint the run starts from step 0. Checkpoints: ``cfg.out/ckpt.pt`` every ``cfg.checkpoint_every``
    epochs and on SIGINT / SIGTERM (then the trainer's TrainingInterrupted propagates).
    ``status.json`` reads "running" until every file is written, then "done" (:func:`run_status`).
    """
    t_start = time.perf_counter()
    out = Path(cfg.out)
    mode = check_resume(cfg) if resume else "fresh"
    if mode == "done":
        return read_json(out / "metrics.json", nonfinite=True)
    ck = load_run_checkpoint(out / CKPT_NAME) if mode == "resume" else None
    s = setup if setup is not None else prepare(cfg)
    tr = s.trainer
    out.mkdir(parents=True, exist_ok=True)
    if ck is None:
        for stale in (out / CKPT_NAME, out / STATUS_NAME):
            stale.unlink(missing_ok=True)
    write_status(out, "running")
    theory_gen = torch.Generator().manual_seed(cfg.theory_seed)
    state: dict[str, Any] = {
        "eta": [], "metric_rows": [], "model_rows": [], "theory_rows": [], "gap_rows": [], "surrogate_rows": [],
        "G_run": 0.0, "beta_run": 0.0, "last_batch": None, "prev": {}, "xi": {n: [] for n in cfg.losses},
        "row_mult": [], "row_mult_sq": [],
        "notes": [], "eval_s": 0.0, "hook_s": 0.0,
    }
    if s.Delta is None:
        state["notes"].append(f"Delta_{{C,delta}} undefined, all certified bounds are vacuous: {s.Delta_note}")
    if not s.thm2_exact:
        state["notes"].append("Thm 2 assumes plain SGD; this run uses "
                              f"optimizer={cfg.optimizer}, momentum={cfg.momentum}, weight_decay={cfg.weight_decay}, "
                              f"grad_clip={cfg.grad_clip}: the Thm 2 comparison is indicative only")
    state["notes"].append("training steps use BatchNorm in train mode; G, beta, Lem 7, L_Sigma, M_Sigma use the "
                          "network in eval mode (a per-sample function f_w) in float64")
    state["notes"].append("batches are drawn without replacement within an epoch (experiments.train), the paper's "
                          "Cor. 3 samples with replacement")
    if s.surrogate is not None and cfg.anchors != "first":
        state["notes"].append("surrogate: the Sigma-space loss has the paper's B anchors, the network was trained "
                              f"with anchors={cfg.anchors!r} (2B anchors); use --anchors first for a like-for-like run")
    if s.surrogate is not None and s.contrastive != "CL":
        state["notes"].append("surrogate: the Sigma-space run uses the CL loss; the network's contrastive model is DCL")
    if cfg.label_noise > 0:
        state["notes"].append(f"random-label control: label_noise={cfg.label_noise} (seed {cfg.label_noise_seed}): "
                              "NSCL / SCL / CE trained on randomised labels; CKA / RSA, NCCC, linear probe and the "
                              "reference-batch loss gap use the true labels; Lem 7 and beta use the last training "
                              "batch with the labels training saw")
    track_prev = cfg.theory or (s.surrogate is not None and cfg.surrogate_constants)
    if track_prev:
        state["prev"] = {n: {k: p.detach().clone() for k, p in tr.models[n].named_parameters()} for n in cfg.losses}

    def on_step(trainer, t: int, idx: Tensor, views: Tensor) -> None:
        t0 = time.perf_counter()
        _on_step(trainer, t, idx, views)
        state["hook_s"] += time.perf_counter() - t0

    def _on_step(trainer, t: int, idx: Tensor, views: Tensor) -> None:
        rec = trainer.history[-1]
        eta_t = float(rec["lr"])
        state["eta"].append(eta_t)
        mult = anchor_row_multiplicity(idx.detach().cpu().numpy())  # premise of Thm. 1 sharp: m = 1
        state["row_mult"].append(mult.m)
        state["row_mult_sq"].append(mult.q)
        state["last_batch"] = (views.detach(), trainer.labels[idx.to(trainer.labels.device)].detach().cpu())
        sur = s.surrogate
        if sur is not None:
            for n in (s.contrastive, "NSCL"):
                sq = sum(float((p.grad.detach().double() ** 2).sum()) for p in trainer.models[n].parameters()
                         if p.grad is not None)
                state["xi"][n].append(sq)
            sur.step(idx, eta_t)
            nxt = t + 1
            if cfg.surrogate_constants and nxt in s.heavy_steps:
                for n in (s.contrastive, "NSCL"):
                    tm = ms.theory_copy(trainer.models[n]).cpu()
                    w0 = {k: v.to("cpu", torch.float64) for k, v in state["prev"][n].items()}
                    w1 = {k: p.detach().to("cpu", torch.float64) for k, p in tm.named_parameters()}
                    rem = ms.taylor_remainder(tm, sur.sub_items, w0, w1)
                    rem.update({"model": n, "step": nxt})
                    sur.remainders.append(rem)
                    sur.M_hat[n] = max(sur.M_hat.get(n, 0.0), rem["M_hat"])
        if track_prev:
            cur = dict(trainer.models[s.contrastive].named_parameters())
            names = list(cur)
            state["step_dir"] = _flat_diff({k: v.detach() for k, v in cur.items()}, state["prev"][s.contrastive], names)
            for n in state["prev"]:
                state["prev"][n] = {k: p.detach().clone() for k, p in trainer.models[n].named_parameters()}

    ckpt_path = out / CKPT_NAME
    ckpt_steps = set()
    if cfg.checkpoint_every > 0:
        every = cfg.checkpoint_every * tr.steps_per_epoch
        ckpt_steps = set(range(every, s.T + 1, every))

    def checkpoint() -> Path:
        return save_run_checkpoint(ckpt_path, checkpoint_payload(s, state, theory_gen))

    def on_step_then_checkpoint(trainer, t: int, idx: Tensor, views: Tensor) -> None:
        on_step(trainer, t, idx, views)
        if t + 1 in ckpt_steps and t + 1 not in s.eval_steps:  # else after the evaluation of step t + 1
            checkpoint()

    def on_eval(trainer, epoch: int, step: int) -> None:
        t0 = time.perf_counter()
        _evaluate(s, state, epoch, step, theory_gen)
        _write_tables(out, state)
        state["eval_s"] += time.perf_counter() - t0
        if step in ckpt_steps:
            checkpoint()

    if ck is not None:
        restore_run(s, state, theory_gen, ck, ckpt_path)
    else:
        _write_config(s, state, out)
        if wants_weights(cfg, s):
            save_weights(out / WEIGHTS_INIT, tr.models)
    if tr.step < s.T:  # a checkpoint at the last step: only the files are left to write
        # SIGINT / SIGTERM: after the interrupted step and its hooks (a consistent state) ``checkpoint`` runs,
        # then TrainingInterrupted (exit status 128 + signal) propagates; continue with --resume
        tr.fit(on_step=on_step_then_checkpoint, on_eval=on_eval, eval_every=s.eval_every,
               on_interrupt=checkpoint)
    doc = _finish(s, state, out, t_start)
    if wants_weights(cfg, s):
        save_weights(out / WEIGHTS_FINAL, tr.models)
    ckpt_path.unlink(missing_ok=True)
    write_status(out, "done")
    return doc


def _embed_all(s: _Setup) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
    tr = s.trainer
    return {n: {"train": tr.embed(n, s.ref_train.images), "test": tr.embed(n, s.ref_test.images)}
            for n in s.cfg.losses}


def _evaluate(s: _Setup, state: dict, epoch: int, step: int, theory_gen: torch.Generator) -> None:
    cfg, tr = s.cfg, s.trainer
    eta = np.asarray(state["eta"][:step], dtype=np.float64)
    sum_eta = float(eta.sum())
    emb = _embed_all(s)
    labels = {"train": s.ref_train.labels, "test": s.ref_test.labels}
    drift, drift_sharp = _drift_bounds(s, eta, state)
    heavy = step in s.heavy_steps
    base = {"epoch": epoch, "step": step, "sum_eta": sum_eta}
    # -- weight gaps (split independent)
    gaps = {}
    for a, b in s.pairs:
        wg = ms.weight_gap(tr.models[a], tr.models[b])
        gaps[(a, b)] = (wg, ms.weight_distance(tr.models[a], tr.models[b]))
        for layer, v in wg.per_layer.items():
            state["gap_rows"].append({**base, "pair": f"{a}-{b}", "layer": layer, "gap": v})
    # -- alignment and certificates
    for split in ("train", "test"):
        for a, b in s.pairs:
            (fa, za), (fb, zb) = emb[a][split], emb[b][split]
            row = {**base, "split": split, "pair": f"{a}-{b}", "model_a": a, "model_b": b}
            al = ms.alignment(fa, za, fb, zb)
            notes = al.pop("notes")
            row.update(al)
            wg, wd = gaps[(a, b)]
            row.update({"weight_gap_total": wg.total, "weight_gap_mean": wg.mean, "weight_distance": wd})
            row["drift_measured"] = _frob_drift(za, zb)
            if (a, b) == (s.contrastive, "NSCL"):
                row.update(_certificates(s, za, drift, drift_sharp))
                for m in ("cka", "rsa"):  # a "certificate" the network's measured value falls below
                    for lb in (f"{m}_lb", f"{m}_lb_sharp"):
                        ok = row.get(m) is not None and row.get(lb) is not None
                        row[f"{lb}_violated"] = bool(row[m] < row[lb] - 1e-9) if ok else None
            row["notes"] = notes
            state["metric_rows"].append(row)
    # -- per model: downstream accuracy, loss on the reference batch
    for n in cfg.losses:
        (ftr, _), (fte, _) = emb[n]["train"], emb[n]["test"]
        mrow = {**base, "model": n}
        try:
            mrow["nccc"] = ms.nccc(ftr, labels["train"], fte, labels["test"])
        except ValueError as e:
            mrow["nccc"], mrow["notes"] = None, str(e)
        mrow["linear_probe"] = ms.linear_probe_accuracy(
            ftr, labels["train"], fte, labels["test"], num_classes=s.C, l2=cfg.lp_l2, max_iter=cfg.lp_iters,
            seed=cfg.theory_seed) if heavy else None
        mrow["train_loss"] = tr.history[step - 1]["loss"][n] if step > 0 else None
        state["model_rows"].append(mrow)
    # -- theory on the network
    if cfg.theory and heavy:
        state["theory_rows"].append(_network_theory_row(s, state, base, eta, theory_gen))
    # -- surrogate
    if s.surrogate is not None:
        state["surrogate_rows"].extend(_surrogate_eval(s, state, base, eta, theory_gen, heavy))


def _certificates(s: _Setup, z_cl: Tensor, drift: float | None, drift_sharp: float | None) -> dict[str, Any]:
    st = ms.sigma_stats(z_cl)
    row: dict[str, Any] = {"T": s.T, "B": s.B, "tau": s.cfg.tau, "C": s.C, "delta": s.cfg.delta, "eps": s.eps,
                           "Delta": s.Delta, "drift_bound": drift, "drift_bound_sharp": drift_sharp,
                           "k_cl_fro": st.k_fro, "sigma_d": st.sigma_d, "M": st.M}
    if drift is None or st.k_fro <= 0 or st.sigma_d <= 0:
        row.update({"rho": None, "r": None, "cka_lb": None, "cka_lb_sharp": None, "rsa_lb": None, "rsa_lb_sharp": None,
                    "cka_lb_vacuous": True, "rsa_lb_vacuous": True})
        return row
    c1 = cor1_cka_bound(drift, st.k_fro)
    c1s = cka_certificate_sharp(drift_sharp, st.k_fro)
    c2 = cor2_rsa_bound(drift, st.M, st.sigma_d)
    c2s = rsa_certificate_sharp(drift_sharp, st.M, st.sigma_d)
    row.update({"rho": c1.ratio, "r": c2.ratio, "cka_lb": c1.lower_bound, "cka_lb_sharp": c1s.lower_bound,
                "rsa_lb": c2.lower_bound, "rsa_lb_sharp": c2s.lower_bound,
                "cka_lb_vacuous": c1.vacuous, "cka_lb_sharp_vacuous": c1s.vacuous,
                "rsa_lb_vacuous": c2.vacuous, "rsa_lb_sharp_vacuous": c2s.vacuous})
    return row


def _flat_diff(a: dict[str, Tensor], b: dict[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([(a[n].to("cpu", torch.float64) - b[n].to("cpu", torch.float64)).reshape(-1) for n in names])


def _network_theory_row(s: _Setup, state: dict, base: dict, eta: np.ndarray, gen: torch.Generator) -> dict[str, Any]:
    cfg, tr = s.cfg, s.trainer
    cl = s.contrastive
    if state["last_batch"] is None:  # before the first step: the reference batch
        views, labels = s.ref_views, s.ref_labels
        batch_src = "reference"
    else:
        views, labels = state["last_batch"]
        batch_src = "last_train_batch"
    m_cl = ms.theory_copy(tr.models[cl])
    m_ns = ms.theory_copy(tr.models["NSCL"])
    row: dict[str, Any] = {**base, "batch": batch_src, "kind": cl}
    g_cl = ms.estimate_G(m_cl, views, cfg.g_pairs, gen)
    g_ns = ms.estimate_G(m_ns, views, cfg.g_pairs, gen)
    G_now = max(g_cl.G, g_ns.G)
    state["G_run"] = max(state["G_run"], G_now)
    names = [n for n, _ in m_cl.named_parameters()]
    p_cl = dict(m_cl.named_parameters())
    p_ns = dict(m_ns.named_parameters())
    dirs: dict[str, Tensor] = {}
    for k in range(cfg.beta_dirs):
        dirs[f"random{k}"] = torch.randn(sum(p.numel() for p in p_cl.values()), generator=gen, dtype=torch.float64)
    gap = _flat_diff({k: v.detach() for k, v in p_ns.items()}, {k: v.detach() for k, v in p_cl.items()}, names)
    if float(gap.norm()) > 0:
        dirs["nscl_minus_cl"] = gap
    step_dir = state.get("step_dir")
    if step_dir is not None and float(step_dir.norm()) > 0:
        dirs["last_step"] = step_dir  # w_s - w_{s-1} of the contrastive model (the last update)
    beta_hat = None
    if dirs:  # none at step 0 with --beta-dirs 0 (the two models coincide, no step taken yet)
        beta = ms.estimate_beta(m_cl, views, labels, (cl, "NSCL"), cfg.tau, dirs, rel=cfg.fd_rel, anchors=cfg.anchors)
        beta_hat = beta.beta
        state["beta_run"] = max(state["beta_run"], beta.beta)
    row.update({"G_hat": G_now, "G_hat_cl": g_cl.G, "G_hat_nscl": g_ns.G, "G_mean": 0.5 * (g_cl.mean + g_ns.mean),
                "G_run": state["G_run"], "beta_hat": beta_hat, "beta_run": state["beta_run"] or None})
    for tag, m in (("at_cl", m_cl), ("at_nscl", m_ns)):
        l7 = ms.lem7_check(m, views, labels, cfg.tau, state["G_run"], s.Delta, kind=cl, anchors=cfg.anchors)
        row.update({f"lem7_{k}_{tag}": v for k, v in l7.items()})
    e_t = ms.weight_distance(tr.models[cl], tr.models["NSCL"])
    row["thm2_e"] = e_t
    if s.Delta is None or state["beta_run"] <= 0:
        row["thm2_bound"] = None
    elif eta.size == 0:
        row["thm2_bound"] = 0.0
    else:
        row["thm2_bound"] = thm2_bound_from_delta(eta, state["beta_run"], state["G_run"], s.Delta, cfg.tau)
    row["thm2_holds"] = None if row["thm2_bound"] is None else bool(e_t <= row["thm2_bound"])
    row["thm2_plain_sgd"] = s.thm2_exact
    row.update(_lossgap_columns(s))
    return row


LOSSGAP_KEYS = ("loss_kind", "loss_nscl", "gap", "gap_max_anchor", "bound_counts", "bound_companion",
                "bound_balanced", "holds_counts")


def _lossgap_columns(s: _Setup) -> dict[str, Any]:
    """Loss gap of the contrastive and the NSCL model on the train and the test reference batch.

    Eval mode, float32 embeddings of the two fixed views (2R images, R = ref_batch). Columns
    ``lossgap_{key}_{cl|nscl}model`` on the train reference batch and ``lossgap_test_{key}_{cl|nscl}model`` on
    the test one, key in LOSSGAP_KEYS (experiments.measure.loss_gap: loss_kind = L^CL or L^DCL, loss_nscl,
    gap = loss_kind - loss_nscl, and its bounds).
    """
    cfg, tr, cl = s.cfg, s.trainer, s.contrastive
    row: dict[str, Any] = {}
    for prefix, views, labels in (("lossgap_", s.ref_views, s.ref_labels),
                                  ("lossgap_test_", s.ref_views_test, s.ref_labels_test)):
        R = labels.shape[0]
        for n in (cl, "NSCL"):
            _, z = tr.embed(n, views)
            lg = ms.loss_gap(z[:R], z[R:], labels, cfg.tau, kind=cl, anchors=cfg.anchors)
            tag = "cl" if n == cl else "nscl"
            for k in LOSSGAP_KEYS:
                row[f"{prefix}{k}_{tag}model"] = lg[k]
    return row


def _surrogate_eval(s: _Setup, state: dict, base: dict, eta: np.ndarray, gen: torch.Generator,
                    heavy: bool) -> list[dict]:
    cfg, tr, sur = s.cfg, s.trainer, s.surrogate
    assert sur is not None
    rows = []
    sig_net = {}
    for n, sig_sur in ((s.contrastive, sur.sigma_cl), ("NSCL", sur.sigma_ns)):
        _, z = tr.embed(n, sur.items)
        S_net = ms.cosine_gram(z)
        sig_net[n] = S_net
        if cfg.surrogate_constants and heavy:
            tm = ms.theory_copy(tr.models[n]).cpu()
            L = ms.jacobian_spectral_norm(tm, sur.sub_items, iters=6, generator=gen)
            sur.L_hat[n] = max(sur.L_hat.get(n, 0.0), L)
        C_sigma, M_sigma, missing = sur.constants(n)
        row = {**base, "model": n, "surrogate_loss": "CL" if n == s.contrastive else "NSCL",
               "net_vs_sur_fro": float(torch.linalg.matrix_norm(S_net - sig_sur)),
               "net_move_fro": float(torch.linalg.matrix_norm(S_net - sur.sigma0)),
               "sur_move_fro": float(torch.linalg.matrix_norm(sig_sur - sur.sigma0)),
               "cka_net_sur": _cka_gram_or_none(S_net, sig_sur),
               "L_hat": sur.L_hat.get(n), "C_sigma": C_sigma, "M_hat": M_sigma}
        xi = np.asarray(state["xi"][n][: eta.size], dtype=np.float64)
        if missing:
            row["eq9_bound"] = row["eq7_bound"] = None
            row["eq9_missing"] = " ".join(missing)
        elif eta.size == 0:
            row["eq9_bound"] = row["eq7_bound"] = 0.0
        else:
            row["eq9_bound"] = appc_eq9_bound(eta, cfg.tau, s.B, C_sigma, M_sigma, xi)
            row["eq7_bound"] = appc_eq7_unrolled(eta, cfg.tau, s.B, C_sigma, M_sigma, xi)
        row["xi_sum_eta2"] = float(np.sum(eta * eta * xi)) if eta.size else 0.0
        rows.append(row)
    drift_sur = float(torch.linalg.matrix_norm(sur.sigma_cl - sur.sigma_ns))
    drift_net = float(torch.linalg.matrix_norm(sig_net[s.contrastive] - sig_net["NSCL"]))
    d_paper, d_sharp = _drift_bounds(s, eta, state)
    m_max = max(state["row_mult"][:eta.size], default=1)
    rows.append({**base, "model": "CL-NSCL", "sur_drift_fro": drift_sur, "net_drift_fro": drift_net,
                 "thm1_bound": d_paper, "thm1_bound_sharp": d_sharp, "max_row_mult": m_max,
                 "thm1_premise_m1": m_max == 1,
                 "thm1_holds_surrogate": None if d_paper is None else bool(drift_sur <= d_paper),
                 "cka_sur": _cka_gram_or_none(sur.sigma_cl, sur.sigma_ns),
                 "cka_net_items": _cka_gram_or_none(sig_net[s.contrastive], sig_net["NSCL"])})
    return rows


def _cka_gram_or_none(S1: Tensor, S2: Tensor) -> float | None:
    """cka_gram of two N x N similarity matrices, None where it is undefined (a zero-variance input raises)."""
    try:
        return float(cka_gram(S1, S2))
    except ValueError:
        return None


def _write_tables(out: Path, state: dict) -> None:
    write_csv(out / "metrics.csv", state["metric_rows"])
    write_csv(out / "models.csv", state["model_rows"])
    if state["theory_rows"]:
        write_csv(out / "theory.csv", state["theory_rows"])
    write_csv(out / "weight_gap.csv", state["gap_rows"])
    if state["surrogate_rows"]:
        write_csv(out / "surrogate.csv", state["surrogate_rows"])


def _write_config(s: _Setup, state: dict, out: Path) -> dict:
    """Write ``out/config.json`` (config, resolved values, Thm 1 note); returns the resolved values."""
    tr = s.trainer
    resolved = {"C": s.C, "N_train": len(s.train), "N_test": len(s.test), "steps_per_epoch": tr.steps_per_epoch,
                "total_steps": s.T, "eval_every": s.eval_every, "contrastive": s.contrastive,
                "pairs": [f"{a}-{b}" for a, b in s.pairs], "eps_b_delta": s.eps, "Delta": s.Delta,
                "Delta_note": s.Delta_note, "sum_eta": float(np.sum(state["eta"]))}
    write_json(out / "config.json", {"config": s.cfg.to_dict(), "resolved": resolved, "thm1_note": THM1_NOTE})
    return resolved


def _manifest(s: _Setup) -> dict:
    m = s.trainer.manifest_dict()
    cfg = s.cfg
    m["seeds"] = dict(m.get("seeds", {}), data_seed=cfg.data_seed, class_seed=cfg.class_seed, ref_seed=cfg.ref_seed,
                      theory_seed=cfg.theory_seed)
    m["versions"] = dict(m.get("versions", {}), **package_versions("scipy", "matplotlib"),
                         platform=platform.platform(), torch_threads=torch.get_num_threads())
    m["command_line"] = command_line()
    m["datasets"] = {"train": s.train.name, "test": s.test.name, "ref_train": s.ref_train.name,
                     "ref_test": s.ref_test.name}
    return m


def _finish(s: _Setup, state: dict, out: Path, t_start: float) -> dict:
    cfg, tr = s.cfg, s.trainer
    _write_tables(out, state)
    steps = [{"step": r["step"], "epoch": r["epoch"], "eta": r["lr"], **{f"loss_{k}": v for k, v in r["loss"].items()}}
             for r in tr.history]
    write_csv(out / "steps.csv", steps)
    if s.surrogate is not None and s.surrogate.remainders:
        write_csv(out / "surrogate_remainders.csv", s.surrogate.remainders)
    resolved = _write_config(s, state, out)
    write_json(out / "manifest.json", _manifest(s))
    final_rows = [r for r in state["metric_rows"] if r["step"] == s.T]
    doc = {"config": cfg.to_dict(), "resolved": resolved, "notes": state["notes"], "thm1_note": THM1_NOTE,
           "metrics": state["metric_rows"], "models": state["model_rows"], "theory": state["theory_rows"],
           "surrogate": state["surrogate_rows"], "final": final_rows,
           "train_wall_s": time.perf_counter() - t_start}
    if cfg.figures:
        from . import plot

        plot.plot_alignment_run(state["metric_rows"], out / "alignment", contrastive=s.contrastive)
        if state["theory_rows"]:
            plot.plot_theory_run(state["theory_rows"], out / "theory")
        if state["surrogate_rows"]:
            plot.plot_surrogate_run(state["surrogate_rows"], out / "surrogate")
    doc["wall_s"] = time.perf_counter() - t_start
    doc["timing"] = {"run_s": doc["wall_s"], "evaluations_s": state["eval_s"], "step_hooks_s": state["hook_s"],
                     "training_s": doc["train_wall_s"] - state["eval_s"] - state["hook_s"],
                     "files_and_figures_s": doc["wall_s"] - doc["train_wall_s"], "torch_threads": torch.get_num_threads()}
    write_json(out / "metrics.json", doc)
    return doc


# ----------------------------------------------------------------------------------------------------------
# end-of-run table
def format_table(doc: dict) -> str:
    """Alignment by epoch (train reference set): CKA / RSA per pair, and the CL-NSCL certified bounds."""
    rows = [r for r in doc["metrics"] if r["split"] == "train"]
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    steps = list(dict.fromkeys((r["epoch"], r["step"]) for r in rows))
    cl_ns = f"{doc['resolved']['contrastive']}-NSCL"
    head = ["epoch", "step", "sum_eta"] + [f"{p} CKA/RSA" for p in pairs] + ["CKA lb paper/sharp", "RSA lb paper/sharp"]
    lines = []
    for ep, st in steps:
        at = {r["pair"]: r for r in rows if r["step"] == st}
        cells = [str(ep), str(st), f"{next(iter(at.values()))['sum_eta']:.3g}"]
        for p in pairs:
            r = at.get(p, {})
            cells.append(f"{_num(r.get('cka'))}/{_num(r.get('rsa'))}")
        r = at.get(cl_ns, {})
        cells.append(f"{_num(r.get('cka_lb'))}/{_num(r.get('cka_lb_sharp'))}")
        cells.append(f"{_num(r.get('rsa_lb'))}/{_num(r.get('rsa_lb_sharp'))}")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [fmt(head)] + [fmt(c) for c in lines]
    out.append(f"(train reference set; lower bounds <= 0 are vacuous; {THM1_NOTE})")
    return "\n".join(out)


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    prog = "bound_vs_empirical"
    with contextlib.ExitStack() as stack:  # holds the --out lock until the run ends
        return _main(prog, argv, stack)


def _main(prog: str, argv: Sequence[str] | None, stack: contextlib.ExitStack) -> int:
    try:
        cfg, resume = parse_cli(argv)
        if cfg.threads > 0:  # CLI process only (library code never changes the thread count)
            torch.set_num_threads(cfg.threads)
        stack.enter_context(OutDirLock(cfg.out))  # one writer per --out; stale *.tmp of a killed run removed
        mode = check_resume(cfg) if resume else "fresh"
        setup = None if mode == "done" else prepare(cfg)
    except (ValueError, FileNotFoundError) as e:  # bad flag/value, missing or malformed dataset path
        return fail(prog, e)
    from experiments.lockstep import TrainingDiverged

    try:
        doc = run_experiment(cfg, resume=resume, setup=setup)
    except (ValueError, TrainingDiverged) as e:  # NaN loss, batch without negatives, ...: one line, no traceback
        return fail(prog, e, status=1)
    if not cfg.quiet:
        print(format_table(doc))
        for n in doc["notes"]:
            print(f"note: {n}")
        print(f"wrote {cfg.out} ({doc['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
