"""Output-path safety: autorad never deletes or overwrites anything it did not make.

Every command that writes must check its output paths with this module **before any work starts**:

* a folder (``--out``)::

      out = prepare_output_dir(a.out, kind="evaluation", inputs=(a.run, a.data), overwrite=a.overwrite)
      ...  # write into out (it exists, holds the marker file, and is empty unless resumed)

  Refused (:class:`~autorad.core.errors.InputError`, exit 2, one line naming ``option``): a path that is a file; the
  current folder or one of its parents; a path that is, contains or lies inside one of ``inputs`` (a run, a
  dataset, a DICOM folder...) or autorad's own state folder; a non-empty folder without autorad's marker; a
  folder with the marker unless ``overwrite`` (then it is emptied) or ``resume`` and the same ``kind`` (then it
  is kept as it is and the caller decides what can be reused). With ``create=False`` nothing is created or
  removed (for writers that build the folder atomically themselves with :func:`autorad.core.io.atomic_dir`; they
  must call :func:`write_marker` inside the temporary folder and pass :func:`replaceable_dir` so that what is
  found at the path when the work is done is checked again).

* a file (``--report``, ``--save-mask``, ``--dicom-seg``...)::

      path = prepare_output_file(a.report, inputs=(a.run, a.dicom), overwrite=a.overwrite, option="--report")
      ...  # the work
      with claim_output_files([("--report", path)], overwrite=a.overwrite) as (tmp,):
          tmp.write_bytes(data)  # published as path when the block ends; recorded, so --overwrite may replace it

  Refused: a folder; a file that exists (with ``overwrite``: unless autorad wrote it, byte for byte, as recorded
  by :func:`record_output_file`, or it lies in an autorad output folder other than a dataset, run or
  evaluation); a path inside or equal to an input. The check is repeated when the file is written
  (:func:`claim_output_files`): a file that appears meanwhile is never replaced without ``overwrite``.

* Symlinks given as outputs (a file or folder path whose last part is a symlink, dangling or not) are refused,
  with or without ``overwrite``; symlinks higher up the path are followed as usual.

Add an ``--overwrite`` flag to a command with :func:`add_overwrite_argument`. Write errors (disk full, read-only
file system, permission denied) are turned into one line by :func:`autorad.core.errors.describe_os_error` in the CLI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from autorad import __version__
from autorad.core.errors import InputError
from autorad.core.io import hash_file, link_new, make_parents, remove_empty
from autorad.core.paths import state_dir

MARKER = ".autorad-output.json"  # in every folder autorad creates as an output
LEDGER = "outputs.jsonl"  # in the state folder: files autorad wrote (path, SHA-256)
log = logging.getLogger(__name__)
PROTECTED_KINDS = ("dataset", "run", "evaluation")  # their files are replaced only by the command that owns them


def _abs(path: str | Path) -> Path:
    """Absolute path with symlinks resolved as far as they exist (the path itself may not exist yet)."""
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _existing(paths: Iterable[str | Path | None]) -> list[Path]:
    return [_abs(p) for p in paths if p is not None and str(p) != "" and Path(p).expanduser().exists()]


def _check_overlap(p: Path, shown: str, option: str, inputs: Iterable[str | Path | None]) -> None:
    for inp in _existing(inputs):
        if _is_within(p, inp):
            raise InputError(f"{option} {shown} is {'the input' if p == inp else 'inside the input'} {inp}; "
                             f"autorad does not write into its inputs: choose another path")
        if _is_within(inp, p):
            raise InputError(f"{option} {shown} contains the input {inp}; choose another path")
    home = _abs(state_dir())
    if _is_within(p, home) or _is_within(home, p):
        raise InputError(f"{option} {shown} overlaps autorad's private state folder {home}; choose another path")


def _refuse_symlink(path: str | Path, option: str, what: str) -> None:
    """Symlinks given as outputs are refused, with or without ``--overwrite``: autorad writes neither through one
    (its target may be anything) nor over one (the user made it)."""
    if os.path.islink(Path(path).expanduser()):
        target = os.readlink(Path(path).expanduser())
        state = "" if Path(path).expanduser().exists() else " (dangling)"
        raise InputError(f"{option} {path} is a symlink{state} to {target}; autorad writes neither through nor "
                         f"over a symlink: give the real {what} path, or another name")


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of an autorad output folder, or None when ``folder`` holds none (or an unreadable one).

    Folders written before the marker existed are recognised by files only autorad writes (a dataset's
    ``dataset.json`` with its format version beside ``manifest.parquet``; a run's or evaluation's ``run.json``
    with ``autorad_version`` beside ``metrics.json``; a pipeline's ``dataset.stage.json``) and reported with
    ``"legacy": True``; :func:`prepare_output_dir` marks them when it reuses them.
    """
    f = Path(folder) / MARKER
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _legacy_kind(Path(folder))
    return data if isinstance(data, dict) and data.get("autorad_output") is True else None


def _legacy_kind(folder: Path) -> dict[str, Any] | None:
    def load(name: str) -> dict[str, Any]:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    kind = None
    if (folder / "manifest.parquet").is_file() and "format_version" in load("dataset.json"):
        kind = "dataset"
    elif (folder / "metrics.json").is_file() and "autorad_version" in (info := load("run.json")):
        kind = "evaluation" if "evaluated_run" in info else "run"
    elif "key" in load("dataset.stage.json"):
        kind = "pipeline"
    return None if kind is None else {"autorad_output": True, "kind": kind, "legacy": True}


def write_marker(folder: str | Path, kind: str) -> None:
    """Mark ``folder`` as an autorad output of ``kind`` (``dataset``, ``run``, ``evaluation``...)."""
    from autorad.core.io import write_json

    write_json(Path(folder) / MARKER, {"autorad_output": True, "kind": kind, "autorad_version": __version__})


def prepare_output_dir(path: str | Path, *, kind: str, inputs: Iterable[str | Path | None] = (),
                       overwrite: bool = False, resume: bool = False, option: str = "--out",
                       create: bool = True) -> Path:
    """Check that ``path`` may be used as an output folder (see the module docstring); create and mark it.

    Returns the path as given (not resolved). ``kind`` is recorded in the marker. With ``resume``, an existing
    autorad folder is returned untouched; with ``overwrite`` it is emptied first (``create=False``: left for the
    caller's atomic replacement). Raises :class:`InputError` naming ``option`` otherwise.
    """
    if path is None or str(path).strip() == "":
        raise InputError(f"{option} needs a folder path")
    _refuse_symlink(path, option, "folder")
    shown, p = str(path), _abs(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {shown} is a file, not a folder; give a folder path")
    cwd = _abs(Path.cwd())
    if _is_within(cwd, p):
        what = "the current folder" if p == cwd else "a parent of the current folder"
        raise InputError(f"{option} {shown} is {what}; give a new folder for the output")
    _check_overlap(p, shown, option, inputs)
    if p.is_dir() and any(p.iterdir()):
        marker = read_marker(p)
        if marker is None:
            raise InputError(f"{option} {shown} is a folder with files autorad did not make; "
                             f"autorad will not touch it: choose a new or empty folder")
        if resume and marker.get("kind") == kind:
            if create and marker.get("legacy"):
                write_marker(p, kind)
            return Path(path)
        if not overwrite:
            raise InputError(f"{option} {shown} already holds autorad output ({marker.get('kind', 'unknown')}); "
                             f"pass --overwrite to replace it, or choose another folder")
        if create:
            _empty_folder(p)
    if create:
        p.mkdir(parents=True, exist_ok=True)
        write_marker(p, kind)
    return Path(path)


def replaceable_dir(overwrite: bool) -> Callable[[Path], bool]:
    """For :func:`autorad.core.io.atomic_dir`: whether the folder found at the output path when the work is done may be
    replaced: an empty folder, or (with ``overwrite``) an autorad output folder; never a symlink or a user's."""
    def check(p: Path) -> bool:
        if p.is_symlink() or not p.is_dir():
            return False
        return not any(p.iterdir()) or (overwrite and read_marker(p) is not None)

    return check


def missing_folders(path: str | Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet (deepest first): what a later
    :func:`discard_if_unused` may take back."""
    p = Path(path)
    return [d for d in (p, *p.parents) if not os.path.lexists(d)]


def discard_if_unused(made: list[Path]) -> None:
    """After a refusal: remove the output folder ``made[0]`` (and the parents in ``made``) that this command
    created, if it still holds nothing but autorad's marker. Anything else found there is kept."""
    if not made:
        return
    folder = made[0]
    with contextlib.suppress(OSError):
        if folder.is_dir() and not folder.is_symlink() and {c.name for c in folder.iterdir()} <= {MARKER}:
            (folder / MARKER).unlink(missing_ok=True)
    remove_empty(made)


def _empty_folder(p: Path) -> None:
    """Remove everything in an autorad output folder, the marker last (an interruption keeps it marked)."""
    for child in p.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def prepare_output_file(path: str | Path, *, inputs: Iterable[str | Path | None] = (), overwrite: bool = False,
                        option: str = "--out") -> Path:
    """Check that ``path`` may be written as an output file (see the module docstring). Nothing is created yet:
    :func:`claim_output_files` creates the missing parent folders when it writes."""
    if path is None or str(path).strip() == "":
        raise InputError(f"{option} needs a file path")
    _refuse_symlink(path, option, "file")
    shown, p = str(path), _abs(path)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise InputError(f"{option} {shown} is a folder; give a file name")
    _check_overlap(p, shown, option, inputs)
    if p.exists():
        if not overwrite:
            raise InputError(f"{option} {shown} already exists; pass --overwrite to replace it, or choose another name")
        _check_replaceable(p, shown, option)
    parent = next(a for a in p.parents if a.exists())
    if not parent.is_dir():
        raise InputError(f"{option} {shown}: {parent} is a file, not a folder")
    return Path(path)


def _check_replaceable(p: Path, shown: str, option: str) -> None:
    """An existing output file may be replaced (with ``--overwrite``) only if autorad wrote it."""
    owner = read_marker(p.parent)
    if owner is not None and owner.get("kind") in PROTECTED_KINDS:
        raise InputError(f"{option} {shown} is a file of an autorad {owner['kind']} folder; "
                         f"autorad will not replace it: choose a path outside that folder")
    if owner is None and not _recorded(p):
        raise InputError(f"{option} {shown} was not written by autorad (or was changed since); "
                         f"autorad will not replace it: choose another name")


@contextlib.contextmanager
def claim_output_files(targets: Sequence[tuple[str, str | Path]], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Write output files so that each is claimed at write time, not only checked before the work.

    ``targets`` are ``(option, path)`` pairs already checked with :func:`prepare_output_file`. Yields one scratch
    path per target (same file name, in a hidden folder beside it) for the block to write. When the block
    succeeds, each file is published under its name: without ``overwrite`` by an atomic link that fails if
    anything (a file, a dangling symlink) appeared there meanwhile, with ``overwrite`` only after checking again
    that autorad wrote what is there. Either refusal is an :class:`InputError` naming the option; the files this
    call already published are then taken back, so the outputs appear all together or not at all, and folders
    it created are removed again. Published files are recorded (:func:`record_output_file`).
    """
    finals = [(option, Path(path)) for option, path in targets]
    made: list[Path] = []
    scratch: list[Path] = []
    published: list[Path] = []
    ok = False
    try:
        for _, final in finals:
            made += make_parents(final)
            scratch.append(Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent)) / final.name)
        yield scratch
        for (option, final), tmp in zip(finals, scratch, strict=True):
            _publish(tmp, final, option, overwrite)
            if not overwrite:
                published.append(final)
        ok = True
    except BaseException:
        for f in published:  # files this call made (it replaced none of them): take them back
            with contextlib.suppress(OSError):
                f.unlink()
        raise
    finally:
        for tmp in scratch:
            shutil.rmtree(tmp.parent, ignore_errors=True)
        if not ok:
            remove_empty(sorted(set(made), key=lambda d: len(d.parts), reverse=True))
    for _, final in finals:
        record_output_file(final)


def _publish(tmp: Path, final: Path, option: str, overwrite: bool) -> None:
    if not tmp.is_file():
        raise FileNotFoundError(errno.ENOENT, "the writer produced no file", str(tmp))
    if overwrite:
        _refuse_symlink(final, option, "file")
        if final.exists():
            _check_replaceable(_abs(final), str(final), option)
        os.replace(tmp, final)
        return
    try:
        link_new(tmp, final)
    except FileExistsError:
        raise InputError(f"{option} {final} appeared while autorad was working (another autorad writing the same "
                         f"file?); autorad did not replace it: choose another name, or rerun with --overwrite "
                         f"if autorad wrote it") from None


def record_output_file(path: str | Path) -> None:
    """Remember (in the state folder) that autorad wrote ``path`` with its current bytes."""
    p = _abs(path)
    line = json.dumps({"path": str(p), "sha256": hash_file(p), "time": round(time.time())}) + "\n"
    ledger = state_dir() / LEDGER
    try:
        ledger.parent.mkdir(parents=True, exist_ok=True)
        with open(ledger, "a", encoding="utf-8") as f:  # one short line per write: appends do not interleave
            f.write(line)
    except OSError as err:  # the output itself is written; only a later --overwrite of it is lost
        log.warning("could not record %s in %s (%s); --overwrite will not replace it later", p, ledger,
                    err.strerror)


def _recorded(p: Path) -> bool:
    ledger = state_dir() / LEDGER
    if not ledger.is_file():
        return False
    digest = hash_file(p)
    with open(ledger, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("path") == str(p) and rec.get("sha256") == digest:
                return True
    return False


def add_overwrite_argument(parser: Any) -> None:
    """The ``--overwrite`` flag every writing command offers (argparse)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output that autorad wrote earlier (never anything else)")
