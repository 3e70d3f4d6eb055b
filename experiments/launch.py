"""Launchers of a sweep's runs: ``local`` (a pool of subprocesses over CPU slots or visible GPUs), ``slurm`` and
``submitit-local`` (submitit's AutoExecutor / LocalExecutor, optional extra ``pip install -e .[cluster]``).

Every launcher executes the same unit of work, one run directory holding ``point.json``
(experiments.sweep_run). The local launcher starts ``python -m experiments.sweep_run RUN_DIR`` per run, or
``torchrun --standalone --nproc_per_node=G -m experiments.sweep_run RUN_DIR`` when the sweep asks for DDP,
with ``CUDA_VISIBLE_DEVICES`` naming the run's GPU(s) and the torch thread count in ``SIMDESCENT_THREADS``; each
run's stdout/stderr go to ``RUN_DIR/log.txt``. SIGINT / SIGTERM to the sweep are forwarded to the running runs
(the trainer saves a checkpoint and stops), so the next invocation resumes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["worker_command", "gpu_slots", "run_local", "run_submitit", "submitit_available", "LaunchResult"]

LaunchResult = dict[str, Any]  # {"run_dir", "returncode", "wall_s", "error"}


def worker_command(run_dir: str | Path, nproc_per_node: int = 1, python: str | None = None) -> list[str]:
    """The command that runs one grid point: python -m experiments.sweep_run, or torchrun for nproc_per_node > 1.

    >>> worker_command("runs/x/runs/C-2", 4)[:4]
    ['torchrun', '--standalone', '--nproc_per_node=4', '-m']
    """
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be an integer >= 1, got nproc_per_node={nproc_per_node!r}")
    if nproc_per_node == 1:
        return [python or sys.executable, "-m", "experiments.sweep_run", str(run_dir)]
    return ["torchrun", "--standalone", f"--nproc_per_node={nproc_per_node}", "-m", "experiments.sweep_run",
            str(run_dir)]


def gpu_slots(gpus: Any, nproc_per_node: int = 1) -> list[str]:
    """CUDA_VISIBLE_DEVICES value of each concurrent GPU slot ([] = run on CPU slots).

    ``gpus``: "auto" (torch.cuda.device_count(), honouring an existing CUDA_VISIBLE_DEVICES), "none", an int
    count, or a list of device ids. Slots group ``nproc_per_node`` consecutive devices.
    """
    if gpus == "none" or gpus == 0:
        return []
    if gpus == "auto":
        vis = os.environ.get("CUDA_VISIBLE_DEVICES")
        import torch

        n = torch.cuda.device_count()
        ids = [s.strip() for s in vis.split(",") if s.strip()][:n] if vis else [str(i) for i in range(n)]
    elif isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0:
        ids = [str(i) for i in range(gpus)]
    elif isinstance(gpus, list) and gpus and all(isinstance(g, (int, str)) for g in gpus):
        ids = [str(g) for g in gpus]
    else:
        raise ValueError(f"gpus must be 'auto', 'none', a count >= 0 or a list of device ids, got gpus={gpus!r}")
    k = nproc_per_node
    return [",".join(ids[i:i + k]) for i in range(0, len(ids) - k + 1, k)]


class _Children:
    """Running subprocesses, so that a signal to the sweep reaches them."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def signal_all(self, signum: int) -> None:
        with self.lock:
            self.stopping = True
            for p in list(self.procs):
                if p.poll() is None:
                    try:
                        p.send_signal(signum)
                    except ProcessLookupError:
                        pass


def run_local(run_dirs: Sequence[str | Path], jobs: int = 1, threads: int = 1, gpus: Any = "none",
              nproc_per_node: int = 1, on_done: Callable[[LaunchResult], None] | None = None,
              python: str | None = None) -> list[LaunchResult]:
    """Run every directory's point as a subprocess, ``jobs`` at a time (CPU) or one per GPU slot.

    Returns one LaunchResult per run in input order. On SIGINT/SIGTERM the running children get the same signal
    (they checkpoint and exit) and no new run starts; the signal is re-raised as KeyboardInterrupt afterwards.
    """
    slots = gpu_slots(gpus, nproc_per_node)
    if not slots:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got jobs={jobs!r}")
        slots = [""] * jobs
        cpu = True
    else:
        cpu = False
    free: list[str] = list(slots)
    free_lock = threading.Lock()
    kids = _Children()
    results: list[LaunchResult | None] = [None] * len(run_dirs)

    def one(i: int) -> None:
        d = Path(run_dirs[i])
        if kids.stopping:
            results[i] = {"run_dir": str(d), "returncode": None, "wall_s": 0.0, "error": "not started (sweep stopped)"}
            return
        with free_lock:
            slot = free.pop()
        env = dict(os.environ)
        env["SIMDESCENT_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
        if not cpu:
            env["CUDA_VISIBLE_DEVICES"] = slot
        t0 = time.perf_counter()
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / "log.txt", "ab") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(worker_command(d, nproc_per_node, python))}"
                          f" (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')!r})\n".encode())
                log.flush()
                with kids.lock:
                    if kids.stopping:
                        results[i] = {"run_dir": str(d), "returncode": None, "wall_s": 0.0,
                                      "error": "not started (sweep stopped)"}
                        return
                    p = subprocess.Popen(worker_command(d, nproc_per_node, python), stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # signals reach a child once, via the sweep
                    kids.procs.add(p)
                rc = p.wait()
                with kids.lock:
                    kids.procs.discard(p)
            err = None if rc == 0 else _last_error(d / "log.txt")
            results[i] = {"run_dir": str(d), "returncode": rc, "wall_s": time.perf_counter() - t0, "error": err}
        finally:
            with free_lock:
                free.append(slot)
        if on_done is not None:
            on_done(results[i])  # type: ignore[arg-type]

    main = threading.current_thread() is threading.main_thread()
    old: dict[int, Any] = {}
    got: list[int] = []
    if main:
        def handler(signum: int, frame: Any) -> None:
            got.append(signum)
            kids.signal_all(signum)

        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    try:
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            futs = [pool.submit(one, i) for i in range(len(run_dirs))]
            while not all(f.done() for f in futs):
                time.sleep(0.05)
            for f in futs:
                f.result()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        raise KeyboardInterrupt(f"sweep stopped by signal {got[0]}; running runs checkpointed, rerun to resume")
    return [r for r in results if r is not None]


def _last_error(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errs = [ln for ln in lines if "error" in ln.lower()]
    return (errs or lines or ["(empty log)"])[-1][:300]


# ----------------------------------------------------------------------------------------------------------
# submitit
def submitit_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("submitit") is not None


def _submitit_entry(run_dir: str, nproc_per_node: int) -> dict:
    """Runs inside a submitit job: DDP environment from slurm when several tasks, then the grid point."""
    if nproc_per_node > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    from .sweep_run import run_point

    return run_point(run_dir)


def run_submitit(run_dirs: Sequence[str | Path], folder: str | Path, local: bool = False,
                 parameters: dict[str, Any] | None = None, nproc_per_node: int = 1, wait: bool = True,
                 on_done: Callable[[LaunchResult], None] | None = None) -> list[LaunchResult]:
    """Submit one job per run directory through submitit (slurm, or its LocalExecutor with ``local=True``).

    ``parameters`` go to ``executor.update_parameters`` (e.g. slurm_partition, timeout_min, gpus_per_node);
    with ``nproc_per_node`` > 1 the job gets that many tasks on one node. ``wait=False`` returns after submitting
    (job ids in "error" = None, "returncode" = None). Raises ValueError when submitit is not installed.
    """
    if not submitit_available():
        raise ValueError("launcher needs submitit: pip install -e .[cluster] (or pip install submitit)")
    import submitit

    folder = Path(folder)
    params = dict(parameters or {})
    if local:
        ex = submitit.LocalExecutor(folder=str(folder))
        params.setdefault("timeout_min", 60)
    else:
        try:
            ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        except RuntimeError as e:  # no srun on this machine
            raise ValueError(f"launcher 'slurm' needs a slurm cluster: {str(e).splitlines()[0]}") from None
        params.setdefault("tasks_per_node", nproc_per_node)
        params.setdefault("nodes", 1)
    try:
        ex.update_parameters(**params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"[slurm] parameters rejected by submitit: {str(e).splitlines()[0]}") from None
    jobs = []
    t0 = time.perf_counter()
    for d in run_dirs:
        jobs.append(ex.submit(_submitit_entry, str(d), nproc_per_node))
    out: list[LaunchResult] = []
    for d, j in zip(run_dirs, jobs):
        if not wait:
            out.append({"run_dir": str(d), "returncode": None, "wall_s": 0.0, "error": None, "job_id": j.job_id})
            continue
        try:
            rec = j.result()
            res = {"run_dir": str(d), "returncode": 0, "wall_s": time.perf_counter() - t0, "error": None,
                   "job_id": j.job_id, "status": rec.get("status")}
        except Exception as e:  # noqa: BLE001 - submitit wraps the job's exception; keep its last line
            res = {"run_dir": str(d), "returncode": 1, "wall_s": time.perf_counter() - t0,
                   "error": (str(e).strip().splitlines() or [type(e).__name__])[-1][:300], "job_id": j.job_id}
        out.append(res)
        if on_done is not None:
            on_done(res)
    return out
