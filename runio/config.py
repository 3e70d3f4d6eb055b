"""Config files: ONE loader for every CLI, TOML or JSON, including the ``config.json`` a run writes itself.

Precedence everywhere: defaults <- config file (``--config FILE``) <- flags given on the command line.

* ``.toml``: top-level keys and one level of tables (``[data]``, ``[train]``, ...), flattened; read with
  ``tomllib`` (Python >= 3.11) or ``tomli`` if installed. Elsewhere a TOML file is refused with one line
  (use JSON).
* ``.json`` (or any other suffix): a JSON object. A run record -- an object holding a ``"config"`` object, as
  each CLI writes into ``<out>/config.json`` -- is read as that inner object, so any run can be re-run from
  its record: ``python -m <cli> --config <out>/config.json``.
* Keys may be written with ``-`` or ``_`` (``batch-size`` == ``batch_size``); a key given twice, an unknown key
  (:func:`check_keys`), a missing file and a syntax error are one-line ValueErrors.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["load_config", "check_keys", "dataclass_from_dict", "norm_key", "toml_available"]


def norm_key(k: str) -> str:
    """Config key as a Python identifier: surrounding spaces dropped, ``-`` -> ``_``."""
    return str(k).strip().replace("-", "_")


def _tomllib():
    try:
        import tomllib  # Python >= 3.11

        return tomllib
    except ImportError:
        try:
            import tomli  # optional backport

            return tomli
        except ImportError:
            return None


def toml_available() -> bool:
    """Whether TOML config files can be read here (Python >= 3.11, or ``tomli`` installed)."""
    return _tomllib() is not None


def _read_toml(p: Path) -> dict[str, Any]:
    lib = _tomllib()
    if lib is None:
        raise ValueError(f"config file {str(p)!r} is TOML, which needs Python >= 3.11 or the tomli package; "
                         f"give the same keys as a .json file")
    try:
        with p.open("rb") as f:
            raw = lib.load(f)
    except lib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {str(e).splitlines()[0]}") from None
    out: dict[str, Any] = {}

    def put(key: str, value: Any, where: str) -> None:
        k = norm_key(key)
        if k in out:
            raise ValueError(f"config key {k!r} is given twice in {str(p)!r}{where}")
        out[k] = value

    for key, value in raw.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                if isinstance(v2, dict):
                    raise ValueError(f"config table [{key}.{k2}] in {str(p)!r} is nested too deep "
                                     f"(one level of tables)")
                put(k2, v2, f" (table [{key}])")
        else:
            put(key, value, "")
    return out


def _read_json(p: Path) -> dict[str, Any]:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {str(p)!r} is not valid JSON: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(p)!r} is not UTF-8 text") from None
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        doc = doc["config"]  # a run record (<out>/config.json)
    if not isinstance(doc, dict):
        raise ValueError(f"config file {str(p)!r} must hold a JSON object, got {type(doc).__name__}")
    out: dict[str, Any] = {}
    for k, v in doc.items():
        nk = norm_key(k)
        if nk in out:
            raise ValueError(f"config key {nk!r} is given twice in {str(p)!r}")
        out[nk] = v
    return out


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Keys and values of a TOML or JSON config file (or a run's ``config.json`` record), keys normalised.

    Raises a one-line ValueError for a missing / unreadable file, a syntax error, a key given twice, a table
    nested more than one level, or a TOML file where no TOML reader is available.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"config file {str(p)!r} is a directory, expected a .toml or .json file")
    if not p.is_file():
        raise ValueError(f"config file not found: {str(p)!r}")
    try:
        if p.suffix.lower() == ".toml":
            return _read_toml(p)
        return _read_json(p)
    except OSError as e:
        raise ValueError(f"config file {str(p)!r} cannot be read: {e.strerror}") from None


def check_keys(d: Mapping[str, Any], known: Iterable[str], where: str = "") -> None:
    """One-line ValueError naming the keys of ``d`` that are not in ``known`` (``where``, e.g. " in 'run.toml'",
    follows the key names in the message)."""
    names = set(known)
    bad = sorted(set(d) - names)
    if bad:
        keys = ", ".join(repr(k) for k in bad)
        raise ValueError(f"unknown config key{'s' if len(bad) > 1 else ''} {keys}{where}; "
                         f"expected a subset of {', '.join(sorted(names))}")


def dataclass_from_dict(cls: type, d: Mapping[str, Any]) -> Any:
    """``cls(**d)`` for a dataclass ``cls``, with a one-line ValueError naming any key it does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(d) - names)
    if bad:
        keys = ", ".join(repr(k) for k in bad)
        raise ValueError(f"unknown config key{'s' if len(bad) > 1 else ''} {keys} for {cls.__name__}; "
                         f"expected a subset of {', '.join(sorted(names))}")
    return cls(**d)
