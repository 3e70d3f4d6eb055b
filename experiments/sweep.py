"""The paper's experiment program as config files: ``python -m experiments.sweep CONFIG.toml [options]``.

A sweep file (format: experiments/sweep_spec.py; examples: ``configs/small/*.toml``, ``configs/paper/*.toml``)
names a base ``bound_vs_empirical`` run and a grid over any of its options. Each grid point is one run
directory ``<out>/runs/<point name>`` (e.g. ``runs/small/fig3_classes/runs/C-5__cseed-1``); the launcher
(``local`` | ``slurm`` | ``submitit-local``, experiments/launch.py) runs the points that are not done, resuming
partial ones from their checkpoints; then every run's results are collected into ONE sweep-level CSV.

Options: ``--dry-run`` lists the runs (status, FLOP-based cost) and runs nothing; ``--shard i/n`` keeps grid
points k with k mod n = i (a scheduler runs the n shards anywhere; a final ``--collect`` gathers them);
``--collect`` only rebuilds the CSV; ``--launcher``, ``--jobs``, ``--out`` override the file; ``--utilisation``
sets the GPU utilisation of the cost estimate.

Outputs in ``<out>``:

* ``sweep.csv`` — one row per (run, evaluation step, reference split, model pair), so it holds every run's
  per-epoch AND final values (``final`` = 1 on the rows of the run's last step). Columns, in this order:
  ``run`` (directory name), ``status`` (done | partial), ``final``, the grid axes by axis name (the value; for a
  bundle axis the bundle's name), ``lr_rule``, ``lr`` (resolved), ``C`` / ``N_train`` / ``total_steps``
  (resolved by the run), then every column of the run's ``metrics.csv`` (``epoch``, ``step``, ``sum_eta``,
  ``split`` train|test, ``pair`` like ``CL-NSCL``, ``model_a``, ``model_b``, ``cka``, ``rsa``, ``linear_cka``, ...,
  ``weight_gap_total``, ``drift_measured``, and on the CL-NSCL rows the certified bounds ``cka_lb``,
  ``cka_lb_sharp``, ``rsa_lb``, ``rsa_lb_sharp``, ``drift_bound``, ``Delta``, ``eps``), then per model of the pair
  (suffix ``_a`` / ``_b``): ``nccc``, ``linear_probe`` (heavy evaluations only), ``train_loss``; then on the
  CL-NSCL rows of heavy evaluations every column of ``theory.csv`` (G, beta, Lem. 7, Thm. 2, loss gap
  ``lossgap_*``); then timings of the run from metrics.json: ``run_s``, ``training_s``, ``evaluations_s``.
  Empty cell = not measured at that step.
* ``sweep.json`` — the sweep file's content, the list of runs with status, wall time and error (if any), and
  the per-run FLOP-based cost estimate.

Re-running skips finished runs (a no-op apart from rewriting sweep.csv); a run killed mid-sweep is resumed
(checkpoint) by the next invocation. A point whose directory holds a point.json with a different config is
refused (one line), never overwritten.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from runio import read_csv, read_json, write_csv, write_json
from runio.cli import OneLineParser, fail
from runio.outdir import check_out_dir

from .sweep_run import POINT_FILE, STATUS_FILE, run_status
from .sweep_spec import GridPoint, SweepSpec, expand_grid, load_sweep, parse_shard, select_shard

__all__ = ["CSV_NAME", "plan", "prepare_dirs", "collect", "run_sweep", "format_plan", "main"]

CSV_NAME = "sweep.csv"
JSON_NAME = "sweep.json"


# ----------------------------------------------------------------------------------------------------------
def plan(spec: SweepSpec, shard: tuple[int, int] | None = None, utilisation: float | None = None) -> list[dict]:
    """One record per grid point (of the shard): {"point", "run_dir", "status", "cost"} (cost: FLOP estimate)."""
    from .cost import DEFAULT_UTILISATION, estimate

    points = expand_grid(spec)
    if shard is not None:
        points = select_shard(points, *shard)
    recs = []
    for p in points:
        d = spec.runs_dir / p.name
        try:
            cost = estimate(p.config, p.hints, utilisation or DEFAULT_UTILISATION)
        except ValueError as e:
            cost = {"error": str(e)}
        recs.append({"point": p, "run_dir": d, "status": run_status(d), "cost": cost})
    return recs


def _point_doc(p: GridPoint) -> dict:
    return {"name": p.name, "axes": p.axes, "lr_rule": p.lr_rule, "hints": p.hints, "config": p.config}


def prepare_dirs(recs: list[dict]) -> None:
    """Write each run's point.json; refuse (ValueError) a directory whose point.json holds another config."""
    for r in recs:
        p: GridPoint = r["point"]
        d: Path = r["run_dir"]
        f = d / POINT_FILE
        if f.is_file():
            from .config import RunConfig

            # a record written before a key existed compares as that key's default (old sweeps stay resumable)
            old = {**RunConfig().to_dict(), **read_json(f).get("config", {})}
            diff = sorted(k for k in set(old) | set(p.config) if old.get(k) != p.config.get(k))
            if diff:
                k = diff[0]
                raise ValueError(f"run directory {str(d)!r} holds a different config ({k}: {old.get(k)!r} -> "
                                 f"{p.config.get(k)!r}); use another [sweep] out or remove that directory")
            continue
        d.mkdir(parents=True, exist_ok=True)
        write_json(f, _point_doc(p))


# ----------------------------------------------------------------------------------------------------------
# collection
def _read(path: Path) -> list[dict]:
    return read_csv(path, numeric=False) if path.is_file() and path.stat().st_size > 0 else []  # cells kept verbatim


_BASE_KEYS = ("epoch", "step", "sum_eta")


def collect_run(p: GridPoint, run_dir: Path) -> list[dict]:
    """sweep.csv rows of one run (see the module docstring); [] if the run wrote no metrics yet."""
    status = run_status(run_dir)
    metrics = _read(run_dir / "metrics.csv")
    if not metrics:
        return []
    models = {(r["step"], r["model"]): r for r in _read(run_dir / "models.csv")}
    theory = {r["step"]: r for r in _read(run_dir / "theory.csv")}
    doc = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    resolved = doc.get("resolved", {})
    timing = doc.get("timing", {})
    last = max(float(r["step"]) for r in metrics)
    cl = resolved.get("contrastive") or ("CL" if "CL" in p.config["losses"] else "DCL")
    head = {"run": p.name, "status": status}
    axes = {k: v if not isinstance(v, (list, tuple)) else "+".join(map(str, v)) for k, v in p.axes.items()}
    rows = []
    for m in metrics:
        row: dict[str, Any] = dict(head)
        row["final"] = status == "done" and float(m["step"]) == last
        row.update(axes)
        row.update({"lr_rule": p.lr_rule, "lr": p.config["lr"], "C": resolved.get("C"),
                    "N_train": resolved.get("N_train"), "total_steps": resolved.get("total_steps")})
        row.update(m)
        for tag, name in (("a", m.get("model_a")), ("b", m.get("model_b"))):
            mr = models.get((m["step"], name), {})
            for k in ("nccc", "linear_probe", "train_loss"):
                row[f"{k}_{tag}"] = mr.get(k)
        if m.get("pair") == f"{cl}-NSCL" and m["step"] in theory:
            row.update({k: v for k, v in theory[m["step"]].items() if k not in _BASE_KEYS})
        for k_out, k_in in (("run_s", "run_s"), ("training_s", "training_s"), ("evaluations_s", "evaluations_s")):
            row[k_out] = timing.get(k_in)
        rows.append(row)
    return rows


def collect(spec: SweepSpec, recs: list[dict] | None = None) -> Path:
    """(Re)write ``<out>/sweep.csv`` from every grid point's run directory; returns its path."""
    if recs is None:
        recs = plan(spec)
    rows: list[dict] = []
    for r in recs:
        rows.extend(collect_run(r["point"], r["run_dir"]))
    lead = ["run", "status", "final", *spec.grid.keys(), "lr_rule", "lr", "C", "N_train", "total_steps"]
    out = Path(spec.out) / CSV_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows, columns=lead)
    return out


def _write_summary(spec: SweepSpec, recs: list[dict], results: dict[str, dict]) -> None:
    runs = []
    for r in recs:
        d = r["run_dir"]
        st = read_json(d / STATUS_FILE) if (d / STATUS_FILE).is_file() else {}
        res = results.get(str(d), {})
        runs.append({"name": r["point"].name, "run_dir": str(d), "status": run_status(d),
                     "wall_s": st.get("wall_s"), "resumed": st.get("resumed"), "error": res.get("error"),
                     "cost_flop_based": r["cost"]})
    doc = {"name": spec.name, "description": spec.description, "path": spec.path, "scale": spec.scale,
           "grid": spec.grid, "base": spec.base, "runs": runs}
    path = Path(spec.out) / JSON_NAME
    if path.is_file():  # keep the runs of other shards
        old = {r["name"]: r for r in read_json(path).get("runs", [])}
        old.update({r["name"]: r for r in runs})
        doc["runs"] = list(old.values())
    write_json(path, doc)


# ----------------------------------------------------------------------------------------------------------
def run_sweep(spec: SweepSpec, shard: tuple[int, int] | None = None, launcher: str | None = None,
              jobs: int | None = None, quiet: bool = False) -> dict:
    """Run every grid point (of the shard) that is not done; collect sweep.csv. Returns a summary dict:
    {"ran", "skipped", "failed" (names), "csv", "wall_s"}."""
    from . import launch

    t0 = time.perf_counter()
    recs = plan(spec, shard)
    prepare_dirs(recs)
    todo = [r for r in recs if r["status"] != "done"]
    skipped = len(recs) - len(todo)
    launcher = launcher or spec.launcher
    results: dict[str, dict] = {}
    if not quiet:
        print(f"{spec.name}: {len(recs)} runs, {skipped} done, {len(todo)} to run "
              f"({sum(r['status'] == 'partial' for r in todo)} to resume) with launcher {launcher}", flush=True)

    lock = threading.Lock()  # on_done runs in the launcher's threads: one sweep.csv writer at a time

    def done(res: dict) -> None:
        with lock:
            results[res["run_dir"]] = res
            if not quiet:
                tag = "ok" if res["returncode"] == 0 else f"FAILED ({res['error']})"
                print(f"  {Path(res['run_dir']).name}: {tag} {res['wall_s']:.1f} s", flush=True)
            collect(spec, recs)

    dirs = [r["run_dir"] for r in todo]
    try:
        if dirs and launcher == "local":
            launch.run_local(dirs, jobs=jobs or spec.jobs, threads=spec.threads,
                             gpus=spec.gpus if _wants_gpu(todo) else "none",
                             nproc_per_node=spec.nproc_per_node, on_done=done)
        elif dirs:
            launch.run_submitit(dirs, Path(spec.out) / "submitit", local=launcher == "submitit-local",
                                parameters=spec.slurm if launcher == "slurm" else {},
                                nproc_per_node=spec.nproc_per_node, on_done=done)
    finally:
        csv_path = collect(spec, recs)
        _write_summary(spec, recs, results)
    failed = [Path(k).name for k, v in results.items() if v["returncode"] != 0]
    return {"ran": len(todo), "skipped": skipped, "failed": failed, "csv": str(csv_path),
            "wall_s": time.perf_counter() - t0}


def _wants_gpu(recs: list[dict]) -> bool:
    return any(r["point"].config["device"] != "cpu" for r in recs)


def format_plan(spec: SweepSpec, recs: list[dict]) -> str:
    """The dry-run table: one line per run (status, steps, TFLOP, FLOP-based GPU-hours) and the totals."""
    lines = [f"{spec.name} ({spec.scale}): {len(recs)} runs -> {spec.out}"]
    if spec.description:
        lines.append(f"  {spec.description}")
    w = max([len(r["point"].name) for r in recs] + [4])
    lines.append(f"  {'run'.ljust(w)}  {'status':>7}  {'steps':>8}  {'TFLOP*':>10}  {'GPU-h*':>8}  {'measured':>9}")
    tot_f = tot_h = tot_floor = 0.0
    for r in recs:
        c = r["cost"]
        if "error" in c:
            lines.append(f"  {r['point'].name.ljust(w)}  {r['status']:>7}  cost: {c['error']}")
            continue
        tot_f += c["total"]
        tot_h += c["gpu_hours"]
        tot_floor += c["gpu_hours_floor"]
        st = r["run_dir"] / STATUS_FILE
        wall = read_json(st).get("wall_s") if r["status"] == "done" and st.is_file() else None
        lines.append(f"  {r['point'].name.ljust(w)}  {r['status']:>7}  {int(c['steps']):>8}  "
                     f"{c['total'] / 1e12:>10.3g}  {c['gpu_hours']:>8.3g}  "
                     f"{'-' if wall is None else f'{wall:.0f} s':>9}")
    from .cost import DEFAULT_UTILISATION, H100_BF16_PEAK

    lines.append(f"  total: {len(recs)} runs, {tot_f / 1e15:.3g} PFLOP, {tot_h:.3g} GPU-hours* "
                 f"(floor at 100 % utilisation: {tot_floor:.3g}); measured = wall time of a finished run here")
    lines.append(f"  * FLOP-based estimate: H100 bf16 dense peak {H100_BF16_PEAK / 1e12:.0f} TFLOP/s at "
                 f"{DEFAULT_UTILISATION:.0%} utilisation unless --utilisation; not a measurement")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m experiments.sweep", raise_errors=True, description=__doc__.split("\n\n")[0],
                epilog="Example: python -m experiments.sweep configs/small/fig3_classes.toml --dry-run")
    p.add_argument("config", help="sweep TOML file (configs/small/*.toml, configs/paper/*.toml)")
    p.add_argument("--dry-run", action="store_true", help="list the runs with status and FLOP-based cost; run nothing")
    p.add_argument("--shard", help="i/n: run grid points k with k mod n == i")
    p.add_argument("--collect", action="store_true", help="only rebuild sweep.csv from the run directories")
    p.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), help="override [sweep] launcher")
    p.add_argument("--jobs", type=int, help="override [sweep] jobs (local launcher, CPU runs)")
    p.add_argument("--out", help="override [sweep] out")
    p.add_argument("--utilisation", type=float, help="GPU utilisation assumed by the cost estimate (default 0.10)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    prog = "sweep"
    try:
        args = build_parser().parse_args(argv)
        spec = load_sweep(args.config)
        if args.out:
            spec.out = args.out
        check_out_dir(spec.out)  # a file or a path below a file: one line, nothing written
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1, got --jobs={args.jobs}")
        shard = parse_shard(args.shard) if args.shard else None
        if args.dry_run:
            print(format_plan(spec, plan(spec, shard, args.utilisation)))
            return 0
        if args.collect:
            print(f"wrote {collect(spec)}")
            return 0
        summary = run_sweep(spec, shard, args.launcher, args.jobs, args.quiet)
    except ValueError as e:
        return fail(prog, e)
    except KeyboardInterrupt as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 130
    print(f"{spec.name}: ran {summary['ran']}, skipped {summary['skipped']} (done), failed {len(summary['failed'])}"
          f"{': ' + ', '.join(summary['failed']) if summary['failed'] else ''}; {summary['csv']} "
          f"({summary['wall_s']:.1f} s)")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
