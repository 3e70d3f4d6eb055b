"""Checkpoint files: atomic writes, SHA-256 trailer, one-line errors for corrupt/truncated files, config diffs."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest
import torch

from runio.checkpoint import (
    CHECKPOINT_MAGIC,
    TRAILER_SIZE,
    atomic_write,
    atomic_write_json,
    config_diff,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)


def _state() -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "w": torch.randn(50, 40, generator=g),
        "ids": torch.arange(1000),
        "gen": g.get_state(),
        "config": {"losses": ["CL", "NSCL"], "tau": 0.5, "out_dir": None},
        "history": [{"step": 0, "loss": {"CL": 1.5}}],
    }


def test_round_trip_is_exact_and_trailer_is_the_payload_sha256(tmp_path):
    s = _state()
    p = save_checkpoint(tmp_path / "a" / "ck.pt", s)  # parent directory created
    raw = p.read_bytes()
    magic, length, digest = struct.unpack("<8sQ32s", raw[-TRAILER_SIZE:])
    assert magic == CHECKPOINT_MAGIC and length == len(raw) - TRAILER_SIZE
    assert digest == hashlib.sha256(raw[:length]).digest()  # independent recomputation
    assert verify_checkpoint(p) == length
    d = load_checkpoint(p, required=("w", "gen"))
    assert torch.equal(d["w"], s["w"]) and torch.equal(d["ids"], s["ids"]) and torch.equal(d["gen"], s["gen"])
    assert d["config"] == s["config"] and d["history"] == s["history"]
    # the generator state restores the stream exactly
    g2 = torch.Generator()
    g2.set_state(d["gen"])
    g1 = torch.Generator()
    g1.set_state(s["gen"])
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    # plain torch.load also reads the file (the trailer is ignored by the zip reader)
    assert torch.equal(torch.load(p, weights_only=True)["w"], s["w"])
    # no temporary files left behind
    assert sorted(x.name for x in p.parent.iterdir()) == ["ck.pt"]


@pytest.mark.parametrize("where", ["middle", "payload_start", "trailer_digest"])
def test_flipped_byte_is_detected(tmp_path, where):
    p = save_checkpoint(tmp_path / "ck.pt", _state())
    b = bytearray(p.read_bytes())
    pos = {"middle": len(b) // 2, "payload_start": 10, "trailer_digest": len(b) - 5}[where]
    b[pos] ^= 0x01
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"^checkpoint .*bad\.pt is corrupt or truncated: SHA-256 mismatch") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("keep", [0, 20, 0.5, -1])
def test_truncated_file_is_detected(tmp_path, keep):
    p = save_checkpoint(tmp_path / "ck.pt", _state())
    b = p.read_bytes()
    n = int(len(b) * keep) if isinstance(keep, float) else (len(b) + keep if keep < 0 else keep)
    bad = tmp_path / "cut.pt"
    bad.write_bytes(b[:n])
    with pytest.raises(ValueError, match=r"^checkpoint .*cut\.pt is corrupt or truncated: ") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)


def test_plain_torch_save_file_is_refused_and_missing_file_raises(tmp_path):
    p = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="corrupt or truncated: no SDCKPT01 trailer"):
        load_checkpoint(p)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_valid_trailer_but_undecodable_payload_and_missing_keys(tmp_path):
    payload = b"this is not a zip archive" * 10
    p = tmp_path / "junk.pt"
    p.write_bytes(payload + struct.pack("<8sQ32s", CHECKPOINT_MAGIC, len(payload), hashlib.sha256(payload).digest()))
    with pytest.raises(ValueError, match=r"junk\.pt is corrupt or truncated: torch\.load failed"):
        load_checkpoint(p)
    q = save_checkpoint(tmp_path / "ok.pt", {"a": 1})
    with pytest.raises(ValueError, match=r"missing keys \['models'\]"):
        load_checkpoint(q, required=("a", "models"))


def test_atomic_write_keeps_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"v": 1})
    assert json.loads(p.read_text()) == {"v": 1}

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, boom)
    assert json.loads(p.read_text()) == {"v": 1}  # old content intact
    assert os.listdir(tmp_path) == ["x.json"]  # temporary removed
    with pytest.raises(ValueError):  # NaN is not JSON
        atomic_write_json(p, {"v": float("nan")})
    assert json.loads(p.read_text()) == {"v": 1}


def test_config_diff():
    a = {"losses": ("CL", "NSCL"), "tau": 0.5, "lr": 0.1, "out_dir": "a"}
    b = {"losses": ["CL", "NSCL"], "tau": 0.2, "lr": 0.1, "out_dir": "b", "extra": 1}
    assert config_diff(a, b) == ["extra", "out_dir", "tau"]
    assert config_diff(a, b, ignore=("out_dir",)) == ["extra", "tau"]
    assert config_diff(a, dict(a)) == []
