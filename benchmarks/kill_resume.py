"""Kill-and-resume: SIGKILL the long runs at random times, resume them, and compare with an uninterrupted run.

    python -m benchmarks.kill_resume                          # >= 20 kills of Sigma-descent, >= 10 of bound_vs_empirical
    python -m benchmarks.kill_resume --sigma-kills 5 --bve-kills 0 --seed 1

For each workload: one uninterrupted reference run, then trials. A trial starts the CLI in a fresh output
directory, SIGKILLs it after a random delay (uniform over [0.15, 0.85] x the reference wall time, so kills land
during start-up, inside steps, during checkpoint writes and during the final file writes), restarts it -- with
``--resume`` (Sigma-descent: when a checkpoint exists, else afresh) -- possibly kills it again, and finally lets
it finish. Checked after every trial:

* every result file is bit-identical to the reference run's, except timings: JSON files are compared with the
  keys ``wall_s``, ``train_wall_s``, ``timing``, ``command_line`` (a resumed run names ``--resume``),
  ``git_revision`` (commits may land meanwhile) and ``resumed_from`` (the record of the resume) removed and the
  run's own output directory path replaced by ``<out>``, ``timing.json`` is skipped; PDFs are written with
  ``SOURCE_DATE_EPOCH=0``; a ``.pt`` file whose bytes differ is compared by content (every tensor bitwise: a
  resumed state pickles with another memo layout) and counted in the summary;
* no temporary file (``.*.tmp``) and no lock file is left; stale temporary files found after a kill are
  counted (the next run removes them when it takes the directory's lock, runio.outdir.OutDirLock).

The runs execute a frozen copy of the packages (``<work>/src``), so edits of the checkout meanwhile do not count.
Prints one line per trial and a summary; exits 1 if any trial differs. Runs outside the test suite (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# timings, the command line (a resumed run names --resume and another --out), the git revision (commits may
# land while the benchmark runs) and the record of where a run was resumed from are not results
TIMING_KEYS = ("wall_s", "train_wall_s", "timing", "command_line", "git_revision", "resumed_from")
SKIP_FILES = ("timing.json",)
#: .pt files whose bytes differed but whose loaded contents were equal (reported in the summary)
CONTENT_COMPARED: list[str] = []

SIGMA_ARGS = ["--n", "100", "--classes", "10", "--batch-size", "32", "--steps", "40", "--eval-every", "10",
              "--checkpoint-every", "3", "--lemma5-trials", "20", "--embed-dim", "16", "--quiet", "--threads", "1"]
BVE_ARGS = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
            "--classes", "3", "--n-per-class", "16", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
            "--ref-batch", "6", "--batch-size", "16", "--delta", "0.5", "--epochs", "8", "--eval-every", "3",
            "--theory-evals", "3", "--g-pairs", "2", "--lp-iters", "5", "--losses", "CL", "NSCL", "SCL", "CE",
            "--surrogate", "--anchors", "first", "--quiet", "--save-weights", "--momentum", "0.5",
            "--checkpoint-every", "1", "--threads", "1"]


#: the code the runs execute: a frozen copy of the packages (set by :func:`freeze`), so that edits of the
#: checkout while the benchmark runs cannot make the reference and the resumed runs differ
CODE = ROOT
PACKAGES = ("theory", "simulate", "experiments", "figures", "runio")


def freeze(work: Path) -> Path:
    """Copy the packages into ``work/src`` and run every command from there."""
    global CODE
    src = work / "src"
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    CODE = src
    return src


def _env() -> dict:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = "0"  # deterministic PDF metadata
    env["PYTHONPATH"] = str(CODE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _load_pt(p: Path):
    import torch

    from runio.checkpoint import load_checkpoint

    try:
        return load_checkpoint(p, weights_only=False)
    except ValueError:  # not in the runio checkpoint format (e.g. weights_init.pt)
        return torch.load(p, weights_only=False)


def _same_content(x, y) -> bool:
    """Exact equality of nested checkpoint contents (tensors and arrays bitwise, NaN == NaN)."""
    import torch

    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_content(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same_content(u, v) for u, v in zip(x, y))
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return x.dtype == y.dtype and x.shape == y.shape and bool(torch.equal(x.view(torch.uint8) if x.numel() and
                                                                               x.is_contiguous() else x, y.view(
            torch.uint8) if y.numel() and y.is_contiguous() else y))
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (x != x and y != y)
    return type(x) is type(y) and x == y


def result_files(d: Path) -> dict[str, Path]:
    return {str(p.relative_to(d)): p for p in sorted(d.rglob("*")) if p.is_file() and p.name not in SKIP_FILES}


def compare(ref: Path, got: Path) -> list[str]:
    """Names of the files that differ (or exist on one side only), timings excluded."""
    a, b = result_files(ref), result_files(got)
    bad = sorted(set(a) ^ set(b))
    for name in sorted(set(a) & set(b)):
        if name.endswith(".json"):  # the run's own output directory, named in its records, is "<out>" on both sides
            ta, tb = a[name].read_text().replace(str(ref), "<out>"), b[name].read_text().replace(str(got), "<out>")
            same = _strip(json.loads(ta)) == _strip(json.loads(tb))
        else:
            same = a[name].read_bytes() == b[name].read_bytes()
            if not same and name.endswith(".pt"):  # pickle memo layout may differ: compare the loaded content
                same = _same_content(_load_pt(a[name]), _load_pt(b[name]))
                CONTENT_COMPARED.append(name)
        if not same:
            bad.append(name)
    return bad


def leftovers(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock")


def run(cmd: list[str], timeout: float | None) -> tuple[str, float]:
    """('done', wall) or ('killed', wall): SIGKILL after ``timeout`` seconds if still running."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=CODE, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return "killed", time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {p.returncode}: {err.decode()[-400:]}")
    return "done", time.perf_counter() - t0


def workload(name: str, module: str, args: list[str], ckpt: str, always_resume: bool, kills_wanted: int,
             max_kills_per_trial: int, rng: np.random.Generator, work: Path) -> dict:
    base = [sys.executable, "-m", module, *args]
    ref = work / f"{name}_ref"
    _, wall = run(base + ["--out", str(ref)], None)
    assert not leftovers(ref), leftovers(ref)
    print(f"{name}: reference run {wall:.1f} s, {len(result_files(ref))} result files")
    kills = trials = stale_tmp = resumes = 0
    failures = []
    while kills < kills_wanted:
        trials += 1
        out = work / f"{name}_trial{trials}"
        k_trial = 0
        started = False
        while True:
            resume = started and (always_resume or (out / ckpt).is_file())
            cmd = base + ["--out", str(out)] + (["--resume"] if resume else [])
            resumes += resume
            kill = k_trial < max_kills_per_trial and kills < kills_wanted
            try:
                state, _ = run(cmd, float(rng.uniform(0.15, 0.85)) * wall if kill else None)
            except RuntimeError as e:  # a restart that fails is a failed trial (reported), not the end
                state = "failed"
                failures.append({"trial": trials, "error": str(e)[-300:], "after_kills": k_trial})
                print(f"{name} trial {trials}: restart after {k_trial} kill(s) FAILED: {str(e)[-300:]}")
                keep = work / f"{name}_failed{trials}"
                if out.exists():
                    shutil.copytree(out, keep)
            started = True
            if state == "failed":
                break
            if state == "done":
                break
            kills += 1
            k_trial += 1
            stale_tmp += sum(1 for p in out.rglob("*.tmp")) if out.exists() else 0
        if state == "failed":
            shutil.rmtree(out, ignore_errors=True)
            continue
        diff = compare(ref, out)
        left = leftovers(out)
        ok = not diff and not left
        if not ok:
            failures.append({"trial": trials, "differs": diff, "left": left})
        print(f"{name} trial {trials}: {k_trial} kill(s), {'identical' if ok else 'DIFFERS ' + str(diff + left)}")
        if ok:
            shutil.rmtree(out)
    return {"workload": name, "kills": kills, "trials": trials, "resumes": resumes, "stale_tmp_removed": stale_tmp,
            "reference_wall_s": wall, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__.splitlines()[0])
    ap.add_argument("--sigma-kills", type=int, default=20, help="SIGKILLs of simulate.sigma_descent")
    ap.add_argument("--bve-kills", type=int, default=10, help="SIGKILLs of experiments.bound_vs_empirical")
    ap.add_argument("--kills-per-trial", type=int, default=2, help="at most this many kills before a run may finish")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    ap.add_argument("--recompare", metavar="DIR", help="only compare the kept <name>_trial* directories of DIR with "
                    "<name>_ref again (e.g. after changing what counts as a timing) and exit")
    a = ap.parse_args(argv)
    if a.recompare:
        bad = 0
        for ref in sorted(Path(a.recompare).glob("*_ref")):
            for got in sorted(ref.parent.glob(ref.name[:-4] + "_trial*"), key=lambda p: int(p.name.split("trial")[1])):
                diff = compare(ref, got) + leftovers(got)
                bad += bool(diff)
                print(f"{got.name}: {'identical' if not diff else 'DIFFERS ' + str(diff)}")
        return 1 if bad else 0
    rng = np.random.default_rng(a.seed)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="kill_resume_"))
    work.mkdir(parents=True, exist_ok=True)
    freeze(work)
    t0 = time.perf_counter()
    res = []
    try:
        if a.sigma_kills > 0:
            res.append(workload("sigma_descent", "simulate.sigma_descent", SIGMA_ARGS, "checkpoint.pt", False,
                                a.sigma_kills, a.kills_per_trial, rng, work))
        if a.bve_kills > 0:
            res.append(workload("bound_vs_empirical", "experiments.bound_vs_empirical", BVE_ARGS, "ckpt.pt", True,
                                a.bve_kills, a.kills_per_trial, rng, work))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    for r in res:
        print(f"{r['workload']}: {r['kills']} SIGKILLs in {r['trials']} trials ({r['resumes']} resumed starts), "
              f"{r['trials'] - len(r['failures'])}/{r['trials']} bit-identical to the uninterrupted run (timings "
              f"excluded), stale .tmp files after kills: {r['stale_tmp_removed']} (all removed on restart), "
              f"reference run {r['reference_wall_s']:.1f} s")
    if CONTENT_COMPARED:
        names = sorted(set(CONTENT_COMPARED))
        print(f"{len(CONTENT_COMPARED)} .pt file(s) ({', '.join(names)}) equal in content (every tensor bitwise) but "
              f"not byte for byte (pickle memo layout of a resumed state)")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 1 if any(r["failures"] for r in res) else 0


if __name__ == "__main__":
    sys.exit(main())
