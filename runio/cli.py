"""Command lines: ONE argparse parser class, ONE way to read ``--config``, ONE way to report an error.

Every CLI of the toolkit (``simulate.sigma_descent``, ``simulate.adversarial``, ``simulate.sweep``,
``simulate.montecarlo``, ``theory.audit``, ``experiments.train``, ``experiments.bound_vs_empirical``,
``experiments.sweep``, ``figures``) builds an :class:`OneLineParser`:

* a bad flag or value ends the process with exit status 2 and ONE line on stderr, ``prog: error: ...``
  (no usage block, no traceback); library ``ValueError`` s raised later are reported the same way with
  :func:`fail`;
* ``--help`` shows each option's default (:class:`DefaultsFormatter`);
* :func:`parse_with_config` adds ``--config FILE`` (TOML or JSON, :func:`runio.config.load_config`): the file
  sets any option by its destination name, explicit flags override it, unknown keys are refused in one line.
  :func:`record` gives the ``{"config": {...}}`` object a CLI writes into ``<out>/config.json`` so the run can
  be repeated with ``--config <out>/config.json``.

Example::

    p = OneLineParser(prog="python -m simulate.montecarlo")
    p.add_argument("--trials", type=int, default=0, help="Monte-Carlo trials")
    ns = parse_with_config(p, argv)          # --config run.toml works, --trials 5 overrides it
    try:
        ...
    except ValueError as e:
        return fail(p.prog, e)                # prints one line, returns 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable, NoReturn, Sequence

from .config import load_config, norm_key

__all__ = ["OneLineParser", "DefaultsFormatter", "one_line", "fail", "parse_with_config", "explicit_dests",
           "record", "add_config_option", "comma_list"]


def one_line(e: BaseException | str) -> str:
    """The first non-empty line of an error message (the exception's type name if it has none)."""
    text = str(e)
    for ln in text.splitlines():
        if ln.strip():
            return ln.strip()
    return type(e).__name__ if isinstance(e, BaseException) else "error"


def comma_list(text: str, conv: Any = str, name: str = "value") -> list:
    """``"0.1,0.5"`` -> ``[0.1, 0.5]`` (``conv`` per item, empty items skipped); one-line ValueError naming
    ``name`` if an item does not convert or the list is empty."""
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"{name} must be a non-empty comma list, got {name}={text!r}")
    kind = {int: "integers", float: "numbers"}.get(conv, "values")
    try:
        return [conv(x) for x in items]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a comma list of {kind}, got {name}={text!r}") from None


def fail(prog: str, e: BaseException | str, status: int = 2) -> int:
    """Write ``prog: error: <one line>`` to stderr and return ``status`` (2: bad input)."""
    sys.stderr.write(f"{prog}: error: {one_line(e)}\n")
    sys.stderr.flush()
    return status


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help formatter that appends ``(default: X)`` unless the help text already names its default; an option
    without help text gets ``(default: X)`` alone (argparse would print nothing for it)."""

    def add_argument(self, action: argparse.Action) -> None:
        if action.help is None and action.option_strings and action.default is not None \
                and action.default is not argparse.SUPPRESS \
                and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            action.help = "(default: %(default)s)"
        super().add_argument(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is argparse.SUPPRESS \
                or action.default is False \
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        return super()._get_help_string(action) or ""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in ONE line (``prog: error: ...``) with exit status 2.

    ``raise_errors=True``: raise a one-line ValueError instead (for ``parse_config(argv)``-style library
    functions whose CLI reports it with :func:`fail`). Defaults are shown in ``--help``
    (:class:`DefaultsFormatter`, unless another ``formatter_class`` is given).
    """

    def __init__(self, *args: Any, raise_errors: bool = False, **kw: Any) -> None:
        kw.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kw)
        self.raise_errors = raise_errors

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        if self.raise_errors:
            raise ValueError(one_line(message))
        raise SystemExit(fail(self.prog, message))


def add_config_option(parser: argparse.ArgumentParser, dest: str = "config") -> None:
    """Add ``--config FILE`` (TOML or JSON, a run's config.json included) unless the parser has it already."""
    if any(a.dest == dest for a in parser._actions):
        return
    parser.add_argument("--config", dest=dest, metavar="FILE", default=None,
                        help="TOML or JSON file of options by name (a run's config.json works); flags given "
                             "here override it")


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the options actually given in ``argv`` (parses once more with every default hidden)."""
    saved = [(a, a.default, a.required) for a in parser._actions]
    saved_defaults = dict(parser._defaults)
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
            a.required = False
        parser._defaults.clear()
        ns, _ = parser.parse_known_args(list(argv), argparse.Namespace())
    finally:
        for a, d, r in saved:
            a.default, a.required = d, r
        parser._defaults.update(saved_defaults)
    return set(vars(ns))


def _coerce(parser: argparse.ArgumentParser, action: argparse.Action, key: str, v: Any) -> Any:
    """A config-file value converted as the command line would convert it (one-line error if it cannot be)."""
    flag = action.option_strings[-1] if action.option_strings else key
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if v is None and action.default is None:  # a tri-state option left unset (None = "decide later")
            return v
        if not isinstance(v, bool):
            parser.error(f"config key {key!r} ({flag}) must be true or false, got {v!r}")
        return v
    if isinstance(action, argparse._StoreConstAction):
        return v
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many:
        vals = v if isinstance(v, (list, tuple)) else [v]
        if action.nargs == "+" and not vals:
            parser.error(f"config key {key!r} ({flag}) needs at least one value, got []")
        return [_one(parser, action, key, flag, x) for x in vals]
    if isinstance(v, (list, tuple)) and action.type is None and isinstance(action.default, str):
        v = ",".join(str(x) for x in v)  # comma-list options (e.g. --tau 0.1,0.5)
    return _one(parser, action, key, flag, v)


def _one(parser: argparse.ArgumentParser, action: argparse.Action, key: str, flag: str, v: Any) -> Any:
    if v is not None and action.type is not None and callable(action.type):
        if isinstance(v, bool) and action.type in (int, float):
            parser.error(f"config key {key!r} ({flag}) must be a number, got {v!r}")
        if action.type is int and isinstance(v, float):
            parser.error(f"config key {key!r} ({flag}) must be an integer, got {v!r}")
        try:
            v = action.type(v)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            parser.error(f"config key {key!r} ({flag}): invalid value {v!r} ({one_line(e)})")
    if action.choices is not None and v is not None and v not in action.choices:
        parser.error(f"config key {key!r} ({flag}) must be one of {', '.join(map(str, action.choices))}, got {v!r}")
    return v


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *,
                      config_dest: str = "config", exclude: Iterable[str] = ()) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with defaults <- ``--config FILE`` <- flags given in ``argv``.

    ``--config`` is added if missing. File keys are option destinations (``batch_size`` or ``batch-size``);
    a key that is no option, or one in ``exclude``, is refused in one line (exit 2), as is a value the
    option's type or choices reject. A run record's ``config.json`` is read as its ``"config"`` object.
    """
    add_config_option(parser, config_dest)
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(argv)
    path = getattr(ns, config_dest, None)
    if not path:
        return ns
    try:
        doc = load_config(path)
    except ValueError as e:
        parser.error(one_line(e))
    skip = set(exclude) | {config_dest, "help"}
    actions = {a.dest: a for a in parser._actions if a.dest not in skip and a.dest != argparse.SUPPRESS
               and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))}
    bad = sorted(k for k in doc if k not in actions)
    if bad:
        parser.error(f"unknown config key{'s' if len(bad) > 1 else ''} {', '.join(repr(k) for k in bad)} in "
                     f"{str(path)!r}; expected a subset of {', '.join(sorted(actions))}")
    given = explicit_dests(parser, argv)
    for k, v in doc.items():
        if k not in given:
            setattr(ns, k, _coerce(parser, actions[k], k, v))
    return ns


def record(ns: argparse.Namespace | dict, exclude: Iterable[str] = ("config",), **extra: Any) -> dict:
    """``{"config": {option: value}, **extra}``: the run record that :func:`parse_with_config` reads back."""
    d = dict(vars(ns) if isinstance(ns, argparse.Namespace) else ns)
    skip = set(exclude)
    return {"config": {norm_key(k): v for k, v in d.items() if k not in skip}, **extra}
