"""Atomic files: the bytes go to a temporary file in the destination directory, which is flushed, ``fsync``-ed
and ``os.replace``-d over the destination (the directory is fsync-ed where the OS allows). A reader sees the
previous complete file or the new complete one; if the writer fails, the temporary file is removed and the
old file is left as it was. A writer killed mid-write (SIGKILL) leaves its ``.<name>.<random>.tmp`` behind:
:func:`remove_stale_tmp` deletes those (called when a run starts or resumes in an output directory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "remove_stale_tmp", "TMP_SUFFIX"]

#: suffix of the temporary files of :func:`atomic_write` (``.<name>.<random>.tmp``)
TMP_SUFFIX = ".tmp"


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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


def remove_stale_tmp(directory: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files that a killed :func:`atomic_write` left in ``directory``
    (and its sub-directories if ``recursive``). Only files matching that pattern are touched. Returns them.

    Call it only while holding the directory's lock (:class:`runio.outdir.OutDirLock`): a concurrent writer's
    temporary file looks the same.
    """
    d = Path(directory)
    if not d.is_dir():
        return []
    found = d.rglob(".*" + TMP_SUFFIX) if recursive else d.glob(".*" + TMP_SUFFIX)
    removed = []
    for p in sorted(found):
        if p.is_file() and p.name.count(".") >= 3:
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
