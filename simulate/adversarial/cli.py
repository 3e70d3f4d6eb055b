"""``python -m simulate.adversarial``: the command line of the adversarial search (options, run record
config.json, output lock, the printed summary table).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runio import write_json
from runio.cli import OneLineParser, comma_list, fail, parse_with_config, record
from runio.outdir import OutDirLock

from .problem import COMPOSITIONS, IDS, SYM_GRADS
from .runner import run_adversarial, summarize

__all__ = ["main"]


def _list(s: str, conv=str) -> list:
    return [conv(v) for v in s.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulate.adversarial``: maximise LHS/RHS of Lemmas 2, 3, 6, 8 over bounded similarities."""
    ap = OneLineParser(prog="python -m simulate.adversarial", description=main.__doc__)
    ap.add_argument("--claims", default="L2,L3,L6,L8", help="comma list of claims to maximise LHS/RHS of")
    ap.add_argument("--batch-size", type=int, default=4, help="B")
    ap.add_argument("--classes", type=int, default=2, help="C")
    ap.add_argument("--tau", default="0.1,0.5", help="comma list")
    ap.add_argument("--compositions", default=",".join(COMPOSITIONS), help="comma list of batch compositions")
    ap.add_argument("--sigma", default="ordered,symmetric", help="comma list of Sigma parameterisations")
    ap.add_argument("--sym-grad", default="sum", choices=SYM_GRADS, help="symmetric gradient convention")
    ap.add_argument("--ids", default="position", choices=IDS, help="positive = own other view (position) or any view of the sample")
    ap.add_argument("--diag", default="free", choices=("fixed", "free"), help="Sigma(i,i) a variable (free) or the constant 1")
    ap.add_argument("--eps", default="auto", help="'auto' (smallest eps for which the batch is in the event) or a number")
    ap.add_argument("--delta", type=float, default=None, help="use eps = eps_{B,delta} with --steps (overrides --eps) (default: none)")
    ap.add_argument("--steps", type=int, default=1, help="T in eps_{B,delta}")
    ap.add_argument("--restarts", type=int, default=4, help="random restarts per search (default: 4)")
    ap.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    ap.add_argument("--out", default="runs/adversarial", help="output folder (adversarial.json, adversarial.npz); '': none")
    ap.add_argument("--quiet", action="store_true")
    args = parse_with_config(ap, argv)
    lock = None
    try:
        eps = args.eps if args.eps == "auto" else comma_list(args.eps, float, "eps")[0]
        out_dir = Path(args.out) if args.out else None
        if out_dir is not None:  # checked and locked before the search; nothing is left if it fails
            lock = OutDirLock(out_dir).acquire()
        t0 = time.time()
        res = run_adversarial(
            claims=_list(args.claims), B=args.batch_size, C=args.classes, taus=comma_list(args.tau, float, "tau"),
            compositions=_list(args.compositions), sigmas=_list(args.sigma), sym_grad=args.sym_grad,
            ids=args.ids, diag=args.diag, eps=eps, delta=args.delta, steps=args.steps,
            restarts=args.restarts, seed=args.seed, out_dir=out_dir, quiet=args.quiet,
        )  # fmt: skip
        if out_dir is not None:  # the run record: python -m simulate.adversarial --config OUT/config.json
            write_json(out_dir / "config.json", record(args, exclude=("config", "out", "quiet"),
                                                       command_line=[ap.prog, *(sys.argv[1:] if argv is None else argv)]))
    except ValueError as e:
        return fail(ap.prog, e)
    finally:
        if lock is not None:
            lock.release()
    print(f"{'claim':<15}| {'max ratio':>10} | {'at':<46} | holds | outside premise")
    for s in summarize(res):
        holds = "n/a" if s["holds"] is None else s["holds"]
        out = s.get("max_ratio_outside_premise")
        print(f"{s['claim']:<15}| {s['max_ratio']:>10.4f} | {s['at']:<46} | {holds!s:<5} | "
              + ("-" if out is None else f"{out:.4f}"))
    if not args.quiet:
        print(f"({len(res)} objectives, {time.time() - t0:.1f} s)")
    return 0
