"""Progress bars that do not flood a log: a tqdm bar on a terminal, a plain line at most every ``log_every``
seconds when stderr is redirected to a file or a pipe (each update on its own line, no carriage returns)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["progress", "LineStream"]


class LineStream:
    """A text stream for tqdm that turns its carriage-return redraws into whole lines (for log files)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = False

    def write(self, s: str) -> int:
        n = len(s)
        s = s.replace("\r", "\n")
        while "\n\n" in s:
            s = s.replace("\n\n", "\n")
        if not self._started:
            s = s.lstrip("\n")
        if s:
            self._started = True
            self._stream.write(s)
        return n

    def flush(self) -> None:
        self._stream.flush()


def progress(iterable: Any = None, *, quiet: bool = False, stream: TextIO | None = None,
             log_every: float = 30.0, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal; on a redirected stream one line at most every ``log_every``
    seconds (and at the end); nothing when ``quiet``. ``stream`` defaults to ``sys.stderr``."""
    out = sys.stderr if stream is None else stream
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    if is_tty:
        return tqdm(iterable, disable=quiet, file=out, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    return tqdm(iterable, disable=quiet, file=LineStream(out), mininterval=log_every, maxinterval=log_every,
                ncols=100, ascii=True, **kwargs)
