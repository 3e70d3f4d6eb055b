"""runio: atomic files, CSV / JSON with non-finite floats and None, manifest pieces."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runio


def _listdir(p: Path) -> list[str]:
    return sorted(os.listdir(p))


# ----------------------------------------------------------------------------------------------------------
# atomic writes
def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "a.txt"  # parent created
    assert runio.atomic_write_text(p, "one\n") == p
    assert p.read_text() == "one\n"
    runio.atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert _listdir(p.parent) == ["a.txt"]
    assert (p.stat().st_mode & 0o777) == 0o644


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "x.csv"
    runio.write_csv(p, [{"a": 1}])
    old = p.read_bytes()

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        runio.atomic_write(p, boom)
    assert p.read_bytes() == old
    assert _listdir(tmp_path) == ["x.csv"]  # temporary removed

    class Bad:
        def __str__(self):
            raise RuntimeError("cannot format")

    with pytest.raises(RuntimeError, match="cannot format"):  # a cell that fails half-way through the rows
        runio.write_csv(p, [{"a": 2}, {"a": Bad()}])
    assert p.read_bytes() == old
    q = tmp_path / "x.json"
    runio.write_json(q, {"v": 1})
    with pytest.raises(ValueError):  # strict JSON refuses NaN: nothing written
        runio.write_json(q, {"v": float("nan")}, nonfinite="error")
    with pytest.raises(TypeError):
        runio.write_json(q, {"v": object()})
    assert json.loads(q.read_text()) == {"v": 1}
    assert _listdir(tmp_path) == ["x.csv", "x.json"]


def test_interrupt_in_a_child_process_keeps_the_old_file(tmp_path):
    # the writer process dies (os._exit) after writing part of the new content: the old file stays whole
    p = tmp_path / "r.json"
    runio.write_json(p, {"rows": list(range(5))})
    code = ("import os, runio\n"
            f"def w(f):\n    f.write(b'{{\"rows\": [0, 1'); f.flush(); os._exit(3)\n"
            f"runio.atomic_write({str(p)!r}, w)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(runio.__file__).resolve().parent.parent)
    assert r.returncode == 3
    assert json.loads(p.read_text()) == {"rows": [0, 1, 2, 3, 4]}


# ----------------------------------------------------------------------------------------------------------
# CSV
def test_csv_round_trip_with_inf_nan_none(tmp_path):
    rows = [{"step": 0, "x": 1.25, "ok": True, "name": "CL-NSCL"},
            {"step": 1, "x": float("inf"), "y": float("-inf"), "ok": np.bool_(False)},
            {"step": 2, "x": float("nan"), "y": None, "z": np.float64(0.1), "w": np.int64(7)}]
    p = runio.write_csv(tmp_path / "t.csv", rows)
    text = p.read_text()
    lines = text.splitlines()
    assert lines[0] == "step,x,ok,name,y,z,w"  # union of keys, first-seen order
    assert lines[1] == "0,1.25,1,CL-NSCL,,,"
    assert lines[2] == "1,inf,0,,-inf,,"
    assert lines[3] == "2,nan,,,,0.1,7"
    assert p.read_bytes().endswith(b"0.1,7\r\n")  # the csv module's line terminator, as before
    back = runio.read_csv(p)
    assert back[0] == {"step": 0.0, "x": 1.25, "ok": 1.0, "name": "CL-NSCL", "y": None, "z": None, "w": None}
    assert back[1]["x"] == math.inf and back[1]["y"] == -math.inf and back[1]["ok"] == 0.0
    assert math.isnan(back[2]["x"]) and back[2]["y"] is None and back[2]["z"] == 0.1 and back[2]["w"] == 7.0
    raw = runio.read_csv(p, numeric=False)
    assert raw[1] == {"step": "1", "x": "inf", "ok": "0", "name": "", "y": "-inf", "z": "", "w": ""}
    with open(p, newline="") as f:  # an independent reader agrees
        assert [r["x"] for r in csv.DictReader(f)] == ["1.25", "inf", "nan"]


def test_csv_floats_round_trip_exactly(tmp_path):
    xs = [0.1, 1 / 3, 1e-300, 2.0**60 + 1.5, -0.0, 5e-324]
    p = runio.write_csv(tmp_path / "f.csv", [{"x": x} for x in xs])
    assert [r["x"] for r in runio.read_csv(p)] == xs
    assert [runio.csv_cell(v) for v in (None, True, np.bool_(True), 3, np.float32(0.5), "a")] == \
        ["", "1", "1", "3", "0.5", "a"]


def test_as_float_of_record_values():
    assert [runio.as_float(v) for v in (1, "2.5", True, np.bool_(False), "inf", "-inf")] == [1.0, 2.5, 1.0, 0.0,
                                                                                           math.inf, -math.inf]
    assert all(math.isnan(runio.as_float(v)) for v in (None, "", "nan", "CL", [1, 2], object()))


def test_csv_without_rows_and_fixed_columns(tmp_path):
    p = runio.write_csv(tmp_path / "e.csv", [])
    assert p.read_text() == "" and runio.read_csv(p) == []
    runio.write_csv(p, [], columns=["a", "b"])  # header alone
    assert p.read_bytes() == b"a,b\r\n" and runio.read_csv(p) == []
    runio.write_csv(p, [{"c": 1, "b": 2}], columns=("a", "b"))  # given columns first, then the rows' other keys
    assert p.read_bytes() == b"a,b,c\r\n,2,1\r\n"


# ----------------------------------------------------------------------------------------------------------
# JSON
def test_json_round_trip_with_inf_nan_none(tmp_path):
    doc = {"a": math.inf, "b": [-math.inf, math.nan, None, 1.5], "c": (np.float64(2.5), np.int64(3)),
           "d": {1: np.bool_(True)}, "p": Path("x/y"), "s": "text"}
    p = runio.write_json(tmp_path / "d.json", doc)
    text = p.read_text()
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text
    raw = json.loads(text)  # strict JSON, non-finite floats as strings
    assert raw == {"a": "inf", "b": ["-inf", "nan", None, 1.5], "c": [2.5, 3], "d": {"1": True}, "p": "x/y",
                   "s": "text"}
    assert runio.read_json(p) == raw
    back = runio.read_json(p, nonfinite=True)
    assert back["a"] == math.inf and back["b"][0] == -math.inf and math.isnan(back["b"][1])
    assert back["b"][2:] == [None, 1.5] and back["c"] == [2.5, 3] and back["s"] == "text"
    assert type(raw["c"][1]) is int and type(raw["d"]["1"]) is bool


def test_json_modes():
    obj = {"b": 1, "a": math.nan}
    assert runio.json_text(obj) == '{\n  "b": 1,\n  "a": "nan"\n}\n'
    assert runio.json_text(obj, nonfinite="literal", indent=1, sort_keys=True) == '{\n "a": NaN,\n "b": 1\n}\n'
    assert runio.json_text({"x": np.float32(0.5)}, nonfinite="literal", indent=None, default=float) == '{"x": 0.5}\n'
    with pytest.raises(ValueError):
        runio.json_text(obj, nonfinite="error")
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        runio.json_text(obj, nonfinite="drop")


# ----------------------------------------------------------------------------------------------------------
# manifest pieces
def test_git_revision_outside_a_checkout_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # git may not look above tmp_path
    monkeypatch.delenv("GIT_DIR", raising=False)
    assert runio.git_revision(tmp_path) is None
    assert runio.git_state(tmp_path) == {"revision": None, "dirty": None}
    assert runio.git_revision(tmp_path / "missing") is None  # no such directory: None, not an exception


def test_git_revision_of_a_checkout(tmp_path):
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@t")
        (tmp_path / "f").write_text("1")
        subprocess.run(["git", "add", "f"], cwd=tmp_path, check=True, capture_output=True)
        subprocess.run(["git", "commit", "-q", "-m", "x"], cwd=tmp_path, check=True, capture_output=True, env=env)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not usable here")
    assert runio.git_revision(tmp_path) == head and len(head) == 40
    assert runio.git_state(tmp_path) == {"revision": head, "dirty": False}
    (tmp_path / "f").write_text("2")
    assert runio.git_state(tmp_path) == {"revision": head, "dirty": True}


def test_package_versions_and_command_line():
    v = runio.package_versions("numpy", "json", "no_such_module_xyz")
    assert list(v) == ["python", "numpy", "json", "no_such_module_xyz"]
    assert v["python"] == platform.python_version() and v["numpy"] == np.__version__
    assert v["json"] == json.__version__ and v["no_such_module_xyz"] is None
    cl = runio.command_line()
    assert cl == sys.argv and cl is not sys.argv


def test_dataclass_from_dict_names_unknown_keys():
    from dataclasses import dataclass

    from runio import dataclass_from_dict

    @dataclass
    class Cfg:
        a: int = 1
        b: float = 2.0

    assert dataclass_from_dict(Cfg, {"a": 3}) == Cfg(a=3)
    with pytest.raises(ValueError, match=r"^unknown config key 'c' for Cfg; expected a subset of a, b$"):
        dataclass_from_dict(Cfg, {"c": 1})
    with pytest.raises(ValueError, match=r"unknown config keys 'c', 'd'"):
        dataclass_from_dict(Cfg, {"c": 1, "d": 2})


def test_progress_writes_lines_not_carriage_returns_when_redirected():
    """Redirected stderr (a log file): each progress update is its own line, at most one per log_every seconds;
    quiet writes nothing. (Issue 7: tqdm bars flooded redirected logs.)"""
    import io

    from runio.progress import progress

    buf = io.StringIO()  # not a TTY
    for _ in progress(range(5), stream=buf, log_every=0.0, desc="demo"):
        pass
    text = buf.getvalue()
    assert "\r" not in text
    lines = [ln for ln in text.split("\n") if ln.strip()]
    assert lines and all(ln.startswith("demo") for ln in lines)
    assert "5/5" in lines[-1]
    slow = io.StringIO()
    for _ in progress(range(200), stream=slow, log_every=3600.0, desc="slow"):
        pass
    assert len([ln for ln in slow.getvalue().split("\n") if ln.strip()]) <= 2  # start and end only
    silent = io.StringIO()
    for _ in progress(range(5), stream=silent, quiet=True):
        pass
    assert silent.getvalue() == ""
