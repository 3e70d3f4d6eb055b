"""Moved: the one checkpoint format of the toolkit is :mod:`runio.checkpoint` (this alias goes once no caller
imports it)."""

from runio.checkpoint import *  # noqa: F401,F403
from runio.checkpoint import __all__  # noqa: F401
