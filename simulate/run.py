"""The coupled run: one step with its checks (advance) and the whole run with its output files."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import runio
from runio.progress import progress

from theory.bounds import thm1_trajectory_from_delta
from theory.alignment_gram import cka_gram, rsa_gram

from .batches import batch_items, draw_batch
from .certificates import box_stats, centred_fro, certificates, fro, upper_std
from .checkpoint import CoupledState, _dynamics, _save_checkpoint, load_checkpoint
from .config import NonFiniteError, SigmaConfig, eta_values, theory_constants, validate_config
from .layout import build_layout
from .reference import make_reference
from .report import format_verdict_table
from .step import full_drift, step_and_apply
from .tracker import CheckSuite


@dataclass
class SigmaResult:
    """What ``run_sigma_descent`` returns (the files in out_dir hold the same numbers)."""

    config: dict
    constants: dict
    steps_completed: int
    completed: bool
    drift: float
    drift_full: float | None
    cka: float | None
    rsa: float | None
    checks: dict
    verdict: str
    step_rows: list
    eval_rows: list
    sigma_cl: Tensor
    sigma_ns: Tensor
    wall_s: float
    steps_per_s: float
    out_dir: Path | None
    aborted: str | None = None


def _versions() -> dict:
    return {**runio.package_versions("torch", "numpy", "scipy", "matplotlib"), "torch_threads": torch.get_num_threads()}


def _eval_point(state: CoupledState, sigma0: Tensor, consts: dict, bounds: dict, cfg: SigmaConfig) -> dict:
    """N x N quantities at an eval point: full drift, CKA / RSA, ||K^CL||_F, sigma_D, certificates."""
    t = state.step
    S1, S2 = state.sigma_cl, state.sigma_ns
    M = S1.shape[0]
    row = {"step": t, "drift_fro": state.drift, "drift_full": full_drift(S1, S2)}
    row["drift_rel_err"] = abs(row["drift_fro"] - row["drift_full"]) / row["drift_full"] if row["drift_full"] > 0 else 0.0
    row["cka"] = cka_gram(S1, S2)
    row["rsa"] = rsa_gram(S1, S2)
    row["k_cl_fro"] = centred_fro(S1)
    row["sigma_d"] = upper_std(S1)
    row["n_pairs"] = M * (M - 1) // 2
    row["bound_closed"] = float(bounds["closed"][t])
    row["bound_unrolled"] = float(bounds["unrolled"][t])
    row["bound_gap"] = state.gap_bound
    row.update(certificates(row, symmetric=cfg.sigma == "symmetric", S1=S1, S2=S2))
    n0 = fro(sigma0)
    row["rel_move_cl"] = fro(S1, sigma0) / n0
    row["rel_move_ns"] = fro(S2, sigma0) / n0
    row["cka_cl_vs_init"] = cka_gram(S1, sigma0)
    row["max_abs_sigma_cl"], row["frac_outside_cl"] = box_stats(S1)
    # NSCL leaves [-1, 1] faster than CL (project=none)
    row["max_abs_sigma_ns"], row["frac_outside_ns"] = box_stats(S2)
    return row

@dataclass
class RunContext:
    """Constants of a run that ``advance`` needs (sizes, options, step sizes, Thm. 1 trajectory bounds)."""

    N: int
    B: int
    V: int
    M: int
    tau: float
    replacement: bool
    symmetric: bool
    clip: bool
    item_labels: Tensor
    eta: np.ndarray
    bounds: dict
    consts: dict
    diag: str = "free"  # "fixed": Sigma(i, i) is a constant (SigmaConfig.diag)
    dtype: torch.dtype = torch.float64  # of Sigma and the step
    device: torch.device = torch.device("cpu")  # of Sigma, the item labels and the step


def check_run_memory(M: int, B: int, dtype: torch.dtype, device: torch.device) -> None:
    """One-line ValueError, before anything is allocated, when a run over M items with batch size B would not fit:
    the three (M, M) matrices Sigma^CL, Sigma^NSCL, Sigma_0 (no other (M, M) array is formed: eval points
    work in row blocks) plus the step's arrays, against the free memory of ``device`` (CUDA: mem_get_info;
    CPU: runio.available_memory)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = 3 * M * M * itemsize + runio.memory.SIGMA_STEP_ARRAYS * B * 2 * B * 8 + (64 << 20)
    avail = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    where = f"on {device}" if device.type == "cuda" else "in RAM"
    runio.check_memory(need, f"Sigma-space run with M = N V = {M} items, B = {B}, {str(dtype)[6:]} {where}",
                       available=avail)


def _all_finite(x: Tensor) -> bool:
    """No NaN / inf in x: one summation pass; the exact elementwise test only if the sum is not finite."""
    return math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())


def advance(state: CoupledState, ctx: RunContext, suite=None) -> dict:
    """One coupled step t = state.step: shared batch, both gradients, update, per-step checks (if ``suite``).

    Returns the steps.csv row; raises NonFiniteError naming the step on a NaN / inf gradient or Sigma.
    """
    t = state.step
    eta_t = float(ctx.eta[t])
    batch = draw_batch(ctx.N, ctx.B, ctx.V, ctx.replacement, state.batch_gen, state.aug_gen)
    rows, cols = batch_items(batch, ctx.V)  # drawn on the CPU generators (the same batches on every device)
    if ctx.device.type != "cpu":
        rows, cols = rows.to(ctx.device, non_blocking=True), cols.to(ctx.device, non_blocking=True)
    lab = ctx.item_labels
    layout = build_layout(rows, cols, lab[rows], lab[cols], ctx.M, ctx.symmetric, ctx.diag, ctx.dtype)
    drift_t = state.drift
    st, d_sq, new_cl, new_ns = step_and_apply(state.sigma_cl, state.sigma_ns, layout, ctx.tau, eta_t, ctx.clip)
    # a NaN / inf softmax reaches the updated block, and a finite d_sq = ||new_cl - new_ns||^2 - ... implies that every
    # entry of both new blocks is finite (inf - x, inf - inf and NaN - x are not finite), so d_sq alone catches both;
    # the blocks and the softmax are inspected only to word the error (the run stops here either way)
    if not math.isfinite(d_sq):
        if not (_all_finite(st.p_cl) and _all_finite(st.q_ns)):
            raise NonFiniteError(f"non-finite loss gradient at step {t} (Sigma entries too large for tau?)")
        raise NonFiniteError(f"non-finite Sigma after step {t} (eta={eta_t!r} too large?)")
    state.drift_sq += d_sq
    state.step = t + 1
    row = {"step": t, "eta": eta_t, "drift_fro": state.drift,
           "bound_thm1_unrolled": float(ctx.bounds["unrolled"][t + 1]),
           "bound_thm1_closed": float(ctx.bounds["closed"][t + 1])}
    if suite is not None:
        # the checks run in float64 on the CPU (their tolerances are float64 rounding): the step recomputed there
        info = suite.evaluate_step(st.float64_cpu(), t, eta_t, drift_t, state.drift, batch, lab.cpu())
        # Lipschitz step with the realised row multiplicity, kappa m/(2 tau^2 B) (= 1/(2 tau^2 B) when every anchor
        # has its own row and Sigma is ordered; theory.bounds.thm1_unrolled_multiplicity)
        state.gap_bound = (1.0 + eta_t * info["mult_alpha"]) * state.gap_bound + eta_t * info["gap_A"]
        state.premise_all = state.premise_all and info["premise_step"]
        suite.evaluate_trajectory(t + 1, state.drift, row["bound_thm1_closed"], row["bound_thm1_unrolled"],
                                  state.gap_bound, state.premise_all)
        row["bound_thm1_gap"] = state.gap_bound
        row.update(info["row"])
    return row


def _safe_sum(x: np.ndarray) -> float:
    with np.errstate(over="ignore"):
        return float(np.sum(x))


def _bounds(eta: np.ndarray, consts: dict, B: int, tau: float, T: int) -> dict:
    """Thm. 1 trajectory bounds D_t, t = 0..T (closed form Eq. 2 with horizon t, and exact unrolled)."""
    if not math.isfinite(consts["Delta"]):
        return {"unrolled": np.full(T + 1, math.inf), "closed": np.full(T + 1, math.inf)}
    return {form: thm1_trajectory_from_delta(eta, consts["Delta"], B, tau, form=form) for form in ("unrolled", "closed")}


def run_sigma_descent(
    cfg: SigmaConfig,
    out_dir: Path | str | None,
    quiet: bool = False,
    resume: bool = False,
    argv: list[str] | None = None,
) -> SigmaResult:
    """Run the coupled CL / NSCL Sigma-space descent (Eq. 1) with per-step claim checks.

    Writes into ``out_dir`` (if not None): config.json, steps.csv, evals.csv, checks.json, counterexamples/,
    sigma_descent.png/.pdf, optional sigma_cl.npy / sigma_ns.npy, checkpoint.pt (``checkpoint_every`` /
    ``stop_after``). ``resume=True`` continues from out_dir/checkpoint.pt (same dynamics options required)
    and reproduces the uninterrupted run exactly. Raises ValueError on bad options and NonFiniteError (a
    ValueError naming the step) when a gradient or Sigma becomes non-finite, after writing the outputs so far.
    """
    validate_config(cfg)
    dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
    device = torch.device(cfg.device)
    if cfg.init_path is None:  # one line instead of an allocation crash for a huge N or B
        M0 = cfg.n * (1 if cfg.views == "identity" else cfg.view_slots)
        check_run_memory(M0, cfg.batch_size, dtype, device)
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    ref = make_reference(cfg)
    eta = eta_values(cfg)
    T = cfg.steps
    B = cfg.batch_size
    N, V, C = ref.n, ref.views, ref.classes
    M = N * V
    if not cfg.replacement and B > N:
        raise ValueError(f"batch_size must be <= n without replacement, got batch_size={B}, n={N}")
    consts = theory_constants(C, B, T, cfg.delta, cfg.tau)
    with np.errstate(over="ignore", invalid="ignore"):
        bounds = _bounds(eta, consts, B, cfg.tau, T)
    options = {
        "views": cfg.views, "view_slots": V, "sigma": cfg.sigma, "replacement": cfg.replacement,
        "project": cfg.project, "diag": cfg.diag, "eta_schedule": cfg.eta_schedule,
    }
    resolved = cfg.to_dict()
    resolved.update({"n": N, "classes": C, "view_slots": V})
    config_doc = {
        "config": resolved,
        "resolved": {"items_M": M, "balanced_classes": ref.balanced, "reference": ref.source,
                     "eta_sum": _safe_sum(eta), "eta_first": float(eta[0]), "eta_last": float(eta[-1])},
        "constants": consts,
        "seeds": {"init_seed": cfg.init_seed, "batch_seed": cfg.batch_seed, "aug_seed": cfg.aug_seed},
        "versions": _versions(),
        "git_revision": runio.git_revision(),
        "command_line": argv if argv is not None else None,
        "dtype": cfg.dtype,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
    }
    suite = None
    if cfg.checks:
        suite = CheckSuite(
            tau=cfg.tau, B=B, C=C, T=T, delta=cfg.delta, consts=consts, options=options,
            out_dir=out, symmetric=cfg.sigma == "symmetric",
        )
    if resume:
        if out is None:
            raise ValueError("resume needs an output directory holding checkpoint.pt")
        ck = load_checkpoint(out)
        if _dynamics(ck["config"]) != _dynamics(cfg.to_dict()):
            diff = sorted(k for k in _dynamics(cfg.to_dict()) if ck["config"].get(k) != cfg.to_dict().get(k))
            raise ValueError(f"checkpoint config differs from this run in: {', '.join(diff)}")
        bg = torch.Generator()
        bg.set_state(ck["batch_gen"])
        ag = torch.Generator()
        ag.set_state(ck["aug_gen"])
        state = CoupledState(ck["step"], ck["sigma_cl"].to(device), ck["sigma_ns"].to(device), ck["drift_sq"], bg, ag,
                             ck["gap_bound"],
                             ck["premise_all"], ck["step_rows"], ck["eval_rows"])
        if suite is not None and ck["checks"] is not None:
            suite.load_state_dict(ck["checks"])
    else:
        state = CoupledState(
            0, ref.sigma0.clone(), ref.sigma0.clone(), 0.0,
            torch.Generator().manual_seed(int(cfg.batch_seed)), torch.Generator().manual_seed(int(cfg.aug_seed)),
        )
        state.eval_rows.append(_eval_point(state, ref.sigma0, consts, bounds, cfg))  # step 0 (D_0 = 0)
    if out is not None:  # after the resume checks: a refused --resume leaves the record of the run it refused
        runio.write_json(out / "config.json", config_doc)
    ctx = RunContext(N=N, B=B, V=V, M=M, tau=cfg.tau, replacement=cfg.replacement,
                     symmetric=cfg.sigma == "symmetric", clip=cfg.project == "clip",
                     item_labels=ref.item_labels.to(device), eta=eta, bounds=bounds, consts=consts, diag=cfg.diag,
                     dtype=dtype, device=device)
    stop_at = cfg.stop_after if cfg.stop_after is not None else T
    aborted = None
    t_loop = time.perf_counter()
    step_s = 0.0  # time inside the coupled steps (checks included, eval points excluded)
    first_step = state.step
    bar = progress(total=stop_at, initial=state.step, quiet=quiet, desc="sigma descent", unit="step",
                   dynamic_ncols=True)
    try:
        while state.step < stop_at:
            t = state.step
            t0 = time.perf_counter()
            row = advance(state, ctx, suite)
            step_s += time.perf_counter() - t0
            state.step_rows.append(row)
            if (cfg.eval_every and state.step % cfg.eval_every == 0) or state.step == T:
                try:
                    ev = _eval_point(state, ref.sigma0, consts, bounds, cfg)
                except ValueError as e:  # degenerate / overflowing Sigma (e.g. a huge eta)
                    raise NonFiniteError(f"evaluation after step {t} failed: {e}") from None
                state.eval_rows.append(ev)
                if suite is not None:
                    suite.evaluate_eval_point(ev, state.premise_all)
                bar.set_postfix(drift=f"{state.drift:.3g}", cka=f"{ev['cka']:.6f}")
            if out is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                _save_checkpoint(out, cfg, state, suite)
            bar.update(1)
    except NonFiniteError as e:
        aborted = str(e)
    finally:
        bar.close()
    loop_s = time.perf_counter() - t_loop
    done_steps = state.step - first_step
    completed = state.step == T
    if out is not None and cfg.stop_after is not None and not completed and aborted is None:
        _save_checkpoint(out, cfg, state, suite)
    if suite is not None and completed:
        suite.finalize_lemma5(n=N, replacement=cfg.replacement, trials=cfg.lemma5_trials, seed=cfg.init_seed)
    checks_doc = suite.to_json() if suite is not None else {"note": "checks disabled (--no-checks)"}
    if isinstance(checks_doc, dict):
        checks_doc.setdefault("_run", {})
        checks_doc["_run"] = {"completed": completed, "steps_completed": state.step, "steps": T,
                              "aborted": aborted, "options": options, "constants": consts}
    verdict = format_verdict_table(checks_doc) if suite is not None else "checks disabled"
    last_eval = state.eval_rows[-1] if state.eval_rows else {}
    wall = time.perf_counter() - t_start
    if out is not None:
        runio.write_csv(out / "steps.csv", state.step_rows)
        runio.write_csv(out / "evals.csv", state.eval_rows)
        runio.write_json(out / "checks.json", checks_doc)
        runio.write_json(out / "timing.json", {"wall_s": wall, "loop_s": loop_s, "step_s": step_s, "steps_run": done_steps,
                                         "steps_per_s": done_steps / step_s if step_s > 0 else None,
                                         "threads": torch.get_num_threads()})
        if cfg.save_sigma:
            sig_cl, sig_ns = state.sigma_cl.cpu().numpy(), state.sigma_ns.cpu().numpy()
            runio.atomic_write(out / "sigma_cl.npy", lambda f: np.save(f, sig_cl))
            runio.atomic_write(out / "sigma_ns.npy", lambda f: np.save(f, sig_ns))
        if cfg.plot and len(state.step_rows) > 0:
            from .plot import plot_sigma_run

            plot_sigma_run(out, out / "sigma_descent")
    result = SigmaResult(
        config=resolved, constants=consts, steps_completed=state.step, completed=completed, drift=state.drift,
        drift_full=last_eval.get("drift_full"), cka=last_eval.get("cka"), rsa=last_eval.get("rsa"),
        checks=checks_doc, verdict=verdict, step_rows=state.step_rows, eval_rows=state.eval_rows,
        sigma_cl=state.sigma_cl, sigma_ns=state.sigma_ns, wall_s=wall,
        steps_per_s=done_steps / step_s if step_s > 0 else float("nan"), out_dir=out, aborted=aborted,
    )
    if aborted is not None:
        raise NonFiniteError(aborted)
    return result
