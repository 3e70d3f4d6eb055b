"""One grid point of a sweep, run in its own process: ``python -m experiments.sweep_run RUN_DIR``.

``RUN_DIR/point.json`` (written by the sweep driver) holds the point's RunConfig fields; this module runs
``experiments.bound_vs_empirical.run_experiment`` on it, resuming from the run's checkpoint when the run is
``partial``, and does nothing when it is ``done``. It is what every launcher executes: the local launcher as a
subprocess (one per CPU slot or GPU, ``CUDA_VISIBLE_DEVICES`` set), torchrun for ``nproc_per_node > 1``, and
submitit (slurm or its local executor) through :func:`run_point`.

Exit status: 0 done (or already done), 1 the run failed (one line on stderr), 2 bad point.json.
"""

from __future__ import annotations

import inspect
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from runio import read_json, write_json

__all__ = ["POINT_FILE", "STATUS_FILE", "run_status", "run_point", "main"]

POINT_FILE = "point.json"
STATUS_FILE = "sweep_status.json"
THREADS_ENV = "SIMDESCENT_THREADS"
_OWN_FILES = (POINT_FILE, STATUS_FILE, "log.txt")


def run_status(out_dir: str | Path) -> str:
    """'done' | 'partial' | 'absent' of a bound_vs_empirical run directory.

    ``experiments.bound_vs_empirical.run_status`` (when it exists), except that a directory holding only the
    sweep's own files (point.json, log.txt, sweep_status.json) is 'absent': the run never wrote anything.
    Without it: done = metrics.json written (the last file of a run), partial = any other output present.
    """
    from . import bound_vs_empirical as bve

    d = Path(out_dir)
    if not d.is_dir() or all(p.name in _OWN_FILES for p in d.iterdir()):
        return "absent"
    fn = getattr(bve, "run_status", None)
    if fn is not None:
        return str(fn(d))
    return "done" if (d / "metrics.json").is_file() else "partial"


def _run_experiment(cfg: Any, resume: bool) -> dict:
    from . import bound_vs_empirical as bve

    if "resume" in inspect.signature(bve.run_experiment).parameters:
        return bve.run_experiment(cfg, resume=resume)
    return bve.run_experiment(cfg)  # before resume support: a partial run starts again


def run_point(run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume, or skip) the grid point in ``run_dir``; returns {"status", "wall_s", "resumed"}.

    ``cpu_s``: user + system CPU seconds of this process (load-independent, unlike ``wall_s`` on a shared machine).
    Raises ValueError (one line) for a missing / malformed point.json; training errors propagate.
    """
    from .config import config_from_dict

    d = Path(run_dir)
    pf = d / POINT_FILE
    if not pf.is_file():
        raise ValueError(f"no {POINT_FILE} in {str(d)!r}: not a sweep run directory")
    point = read_json(pf)
    cfg = config_from_dict(point["config"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ValueError(f"WORLD_SIZE={world}: experiments.bound_vs_empirical runs in one process (no DDP context "
                         "yet); use nproc_per_node = 1, or experiments.train under torchrun for training alone")
    threads = int(os.environ.get(THREADS_ENV, "0") or 0) or cfg.threads
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    before = run_status(d)
    if before == "done":
        return {"status": "done", "wall_s": 0.0, "resumed": False, "skipped": True}
    t0 = time.perf_counter()
    _run_experiment(cfg, resume=True)  # resumes from ckpt.pt when there is one, else starts fresh
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rec = {"status": run_status(d), "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
           "resumed": before == "partial", "skipped": False}
    write_json(d / STATUS_FILE, rec)
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("sweep_run: error: expected one argument RUN_DIR", file=sys.stderr)
        return 2
    try:
        rec = run_point(args[0])
    except ValueError as e:
        print(f"sweep_run: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2 if "point.json" in str(e) or "WORLD_SIZE" in str(e) else 1
    except Exception as e:  # noqa: BLE001 - a failed run is one line in the sweep's table, the log keeps the rest
        import traceback

        traceback.print_exc()
        print(f"sweep_run: error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    print(f"sweep_run: {args[0]}: {rec['status']} ({rec['wall_s']:.1f} s{', resumed' if rec['resumed'] else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
