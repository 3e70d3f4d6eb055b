"""Run records: atomic files, CSV/JSON with non-finite floats, manifests with seeds/versions/git revision.

The one place where result files are written (``experiments``, ``simulate``, ``figures``); ``theory`` never
imports it (no I/O there).

* Atomic writes: the bytes go to a temporary file in the destination directory, which is flushed, ``fsync``-ed
  and ``os.replace``-d over the destination (the directory is fsync-ed where the OS allows). A reader sees the
  previous complete file or the new complete one; if the writer fails, the temporary file is removed and the
  old file is left as it was.
* CSV (:func:`write_csv`): the columns are the union of the rows' keys in first-seen order; ``None`` -> empty
  cell, booleans -> ``1`` / ``0``, floats by ``repr`` (``inf``, ``-inf``, ``nan`` for non-finite ones).
  :func:`read_csv` turns numeric cells back into floats and empty cells into ``None``.
* JSON (:func:`write_json`): by default non-finite floats become the strings ``"inf"`` / ``"-inf"`` /
  ``"nan"`` (strict, valid JSON), numpy scalars become Python numbers and paths strings (:func:`jsonable`);
  ``nonfinite="error"`` refuses them instead, ``nonfinite="literal"`` writes Python's ``NaN`` / ``Infinity``.
* Manifest pieces: :func:`git_revision` / :func:`git_state` (None where there is no git checkout),
  :func:`package_versions`, :func:`command_line`.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "dataclass_from_dict",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "jsonable",
    "json_text",
    "write_json",
    "read_json",
    "csv_cell",
    "write_csv",
    "read_csv",
    "as_float",
    "git_revision",
    "git_state",
    "package_versions",
    "command_line",
    "NONFINITE",
]

#: how :func:`json_text` / :func:`write_json` treat non-finite floats
NONFINITE = ("string", "error", "literal")
#: the repository this package sits in (default working directory of the git queries)
_REPO = Path(__file__).resolve().parent.parent
_GIT_TIMEOUT_S = 10


# ----------------------------------------------------------------------------------------------------------
# atomic files
def _fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, fsync it, then ``os.replace`` it onto
    ``path`` (parent directories are created).

    The temporary file is removed if ``write`` raises; ``path`` then keeps its old content. Returns ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` by ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` by ``text`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------
# JSON
def _nonfinite_name(x: float) -> str:
    return "inf" if x > 0 else "-inf" if x < 0 else "nan"


def jsonable(x: Any) -> Any:
    """Copy of ``x`` that strict JSON can hold: dict keys -> str, tuples -> lists, numpy scalars -> Python
    numbers, ``Path`` -> str, non-finite floats -> ``"inf"`` / ``"-inf"`` / ``"nan"``. Other values unchanged."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else _nonfinite_name(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _check_nonfinite(nonfinite: str) -> None:
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got nonfinite={nonfinite!r}")


def json_text(obj: Any, *, nonfinite: str = "string", indent: int | None = 2, sort_keys: bool = False,
              default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as JSON text plus a final newline.

    ``nonfinite``: ``"string"`` (default) writes :func:`jsonable` ``(obj)``; ``"error"`` writes ``obj`` as is and
    raises ValueError on a non-finite float (strict JSON); ``"literal"`` writes ``obj`` as is with Python's
    ``NaN`` / ``Infinity`` tokens (read back by :func:`json.loads`, not strict JSON).
    """
    _check_nonfinite(nonfinite)
    if nonfinite == "string":
        obj = jsonable(obj)
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default,
                      allow_nan=nonfinite == "literal") + "\n"


def write_json(path: str | os.PathLike, obj: Any, *, nonfinite: str = "string", indent: int | None = 2,
               sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> Path:
    """Atomically write :func:`json_text` ``(obj, ...)`` to ``path``. The text is built before the file is
    touched, so an object that cannot be written leaves ``path`` as it was. Returns ``Path(path)``."""
    text = json_text(obj, nonfinite=nonfinite, indent=indent, sort_keys=sort_keys, default=default)
    return atomic_write_text(path, text)


def _restore_nonfinite(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _restore_nonfinite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_restore_nonfinite(v) for v in x]
    if isinstance(x, str) and x in ("inf", "-inf", "nan"):
        return float(x)
    return x


def read_json(path: str | os.PathLike, *, nonfinite: bool = False) -> Any:
    """Parsed JSON of ``path``. ``nonfinite=True``: the strings ``"inf"`` / ``"-inf"`` / ``"nan"`` (what
    :func:`write_json` writes for non-finite floats) become floats again."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return _restore_nonfinite(doc) if nonfinite else doc


# ----------------------------------------------------------------------------------------------------------
# CSV
def csv_cell(v: Any) -> str:
    """One CSV cell: None -> "", bool -> "1" / "0", float -> repr ("inf", "-inf", "nan"), else str."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> Path:
    """Atomically write ``rows`` as CSV: a header with ``columns`` (if given) followed by the union of the rows'
    other keys (first-seen order), one line per row, missing keys and None as empty cells (:func:`csv_cell`).
    No rows and no ``columns``: an empty file; no rows with ``columns``: the header alone. Returns ``Path(path)``."""
    cols = list(dict.fromkeys([*(columns or ()), *(k for r in rows for k in r)]))
    buf = io.StringIO(newline="")
    if cols:
        w = csv.writer(buf)
        w.writerow(cols)
        for r in rows:
            w.writerow([csv_cell(r.get(c)) for c in cols])
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: str | os.PathLike, *, numeric: bool = True) -> list[dict[str, Any]]:
    """Rows of a CSV as dicts. ``numeric=True``: cells that parse as floats become floats (``inf``, ``nan``
    included), empty cells None, other cells stay strings; ``numeric=False``: every cell stays a string."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not numeric:
        return rows
    return [{k: _cell_value(v) for k, v in r.items()} for r in rows]


def _cell_value(v: str | None) -> Any:
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def as_float(v: Any) -> float:
    """A record value (CSV cell, JSON value) as a float: numbers, bools and numeric strings ("inf", "nan"
    included) convert; None, "" and anything else -> nan."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------------------------------------
# manifest pieces
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


def dataclass_from_dict(cls: type, d: Mapping[str, Any]) -> Any:
    """``cls(**d)`` for a dataclass ``cls``, with a one-line ValueError naming any key it does not have."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(d) - names)
    if bad:
        keys = ", ".join(repr(k) for k in bad)
        raise ValueError(f"unknown config key{'s' if len(bad) > 1 else ''} {keys} for {cls.__name__}; "
                         f"expected a subset of {', '.join(sorted(names))}")
    return cls(**d)
