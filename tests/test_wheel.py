"""A normal (non-editable) install ships every package and its data files: build the wheel, install it into a
temporary directory, and run the main job from another working directory with only that directory on the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("theory", "simulate", "experiments", "figures", "runio")


def _copy_sources(dst: Path) -> None:
    """pyproject + the packages (no build/ or egg-info in the shared checkout, no __pycache__)."""
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    for f in ("README.md", "LICENSE"):
        if (ROOT / f).is_file():
            shutil.copy(ROOT / f, dst / f)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def test_wheel_ships_package_data_and_runs_from_elsewhere(tmp_path):
    src, wheels, site, work = (tmp_path / d for d in ("src", "wheels", "site", "work"))
    for d in (src, wheels, work):
        d.mkdir()
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    r = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob("simdescent-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    data = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
                  if p.is_file() and p.suffix in (".mplstyle", ".toml", ".json") and "__pycache__" not in p.parts)
    assert "simulate/style.mplstyle" in data
    missing = [d for d in data if d not in names]
    assert not missing, f"data files left out of the wheel: {missing}"
    r = subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(whl)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    code = ("import simulate, runio, sys; assert simulate.__file__.startswith(sys.argv[1]), simulate.__file__; "
            "from simulate.sigma_descent import main; sys.exit(main(sys.argv[2:]))")
    out = work / "run"
    r = subprocess.run([sys.executable, "-c", code, str(site), "--n", "12", "--classes", "3", "--batch-size", "6",
                        "--steps", "4", "--eval-every", "2", "--lemma5-trials", "5", "--embed-dim", "8", "--quiet",
                        "--out", str(out)], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "sigma_descent.png").stat().st_size > 1000  # the plot needed simulate/style.mplstyle
    assert (out / "checks.json").is_file() and (out / "config.json").is_file()
    assert not (work / "simulate").exists()  # nothing ran from a copy of the sources in the working directory
