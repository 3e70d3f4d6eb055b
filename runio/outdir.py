"""Output directories: checked before anything is written, one writer at a time.

* :func:`check_out_dir`: ``--out`` pointing at a regular file, or below one, or below a directory that cannot
  be written, is a one-line ValueError -- raised before any file or directory is created.
* :class:`OutDirLock`: ``fcntl.flock`` on ``<out>/.lock`` (exclusive, non-blocking). A second run on the same
  directory is refused with one line naming the holder's pid; the kernel drops the lock when the holder exits
  or is killed (SIGKILL included), so a crashed run never blocks the next one. On acquiring the lock the stale
  ``.*.tmp`` files of a killed atomic write are removed (:func:`runio.files.remove_stale_tmp`). On release the
  lock file is removed, and so are the directories the lock created if they are still empty (a run refused
  for bad input leaves nothing behind). Where ``fcntl`` does not exist (Windows) the lock is a no-op.

Example::

    with OutDirLock(out):          # ValueError (one line) if another run holds it
        run(...)                   # writes into out
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from .files import remove_stale_tmp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "check_out_dir", "OutDirLock"]

#: name of the lock file inside an output directory
LOCK_NAME = ".lock"


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``Path(path)`` if it can be an output directory (existing directory, or creatable); else ONE-line
    ValueError naming ``flag`` and the path. Creates nothing."""
    if path is None or str(path) == "":
        raise ValueError(f"{flag} must be a directory path, got {flag}={str(path)!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {str(p)!r} is a file, expected a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {str(p)!r} is not writable")
        return p
    for anc in p.absolute().parents:
        if anc.exists():
            if not anc.is_dir():
                raise ValueError(f"{flag} {str(p)!r} lies below the file {str(anc)!r}, expected a directory path")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise ValueError(f"{flag} {str(p)!r} cannot be created: {str(anc)!r} is not writable")
            break
    return p


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


class OutDirLock:
    """Exclusive lock of one output directory (one writer per directory); see the module docstring.

    ``acquire`` raises a one-line ValueError if ``path`` cannot be an output directory or another process
    holds the lock. Re-entrant use in the same process is not supported (a second lock object is refused).
    """

    def __init__(self, path: str | os.PathLike, flag: str = "--out", clean_tmp: bool = True) -> None:
        self.path = Path(path)
        self.flag = flag
        self.clean_tmp = clean_tmp
        self._fd: int | None = None
        self._created: list[Path] = []  # directories this lock created, deepest first
        self.removed_tmp: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "OutDirLock":
        check_out_dir(self.path, self.flag)
        missing = [d for d in (self.path, *self.path.parents) if not d.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = [d for d in missing if d.is_dir()]
        lock = self.path / LOCK_NAME
        for _ in range(5):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:  # pragma: no cover
                self._fd = fd
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._undo_created()
                raise ValueError(f"{self.flag} {str(self.path)!r} is in use by another run{_holder(lock)}; wait for "
                                 f"it to finish or choose another {self.flag}") from None
            try:  # the holder before us may have unlinked the file we opened: lock the one on disk
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                break
            os.close(fd)
        else:  # pragma: no cover - five lost races in a row
            raise ValueError(f"{self.flag} {str(self.path)!r}: could not lock {LOCK_NAME}")
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        if self.clean_tmp:
            self.removed_tmp = remove_stale_tmp(self.path)
        return self

    def _undo_created(self) -> None:
        """Remove the directories this lock created, deepest first, as long as they are empty."""
        for d in self._created:
            try:
                d.rmdir()
            except OSError:
                break
        self._created = []

    def release(self) -> None:
        """Unlock, remove the lock file, and the directory if this lock created it and it is empty."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path / LOCK_NAME)
        except FileNotFoundError:
            pass
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self._created and not any(self.path.iterdir()):
            self._undo_created()
        self._created = []

    def __enter__(self) -> "OutDirLock":
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
