"""Small file helpers: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_dir(final: Path, replace: Callable[[Path], bool] | bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` only if the block succeeds.

    A crash or error leaves ``final`` as it was (never half-written). ``final`` is claimed at the end, not only
    checked before: a path that exists by then (a folder, file or symlink that appeared meanwhile) is replaced
    only when ``replace`` says so (``True``, or a callable given the path), and never when it is a symlink;
    otherwise :class:`FileExistsError`. Folders created for the parents are removed again on failure.
    """
    final = Path(final)
    made = make_parents(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; give the usual permissions of a new folder
    try:
        yield tmp
        if os.path.lexists(final):
            if final.is_symlink() or not final.is_dir() or not (replace(final) if callable(replace) else replace):
                raise FileExistsError(errno.EEXIST, "exists (appeared while autorad was working?)", str(final))
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            final.rename(old / final.name)
            try:
                rename_new(tmp, final)
            except BaseException:
                (old / final.name).rename(final)  # put it back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            rename_new(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(made)
        raise


def make_parents(path: Path) -> list[Path]:
    """Create the missing parent folders of ``path``; return those created (deepest first), for
    :func:`remove_empty` to take back on failure."""
    missing = [p for p in Path(path).parents if not os.path.lexists(p)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are still empty; leave the rest."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


_RENAME_NOREPLACE = 1


def rename_new(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if nothing is at ``dst`` (atomically where the kernel offers
    ``renameat2(RENAME_NOREPLACE)``); :class:`FileExistsError` otherwise (an empty folder too)."""
    libc = _libc()
    if libc is not None:
        if libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):  # no renameat2 (other systems, old file systems): check, then rename
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    except (OSError, AttributeError):
        return None
    return libc


def link_new(src: Path, dst: Path) -> None:
    """Give the complete file ``src`` the name ``dst`` only if nothing is at ``dst`` (a dangling symlink
    included), then drop the name ``src``: :class:`FileExistsError` otherwise. A file that appears between a
    check and the write is therefore never replaced."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as err:  # no hard links here (FAT, some network file systems): rename without replacing
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        rename_new(src, dst)
        return
    os.unlink(src)


def atomic_write_bytes(path: Path, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename (``replace=False``: an atomic
    link that fails with :class:`FileExistsError` when ``path`` exists by then)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions of a new file
        if replace:
            os.replace(tmp, path)
        else:
            link_new(Path(tmp), path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:  # a failed write() names no file: name it
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, sorted keys and stable formatting (byte-identical for equal objects)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet(df: Any, path: Path) -> None:
    """Write a pandas DataFrame as parquet atomically (no index column)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def hash_arrays(*arrays: np.ndarray, extra: Any = None) -> str:
    """SHA-256 over arrays' dtype, shape and bytes plus a JSON-able ``extra`` (settings)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as JSON would read it back (numpy scalars and arrays, paths turned into plain values)."""
    return json.loads(json.dumps(obj, default=_json_default))


def hash_json(obj: Any, length: int | None = None) -> str:
    """SHA-256 of ``obj`` as key-sorted JSON (the fingerprint of settings; first ``length`` hex digits)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()
    return digest[:length] if length else digest


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
