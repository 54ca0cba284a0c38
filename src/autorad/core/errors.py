"""User-facing errors: the CLI prints their message on one line and exits non-zero, without a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class AutoradError(Exception):
    """A problem with the user's input or environment (bad path, bad config, corrupt file...)."""

    exit_code = 2


class InputError(AutoradError):
    """The input data cannot be used as a whole (missing path, no DICOM, mixed series...)."""


class ConfigError(AutoradError):
    """A config file has an unknown key, a wrong type or an invalid value."""


class CheckpointError(AutoradError):
    """A checkpoint or weight file is missing keys, has extra keys, wrong shapes or is corrupt."""


class MissingDependencyError(AutoradError):
    """An optional package (weights, ray, scikit-image...) that the requested feature needs is absent."""


_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some space or choose another location",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "permission denied: choose a location you can write (or read) to",
    errno.EPERM: "operation not permitted: choose a location you can write (or read) to",
    errno.EISDIR: "is a folder where a file is expected: give a file name",
    errno.ENOTDIR: "a part of the path is a file where a folder is expected",
    errno.ENOENT: "not found",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and rerun",
    errno.EEXIST: "appeared while autorad was working (another autorad writing there?); autorad did not replace "
                  "it: choose another path",
}


def describe_os_error(err: OSError, options: dict[str, str] | None = None) -> str | None:
    """One line for an operating-system error caused by the user's environment (disk full, read-only file
    system, permission denied, a folder where a file is expected...), naming the path and, when the path is
    one of ``options`` (``{"--out": path}``) or inside it, the option. None for other errors (bugs)."""
    what = _OS_ERRORS.get(err.errno or -1)
    if what is None:
        return None
    filename = err.filename if err.filename is not None else ""
    if not filename and err.errno != errno.ENOENT and len(options or {}) == 1:
        (option, value), = (options or {}).items()  # a failed write() names no file: the command's one output
        return f"{option} {value}: {what}"
    path = str(filename) or "(unknown path)"
    match = _option_for(path, options or {}) if filename else None
    if match is None:
        return f"{path}: {what}"
    option, inside = match
    where = f"{option} {(options or {})[option]}"
    return f"{where} ({path}): {what}" if inside else f"{where}: {what}"


def _option_for(filename: str, options: dict[str, str]) -> tuple[str, bool] | None:
    """The option whose path is ``filename``, holds it, or is being written atomically through it (a
    ``.NAME.tmp-*`` sibling); with whether ``filename`` is worth showing (a real path below the option's)."""
    target = Path(os.path.abspath(filename))
    best, best_len = None, -1
    for opt, value in options.items():
        if not value:
            continue
        base = Path(os.path.abspath(value))
        chain = [target, *target.parents]
        via_tmp = any(p.parent == base.parent and p.name.startswith(f".{base.name}.") for p in chain)
        if (target == base or base in target.parents or via_tmp) and len(base.parts) > best_len:
            best, best_len = (opt, target != base and not via_tmp), len(base.parts)
    return best
