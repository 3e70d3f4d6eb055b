"""CLI: coupled CL / NSCL similarity descent (Eq. 1) with per-step checks of the paper's lemmas.

    python -m simulate.sigma_descent                         # default regime: ~10 s wall on 2 cores, runs/sigma_descent
    python -m simulate.sigma_descent --project none --out runs/sigma_eq1       # Eq. 1 exactly (no projection)
    python -m simulate.sigma_descent --compare runs/sigma_descent runs/sigma_eq1   # markdown side by side

Writes config.json, steps.csv, evals.csv, checks.json, counterexamples/*.npz, sigma_descent.png/.pdf (and
sigma_cl.npy / sigma_ns.npy with --save-sigma) into --out, and prints the verdict table. Option values are
taken from the dataclass defaults, then --config FILE.json, then the flags given on the command line.
Bad values exit with status 2 and one line on stderr; so does a NaN / inf (naming the step, after
writing what was computed). See simulate/config.py for the modelling choices.

Default regime (SigmaConfig defaults) and why
---------------------------------------------
N = 1000 samples, C = 100 classes, V = 2 view slots (Sigma is 2000 x 2000), B = 512, tau = 2, eta = 16 constant,
T = 200 steps (sum eta = 3200), delta = 0.05, aug_noise = 2 (views start at cosine ~0.2), --project clip,
--diag fixed.

* Every claim is evaluated inside its premise: Sec. 4.1 declares Sigma_t in [-1, 1]^{N x N} and Lemmas 4, 6, 8
  and Thm. 1 need bounded logits. Eq. 1 alone leaves the box, so --project clip is the default. Clipping is the
  projection onto a convex box, hence non-expansive, and the Thm. 1 recurrence proof goes through unchanged.
  --project none remains available as "Eq. 1 exactly".
* The certificate is not vacuous: eps_{B,delta} = 0.119, Delta_{C,delta} = 0.806 (e^{2/tau} = e), Lipschitz
  constant 1/(2 tau^2 B) = 2.4e-4 (exponent sum(eta)/(2 tau^2 B) = 0.78), injection Delta/(tau sqrt B) = 0.0178.
  Smaller tau or B make Delta blow up (tau = 0.5, B = 64, C = 10: Delta = 83, every certificate vacuous).

The measured numbers of the default run (drift, CKA, RSA against their certificates, wall time) are in the README.
"""

from __future__ import annotations

import argparse
import math
import ctypes
import os
import sys
from pathlib import Path

import runio

from .checkpoint import load_checkpoint
from .config import (
    DEFAULT_ETA,
    DIAG_MODES,
    DTYPES,
    PROJECTIONS,
    SIGMA_MODES,
    VIEWS,
    SigmaConfig,
    derive_seeds,
    validate_config,
)
from .run import run_sigma_descent

__all__ = ["build_parser", "config_from_args", "default_threads", "main", "tune_allocator"]

_D = SigmaConfig()
_PROG = "python -m simulate.sigma_descent"


def tune_allocator() -> bool:
    """Keep freed large blocks in the process heap (glibc mallopt: M_MMAP_THRESHOLD = 32 MiB, M_TRIM_THRESHOLD =
    2 GiB). A step allocates a few dozen block-sized temporaries (4 MB at N = 4096, B = 512); with glibc's
    defaults they are returned to the OS after each step and page-faulted back in by the next one (measured:
    about a third of the step time). Process-wide, so only the CLI and benchmarks/bench_sigma.py call it.
    Returns False where it is unavailable (not glibc); nothing else changes then."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20)) and bool(libc.mallopt(-1, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def _near_one(x: float | None) -> str:
    """0.987654 or, within 1e-4 of 1, '1 - 7.3e-08' (so a tiny loss of alignment stays visible)."""
    if x is None:
        return "-"
    return f"1 - {1.0 - x:.2g}" if 0.0 < 1.0 - x < 1e-4 else f"{x:.6f}"


def default_threads(cfg: SigmaConfig) -> int:
    """2 intra-op threads for large Sigma (>= 4096 items, e.g. benchmarks/bench_sigma.py: 1.4x at N = 4096 on
    2 idle cores), 1 otherwise; never more than the cores."""
    items = cfg.n * (1 if cfg.views == "identity" else cfg.view_slots) if cfg.init_path is None else 0
    return min(2, os.cpu_count() or 1) if items >= 4096 else 1


def build_parser() -> argparse.ArgumentParser:
    p = runio.OneLineParser(
        prog=_PROG,
        description="Coupled CL/NSCL similarity-space descent (Eq. 1) with per-step checks of Lemmas 1-8, Cor. 3, "
                    "Thm. 1 and Cors. 1-2. Defaults are SigmaConfig's (shown below).",
        argument_default=argparse.SUPPRESS,
    )
    g = p.add_argument_group("problem")
    g.add_argument("--n", type=int, help=f"reference samples N (default {_D.n})")
    g.add_argument("--classes", type=int, help=f"balanced classes C, N divisible by C (default {_D.classes})")
    g.add_argument("--batch-size", type=int, dest="batch_size", help=f"B anchors per step (default {_D.batch_size})")
    g.add_argument("--tau", type=float, help=f"temperature (default {_D.tau})")
    g.add_argument("--eta", type=float,
                   help=f"step size; the base value for --eta-schedule cosine (default {DEFAULT_ETA}: sum eta = 3200 over "
                        f"the default 200 steps moves Sigma by 13%% while the Thm. 1 certificate stays non-vacuous)")
    g.add_argument("--eta-schedule", dest="eta_schedule",
                   help=f"constant | cosine | path/to/eta.npy with T step sizes (default {_D.eta_schedule})")
    g.add_argument("--steps", type=int, help=f"T steps (horizon of Delta_(C,delta)) (default {_D.steps})")
    g.add_argument("--delta", type=float, help=f"confidence delta in (0, 1) (default {_D.delta})")
    g = p.add_argument_group("modelling options (see simulate/config.py)")
    g.add_argument("--views", choices=VIEWS,
                   help=f"slots: V distinct view items per sample; identity: x' = x (positive = diagonal) (default {_D.views})")
    g.add_argument("--view-slots", type=int, dest="view_slots", help=f"V with --views slots (default {_D.view_slots})")
    g.add_argument("--sigma", choices=SIGMA_MODES,
                   help=f"ordered: each (i,k) its own coordinate (Lem. 1 setting); symmetric: gradient G + G^T - Diag G "
                        f"(default {_D.sigma})")
    g.add_argument("--replacement", dest="replacement", action="store_true",
                   help="batches with replacement (default; the paper's protocol)")
    g.add_argument("--no-replacement", dest="replacement", action="store_false",
                   help="distinct samples within a batch")
    g.add_argument("--project", choices=PROJECTIONS,
                   help=f"clip: touched entries projected onto [-1, 1] after each step -- Sec. 4.1 has Sigma_t in "
                        f"[-1, 1]^(NxN) and Lems. 4, 6, 8 and Thm. 1 need bounded logits, which Eq. 1 alone leaves "
                        f"within a few steps; the projection is non-expansive, so the Thm. 1 recurrence still holds; "
                        f"none: Eq. 1 exactly (default {_D.project})")
    g.add_argument("--diag", choices=DIAG_MODES,
                   help=f"fixed: Sigma(i,i) = 1 is a constant, as in the paper's Sigma (unit diagonal); free: a "
                        f"coordinate like any other, which moves when a loss reads it (a duplicated draw puts "
                        f"Sigma(i,i) into the CL denominator; views=identity: it is the positive) (default {_D.diag})")
    g = p.add_argument_group("precision and device")
    g.add_argument("--dtype", choices=DTYPES,
                   help=f"dtype of Sigma and the step; the per-step checks always recompute the step in float64 and the "
                        f"eval points accumulate in float64 (default {_D.dtype})")
    g.add_argument("--device", help=f"cpu, cuda or cuda:K: where Sigma lives and the step runs; batches are drawn on "
                                    f"the CPU, so every device sees the same batches (default {_D.device})")
    g = p.add_argument_group("Sigma_0")
    g.add_argument("--separation", type=float, help=f"class-mean norm, 0 = no class structure (default {_D.separation})")
    g.add_argument("--embed-dim", type=int, dest="embed_dim", help=f"embedding dimension (default {_D.embed_dim})")
    g.add_argument("--aug-noise", type=float, dest="aug_noise",
                   help=f"view-slot perturbation (default {_D.aug_noise}: positives start at cos ~0.2; 0.5: ~0.8)")
    g.add_argument("--init-path", dest="init_path", help="embeddings .npy (N, d) or (N, V, d) of a real encoder")
    g.add_argument("--labels-path", dest="labels_path", help="labels .npy (N,) for --init-path")
    g = p.add_argument_group("seeds")
    g.add_argument("--seed", type=int, help="derive --init-seed, --batch-seed, --aug-seed from one seed (default: "
                                            "use those three)")
    g.add_argument("--init-seed", type=int, dest="init_seed", help=f"Sigma_0 (default {_D.init_seed})")
    g.add_argument("--batch-seed", type=int, dest="batch_seed", help=f"batch draws (default {_D.batch_seed})")
    g.add_argument("--aug-seed", type=int, dest="aug_seed", help=f"view pairs (default {_D.aug_seed})")
    g = p.add_argument_group("run")
    g.add_argument("--eval-every", type=int, dest="eval_every",
                   help=f"CKA/RSA/full drift every k steps and at the end; 0 = end only (default {_D.eval_every})")
    g.add_argument("--no-checks", dest="checks", action="store_false", help="skip the per-step claim checks")
    g.add_argument("--lemma5-trials", type=int, dest="lemma5_trials",
                   help=f"Monte-Carlo trials for Lem. 5 (default {_D.lemma5_trials}; 0 = skip)")
    g.add_argument("--checkpoint-every", type=int, dest="checkpoint_every",
                   help="atomic checkpoint every K steps into OUT/checkpoint.pt (default 0 = never)")
    g.add_argument("--stop-after", type=int, dest="stop_after",
                   help="stop after K steps with a checkpoint (simulated interruption; continue with --resume) (default: run all "
                        "steps)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (bit-exact)")
    g.add_argument("--save-sigma", dest="save_sigma", action="store_true", help="write sigma_cl.npy, sigma_ns.npy")
    g.add_argument("--no-plot", dest="plot", action="store_false", help="skip the figure")
    g.add_argument("--config", help="TOML or JSON file of SigmaConfig fields, or a run's config.json (flags given here "
                                    "override it)")
    g.add_argument("--out", help="output directory (default runs/sigma_descent)")
    g.add_argument("--threads", type=int,
                   help="torch intra-op threads (default: 2 when Sigma has >= 4096 items and >= 2 cores, else 1; "
                        "small steps gain nothing from threads, and threads collapse on oversubscribed cores)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    g.add_argument("--compare", nargs="+", metavar="DIR",
                   help="print a markdown table of several runs' checks.json side by side and exit")
    return p


_NOT_CONFIG = {"config", "out", "quiet", "compare", "resume", "seed", "threads"}


def _check_init_path_sizes(d: dict, explicit: set) -> None:
    """With ``init_path`` the sizes come from the loaded labels: an explicit n / classes that disagrees with
    them is refused in one line (instead of being silently overridden)."""
    if d.get("init_path") is None or not explicit or d.get("labels_path") is None:
        return
    import numpy as np

    try:
        labels = np.load(d["labels_path"], allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"labels_path {d['labels_path']!r} cannot be read as .npy: {runio.one_line(e)}") from None
    have = {"n": int(labels.shape[0]) if labels.ndim else 0, "classes": int(np.unique(labels).size)}
    for k in sorted(explicit):
        if d.get(k) != have[k]:
            raise ValueError(f"{k}={d.get(k)!r} conflicts with init_path {d['init_path']!r} (its labels give "
                             f"{k}={have[k]}); drop --{k} or make it match")


def config_from_args(ns: argparse.Namespace, base: dict | None = None) -> SigmaConfig:
    """SigmaConfig from defaults <- ``base`` (e.g. --config or a checkpoint) <- flags given explicitly."""
    d = SigmaConfig().to_dict()
    if base:
        d.update(base)
    file_keys: set = set()
    if getattr(ns, "config", None):
        doc = runio.load_config(ns.config)  # TOML or JSON, a run's config.json included
        runio.check_keys(doc, d, f" in {ns.config!r} (SigmaConfig)")
        file_keys = set(doc)
        d.update(doc)
    given = {k: v for k, v in vars(ns).items() if k not in _NOT_CONFIG}
    if "seed" in vars(ns):
        i, b, a = derive_seeds(ns.seed)
        d.update(init_seed=i, batch_seed=b, aug_seed=a)
    d.update(given)
    _check_init_path_sizes(d, {k for k in ("n", "classes") if k in given or k in file_keys})
    return SigmaConfig.from_dict(d)



def _fmt(x: object) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.4g}"


def certified_summary(ev: dict, checks: dict) -> str:
    """One line: the certificates at the last eval point, each only where its premise held.

    The paper's Thm. 1 / Cors. 1-2 (and the sharper forms built on them) are proved under
    ``theory.bounds.THM1_PREMISE`` (every anchor on its own Sigma row, ordered Sigma, Cor. 3 event, bounded
    logits at every step). Where that premise failed on some step, their numbers are NOT certificates and the
    line says so; the row-multiplicity forms (``Thm1_mult`` / ``Cor1_mult`` / ``Cor2_mult``) need only the Cor. 3
    event and bounded logits and are printed whenever those held.
    """
    def premise_ok(name: str) -> bool:
        c = checks.get(name) or {}
        return int(c.get("premise_failed") or 0) == 0 and int(c.get("evaluated") or 0) > 0

    parts = [f"at step {ev['step']}:"]
    if premise_ok("Cor1"):
        parts.append(f"paper certificate drift <= {_fmt(ev.get('bound_closed'))} (Thm. 1), CKA >= "
                     f"{_fmt(ev.get('cka_lb_paper'))} (Cor. 1; tight cosine {_fmt(ev.get('cka_lb_sharp'))}), RSA >= "
                     f"{_fmt(ev.get('rsa_lb_paper'))} (Cor. 2; tight cosine {_fmt(ev.get('rsa_lb_sharp'))});")
    else:
        failed = (checks.get("Thm1") or {}).get("premise_failed", "some")
        parts.append(f"paper Thm. 1 / Cors. 1-2 NOT certified (premise failed on {failed} steps: anchors sharing a "
                     f"Sigma row or symmetric Sigma);")
    if premise_ok("Cor1_mult") and ev.get("bound_mult") is not None:
        parts.append(f"row-multiplicity certificate drift <= {_fmt(ev.get('bound_mult'))}, CKA >= "
                     f"{_fmt(ev.get('cka_lb_mult'))}, RSA >= {_fmt(ev.get('rsa_lb_mult'))};")
    parts.append(f"Sigma moved: CKA(S_0, S^CL) = {_fmt(ev.get('cka_cl_vs_init'))}, "
                 f"||S^CL - S_0||/||S_0|| = {float(ev.get('rel_move_cl', float('nan'))):.3g}")
    return "certified " + " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = parser.parse_args(argv)
    quiet = bool(getattr(ns, "quiet", False))
    lock = None
    try:
        if getattr(ns, "compare", None):
            from .report import compare_checks

            print(compare_checks(ns.compare))
            return 0
        threads = getattr(ns, "threads", None)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got threads={threads}")
        import torch

        tune_allocator()
        out = Path(getattr(ns, "out", "runs/sigma_descent"))
        resume = bool(getattr(ns, "resume", False))
        lock = runio.OutDirLock(out).acquire()  # one writer per --out; stale *.tmp of a killed run removed
        base = None
        if resume:
            base = load_checkpoint(out)["config"]
            base = {k: v for k, v in base.items() if k not in ("stop_after",)}
            base["stop_after"] = None
        cfg = config_from_args(ns, base)
        validate_config(cfg)
        torch.set_num_threads(threads if threads is not None else default_threads(cfg))
        res = run_sigma_descent(cfg, out, quiet=quiet, resume=resume, argv=[_PROG] + argv)
    except ValueError as e:  # includes NonFiniteError (outputs so far are written)
        return runio.fail(_PROG, e)
    finally:
        if lock is not None:
            lock.release()
    if not quiet:
        print(res.verdict)
        state = "completed" if res.completed else f"stopped after {res.steps_completed} steps (resume with --resume)"
        print(f"\n{state}; drift ||S^CL - S^NSCL||_F = {res.drift:.6g}, CKA = {_near_one(res.cka)}, "
              f"RSA = {_near_one(res.rsa)}; Delta = {res.constants['Delta']:.4g}, eps = {res.constants['eps']:.4g}; "
              f"{res.steps_per_s:.1f} steps/s, {res.wall_s:.1f} s; outputs in {out}")
        ev = res.eval_rows[-1] if res.eval_rows else None
        if ev is not None:
            print(certified_summary(ev, res.checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
