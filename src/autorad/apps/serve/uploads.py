"""Uploaded CT files -> a path that the project's loaders read, with hard limits.

An upload is either one zip holding one DICOM series folder (or one NIfTI/NRRD file), one NIfTI/NRRD file, or
several DICOM files of one series. Everything is written inside a private temporary folder (0700, made by
:func:`tempfile.mkdtemp`) that the caller removes when the request ends (:func:`private_workdir`).

Refused, each with one line naming the problem (:class:`~autorad.core.errors.InputError`): an upload larger than
``max_upload_bytes``; a zip entry with an absolute path, a drive letter or a ``..`` component; a zip whose entries
would unpack to more than ``max_unpacked_bytes`` or hold more than ``max_files`` entries (checked from the central
directory before anything is unpacked, and again while unpacking, since sizes in a crafted zip can lie: a zip bomb
stops after at most ``max_unpacked_bytes`` written); a corrupt zip; a file name that is not a plain name.
What the CT decodes to is capped too (``max_voxels``, ``max_decoded_bytes``, :class:`~autorad.data.ct_checks.
VolumeLimits`), from its header, before any pixel array is allocated, for every format; a ``.nii.gz`` is also
stream-decompressed under a byte cap (its compressed size says nothing about what it holds).
The zip handling is hand-written on the standard library's :mod:`zipfile` because ``extractall`` follows entry names
(absolute and ``..`` paths) and has no size cap.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from autorad.core.errors import InputError
from autorad.data.ct_checks import SERVE_LIMITS, VolumeLimits, VolumeTooLargeError
from autorad.data.dicom import NIFTI_NRRD_SUFFIXES, CTVolume, check_image_header, load_image_file, load_series

CHUNK = 1 << 20
MB = 1 << 20


NIFTI_HEADER_ALLOWANCE = 16 * MB  # a decompressed .nii may hold this much besides its voxels (header, extensions)


class UploadTooLargeError(VolumeTooLargeError):
    """An upload (or what a zip in it unpacks to) exceeds a size or count limit."""


@dataclass(frozen=True)
class UploadLimits:
    """Caps on one request's upload (bytes received, bytes unpacked from a zip, number of files) and on what its
    CT decodes to (voxels; bytes the decoder allocates)."""

    max_upload_bytes: int = 1024 * MB
    max_unpacked_bytes: int = 2048 * MB
    max_files: int = 5000
    max_voxels: int = SERVE_LIMITS.max_voxels
    max_decoded_bytes: int = SERVE_LIMITS.max_decoded_bytes

    @property
    def volume(self) -> VolumeLimits:
        return VolumeLimits(max_voxels=self.max_voxels, max_decoded_bytes=self.max_decoded_bytes)


@contextlib.contextmanager
def private_workdir() -> Iterator[Path]:
    """A private (0700) temporary folder, removed with everything in it when the block ends."""
    path = Path(tempfile.mkdtemp(prefix="autorad-serve-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def plain_name(name: str | None) -> str:
    """The last part of an uploaded file's name; refuses empty, hidden-path and ``..`` names."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    if base in ("", ".", "..") or "\x00" in base:
        raise InputError(f"uploaded file name {name!r} is not a plain file name")
    return base


def copy_capped(src: BinaryIO, dest: Path, budget: int, what: str) -> int:
    """Copy ``src`` into ``dest`` in chunks; refuse once more than ``budget`` bytes came. Returns bytes written."""
    n = 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > budget:
                raise UploadTooLargeError(f"{what} is larger than the limit of {budget // MB} MB")
            out.write(chunk)
    return n


def _entry_path(name: str) -> PurePosixPath:
    """A zip entry's name as a relative path; refuses absolute paths, drive letters and ``..`` components."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in p.parts or "\x00" in norm:
        raise InputError(f"zip entry {name!r} has an absolute or '..' path; refused")
    return p


def unpack_zip(archive: Path, dest: Path, limits: UploadLimits) -> None:
    """Unpack ``archive`` into ``dest`` under ``limits`` (see the module docstring)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"the uploaded zip cannot be read: {err}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise UploadTooLargeError(f"the zip holds {len(infos)} entries, more than the limit of {limits.max_files}")
        paths = [_entry_path(i.filename) for i in infos]  # every name checked before anything is written
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_unpacked_bytes:
            raise UploadTooLargeError(f"the zip would unpack to {declared // MB} MB, more than the limit of "
                             f"{limits.max_unpacked_bytes // MB} MB")
        left = limits.max_unpacked_bytes
        for info, rel in zip(infos, paths, strict=True):
            if info.is_dir() or not rel.parts:
                continue
            target = dest.joinpath(*rel.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    left -= copy_capped(src, target, left, "the unpacked zip")
            except InputError:
                raise
            except Exception as err:  # BadZipFile (CRC/size mismatch), zlib.error, encrypted, odd names (OSError)
                raise InputError(f"zip entry {rel.name!r} cannot be unpacked ({type(err).__name__})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(NIFTI_NRRD_SUFFIXES))


def find_volume(root: Path) -> Path:
    """The one series folder or NIfTI/NRRD file inside an unpacked upload."""
    from autorad.data.dicom import dicom_files

    folders = [d for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())] if dicom_files(d)]
    images = _image_files(root)
    if len(folders) == 1 and not images:
        return folders[0]
    if len(images) == 1 and not folders:
        return images[0]
    if not folders and not images:
        raise InputError("the upload holds no DICOM files and no NIfTI (.nii, .nii.gz) or NRRD (.nrrd) volume")
    raise InputError(f"the upload holds {len(folders)} folders of DICOM files and {len(images)} NIfTI/NRRD "
                     "file(s); upload one series at a time")


def stage_upload(files: list[tuple[str | None, BinaryIO]], workdir: Path, limits: UploadLimits) -> Path:
    """Write the uploaded ``(name, stream)`` pairs under ``workdir``; return what to load (folder or file)."""
    if not files:
        raise InputError("no file uploaded: send the CT as the form field 'file'")
    if len(files) > limits.max_files:
        raise UploadTooLargeError(f"{len(files)} files uploaded, more than the limit of {limits.max_files}")
    received = workdir / "received"
    unpacked = workdir / "unpacked"
    received.mkdir()
    unpacked.mkdir()
    left = limits.max_upload_bytes
    names: set[str] = set()
    for name, stream in files:
        base = plain_name(name)
        if base in names:
            raise InputError(f"two uploaded files are named {base!r}")
        names.add(base)
        try:
            left -= copy_capped(stream, received / base, left, "the upload")
        except OSError as err:
            raise InputError(f"uploaded file {base!r} cannot be stored ({err.strerror})") from None
    if len(names) == 1:
        only = received / names.pop()
        if zipfile.is_zipfile(only):
            unpack_zip(only, unpacked, limits)
            only.unlink()
            return find_volume(unpacked)
        if only.name.lower().endswith(".zip"):
            raise InputError(f"{only.name} is not a readable zip file")
    return find_volume(received)


def gunzip_capped(src: Path, dest: Path, budget: int) -> None:
    """Stream-decompress the gzip file ``src`` into ``dest``; refuse (and stop) once more than ``budget`` bytes
    came out."""
    try:
        with gzip.open(src, "rb") as stream:
            copy_capped(stream, dest, budget, "the decompressed upload")  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{src.name} is not a readable gzip file ({type(err).__name__})") from None


def load_volume(path: Path, limits: UploadLimits = UploadLimits()) -> CTVolume:
    """Load a staged series folder or NIfTI/NRRD file with the project's readers, under ``limits``. A ``.nii.gz``
    has its header checked, then is decompressed under a byte cap beside itself and read as a ``.nii``."""
    if path.is_dir():
        return load_series(path, limits.volume)
    if path.name.lower().endswith(".nii.gz"):
        check_image_header(path, limits.volume)
        plain = path.with_name(path.name[:-3])
        gunzip_capped(path, plain, limits.max_decoded_bytes + NIFTI_HEADER_ALLOWANCE)
        path.unlink()
        return load_image_file(plain, limits.volume, name=path.name)
    return load_image_file(path, limits.volume)
