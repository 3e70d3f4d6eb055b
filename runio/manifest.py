"""Manifest pieces: git revision and state, package versions, the command line."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["git_revision", "git_state", "package_versions", "command_line"]

#: the repository this package sits in (default working directory of the git queries)
_REPO = Path(__file__).resolve().parent.parent
_GIT_TIMEOUT_S = 10


def _git(args: Sequence[str], cwd: Path) -> str | None:
    """stdout of ``git args`` in ``cwd`` (stripped), or None if git is missing, fails or times out."""
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_revision(cwd: str | os.PathLike | None = None) -> str | None:
    """Commit hash of HEAD of the git checkout holding ``cwd`` (default: this repository); None where there is
    no checkout, no commit or no git."""
    return _git(["rev-parse", "HEAD"], Path(cwd) if cwd is not None else _REPO) or None


def git_state(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """{"revision": :func:`git_revision`, "dirty": tracked files modified (bool), None where unknown}."""
    where = Path(cwd) if cwd is not None else _REPO
    out: dict[str, Any] = {"revision": git_revision(where), "dirty": None}
    if out["revision"] is not None:
        status = _git(["status", "--porcelain", "--untracked-files=no"], where)
        if status is not None:
            out["dirty"] = bool(status)
    return out


def package_versions(*modules: str) -> dict[str, str | None]:
    """{"python": version, module: its ``__version__`` as str (None if it cannot be imported)} in argument order."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            out[name] = None
            continue
        v = getattr(mod, "__version__", None)
        out[name] = None if v is None else str(v)
    return out


def command_line() -> list[str]:
    """The command line of this process (a copy of ``sys.argv``)."""
    return list(sys.argv)
