"""runio: the run layer shared by simulate/, experiments/ and figures/ (theory/ never imports it: no I/O there).

One module per idea:

* :mod:`runio.files`      atomic writes (temporary file, fsync, ``os.replace``), stale temporary files
* :mod:`runio.records`    JSON / CSV with non-finite floats and None
* :mod:`runio.manifest`   git revision, package versions, command line
* :mod:`runio.config`     ONE config-file loader (TOML or JSON, a run's own config.json included)
* :mod:`runio.cli`        ONE one-line-error argparse parser, ``--config`` handling, ``fail`` for library errors
* :mod:`runio.outdir`     ``--out`` checks before anything is written, one writer per directory (a lock)
* :mod:`runio.memory`     memory a run needs, checked before it allocates
* :mod:`runio.checkpoint` ONE checkpoint format (atomic torch save + SHA-256 trailer); imports torch, so it is
  not re-exported here: ``from runio.checkpoint import save_checkpoint, load_checkpoint``

The names below are re-exported so that ``runio.write_json(...)`` etc. keep working.
"""

from __future__ import annotations

from .cli import OneLineParser, fail, one_line, parse_with_config, record
from .config import check_keys, dataclass_from_dict, load_config
from .files import atomic_write, atomic_write_bytes, atomic_write_text, remove_stale_tmp
from .manifest import command_line, git_revision, git_state, package_versions
from .memory import available_memory, check_memory, format_bytes, sigma_run_bytes
from .outdir import OutDirLock, check_out_dir
from .records import (
    NONFINITE,
    as_float,
    csv_cell,
    json_text,
    jsonable,
    read_csv,
    read_json,
    write_csv,
    write_json,
)

__all__ = [
    "dataclass_from_dict",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_tmp",
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
    "OneLineParser",
    "fail",
    "one_line",
    "parse_with_config",
    "record",
    "load_config",
    "check_keys",
    "OutDirLock",
    "check_out_dir",
    "available_memory",
    "check_memory",
    "format_bytes",
    "sigma_run_bytes",
]
