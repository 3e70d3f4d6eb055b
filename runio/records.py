"""Result records: JSON and CSV with non-finite floats and None, written atomically (:mod:`runio.files`).

* CSV (:func:`write_csv`): the columns are the union of the rows' keys in first-seen order; ``None`` -> empty
  cell, booleans -> ``1`` / ``0``, floats by ``repr`` (``inf``, ``-inf``, ``nan`` for non-finite ones).
  :func:`read_csv` turns numeric cells back into floats and empty cells into ``None``.
* JSON (:func:`write_json`): by default non-finite floats become the strings ``"inf"`` / ``"-inf"`` /
  ``"nan"`` (strict, valid JSON), numpy scalars become Python numbers and paths strings (:func:`jsonable`);
  ``nonfinite="error"`` refuses them instead, ``nonfinite="literal"`` writes Python's ``NaN`` / ``Infinity``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .files import atomic_write_text

__all__ = ["NONFINITE", "jsonable", "json_text", "write_json", "read_json", "csv_cell", "write_csv", "read_csv",
           "as_float"]

#: how :func:`json_text` / :func:`write_json` treat non-finite floats
NONFINITE = ("string", "error", "literal")


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
