"""CLI: coupled CL / NSCL similarity descent (Eq. 1) with per-step checks of the paper's lemmas.

    python -m simulate.sigma_descent                         # defaults: ~20 s wall on 2 busy cores, runs/sigma_descent
    python -m simulate.sigma_descent --project clip --out runs/sigma_clip
    python -m simulate.sigma_descent --compare runs/sigma_descent runs/sigma_clip   # markdown side by side

Writes config.json, steps.csv, evals.csv, checks.json, counterexamples/*.npz, sigma_descent.png/.pdf (and
sigma_cl.npy / sigma_ns.npy with --save-sigma) into --out, and prints the verdict table. Option values are
taken from the dataclass defaults, then --config FILE.json, then the flags given on the command line.
Bad values exit with status 2 and one line on stderr; so does a NaN / inf (naming the step, after
writing what was computed). See simulate/engine.py for the modelling choices and their defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .engine import (
    DEFAULT_ETA,
    PROJECTIONS,
    SIGMA_MODES,
    VIEWS,
    SigmaConfig,
    derive_seeds,
    load_checkpoint,
    run_sigma_descent,
    validate_config,
)

__all__ = ["build_parser", "config_from_args", "main"]

_D = SigmaConfig()
_PROG = "python -m simulate.sigma_descent"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors in ONE line ("prog: error: ...") with exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog=_PROG,
        description="Coupled CL/NSCL similarity-space descent (Eq. 1) with per-step checks of Lemmas 1-8, Cor. 3, "
                    "Thm. 1 and Cors. 1-2. Defaults are SigmaConfig's (shown below).",
        argument_default=argparse.SUPPRESS,
    )
    a = p.add_argument
    g = p.add_argument_group("problem")
    g.add_argument("--n", type=int, help=f"reference samples N (default {_D.n})")
    g.add_argument("--classes", type=int, help=f"balanced classes C, N divisible by C (default {_D.classes})")
    g.add_argument("--batch-size", type=int, dest="batch_size", help=f"B anchors per step (default {_D.batch_size})")
    g.add_argument("--tau", type=float, help=f"temperature (default {_D.tau})")
    g.add_argument("--eta", type=float,
                   help=f"step size; the base value for --eta-schedule cosine (default {DEFAULT_ETA}: moves Sigma by "
                        f"~40%% and CL/NSCL CKA to ~0.98 over the default 1000 steps)")
    g.add_argument("--eta-schedule", dest="eta_schedule",
                   help=f"constant | cosine | path/to/eta.npy with T step sizes (default {_D.eta_schedule})")
    g.add_argument("--steps", type=int, help=f"T steps (horizon of Delta_(C,delta)) (default {_D.steps})")
    g.add_argument("--delta", type=float, help=f"confidence delta in (0, 1) (default {_D.delta})")
    g = p.add_argument_group("modelling options (see simulate/engine.py)")
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
                   help=f"none: Eq. 1 exactly; clip: touched entries onto [-1, 1] (default {_D.project})")
    g = p.add_argument_group("Sigma_0")
    g.add_argument("--separation", type=float, help=f"class-mean norm, 0 = no class structure (default {_D.separation})")
    g.add_argument("--embed-dim", type=int, dest="embed_dim", help=f"embedding dimension (default {_D.embed_dim})")
    g.add_argument("--aug-noise", type=float, dest="aug_noise",
                   help=f"view-slot perturbation (default {_D.aug_noise}: positives start at cos ~0.8)")
    g.add_argument("--init-path", dest="init_path", help="embeddings .npy (N, d) or (N, V, d) of a real encoder")
    g.add_argument("--labels-path", dest="labels_path", help="labels .npy (N,) for --init-path")
    g = p.add_argument_group("seeds")
    g.add_argument("--seed", type=int, help="derive --init-seed, --batch-seed, --aug-seed from one seed")
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
                   help="stop after K steps with a checkpoint (simulated interruption; continue with --resume)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (bit-exact)")
    g.add_argument("--save-sigma", dest="save_sigma", action="store_true", help="write sigma_cl.npy, sigma_ns.npy")
    g.add_argument("--no-plot", dest="plot", action="store_false", help="skip the figure")
    g.add_argument("--config", help="JSON file of SigmaConfig fields (flags given here override it)")
    g.add_argument("--out", help="output directory (default runs/sigma_descent)")
    g.add_argument("--threads", type=int,
                   help="torch intra-op threads (default 1: the per-step tensors are B x 2B; threading small ops "
                        "costs more than it gains and collapses on oversubscribed cores)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    g.add_argument("--compare", nargs="+", metavar="DIR",
                   help="print a markdown table of several runs' checks.json side by side and exit")
    return p


_NOT_CONFIG = {"config", "out", "quiet", "compare", "resume", "seed", "threads"}


def config_from_args(ns: argparse.Namespace, base: dict | None = None) -> SigmaConfig:
    """SigmaConfig from defaults <- ``base`` (e.g. --config or a checkpoint) <- flags given explicitly."""
    d = SigmaConfig().to_dict()
    if base:
        d.update(base)
    if getattr(ns, "config", None):
        p = Path(ns.config)
        if not p.is_file():
            raise ValueError(f"config file not found: {p}")
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {p} is not valid JSON: {e}") from None
        if isinstance(doc, dict) and "config" in doc and isinstance(doc["config"], dict):
            doc = doc["config"]  # accept a run's config.json
        if not isinstance(doc, dict):
            raise ValueError(f"config file {p} must hold a JSON object")
        d.update(doc)
    given = {k: v for k, v in vars(ns).items() if k not in _NOT_CONFIG}
    if "seed" in vars(ns):
        i, b, a = derive_seeds(ns.seed)
        d.update(init_seed=i, batch_seed=b, aug_seed=a)
    d.update(given)
    return SigmaConfig.from_dict(d)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = parser.parse_args(argv)
    quiet = bool(getattr(ns, "quiet", False))
    try:
        if getattr(ns, "compare", None):
            from .checks import compare_checks

            print(compare_checks(ns.compare))
            return 0
        threads = getattr(ns, "threads", 1)
        if threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got threads={threads}")
        import torch

        torch.set_num_threads(threads)
        out = Path(getattr(ns, "out", "runs/sigma_descent"))
        resume = bool(getattr(ns, "resume", False))
        base = None
        if resume:
            base = load_checkpoint(out)["config"]
            base = {k: v for k, v in base.items() if k not in ("stop_after",)}
            base["stop_after"] = None
        cfg = config_from_args(ns, base)
        validate_config(cfg)
        res = run_sigma_descent(cfg, out, quiet=quiet, resume=resume, argv=[_PROG] + argv)
    except ValueError as e:  # includes NonFiniteError (outputs so far are written)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"{_PROG}: error: {msg}\n")
        return 2
    if not quiet:
        print(res.verdict)
        state = "completed" if res.completed else f"stopped after {res.steps_completed} steps (resume with --resume)"
        cka = f"{res.cka:.6f}" if res.cka is not None else "-"
        rsa = f"{res.rsa:.6f}" if res.rsa is not None else "-"
        print(f"\n{state}; drift ||S^CL - S^NSCL||_F = {res.drift:.6g}, CKA = {cka}, RSA = {rsa}; "
              f"Delta = {res.constants['Delta']:.4g}, eps = {res.constants['eps']:.4g}; "
              f"{res.steps_per_s:.1f} steps/s, {res.wall_s:.1f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
