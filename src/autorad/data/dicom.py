"""CT volumes: one DICOM series folder, or a NIfTI / NRRD file, loaded into Hounsfield units.

:func:`load_series` reads every DICOM file of a folder with pydicom, checks that they form one usable axial CT
series and stacks them in slice-position order (file names do not matter). Problems with the input as a whole
raise :class:`~autorad.core.errors.InputError` with a one-line message; missing slices (gaps in z) do not: the
volume loads and lists them in :attr:`CTVolume.gaps`, so callers can skip only what needs the missing slices.

Privacy: a :class:`CTVolume` keeps no names, dates, institutions or accession numbers. ``patient_id`` and
``series_uid`` are pseudonymised by :func:`pseudonymize_patient_id` / :func:`pseudonymize_uid` unless they
are already public LIDC pseudonyms. ``sop_uids`` are the raw SOP instance UIDs, kept only to match annotation
files; they must not be written to outputs.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autorad.core.errors import InputError
from autorad.core.pseudonym import pseudonym
from autorad.data import ct_checks
from autorad.data.ct_checks import CLI_LIMITS, VolumeLimits

LIDC_PATIENT_RE = re.compile(r"^LIDC-IDRI-\d{4}$")
TCIA_UID_ROOT = "1.3.6.1.4.1.14519."  # UIDs re-issued by TCIA's de-identification (LIDC-IDRI and others)
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
NIFTI_NRRD_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")
MASK_WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd")  # single-file formats (a .nhdr would need a second file)
GAP_FACTOR = 1.5  # a step in z larger than 1.5 x the typical slice spacing means slices are missing
POSITION_TOL_MM = 1e-3
INTEGRAL_RESCALE_MAX = 1 << 16  # integral slope / intercept up to this are applied in integers (int16 HU)


def _anon(text: str) -> str:
    return pseudonym(text)


def pseudonymize_patient_id(patient_id: str | None, fallback: str = "") -> str:
    """Keep an LIDC pseudonym (``LIDC-IDRI-NNNN``); otherwise a keyed pseudonym (:mod:`autorad.core.pseudonym`).

    An empty PatientID is replaced by the pseudonym of ``fallback`` (e.g. the series UID) so unrelated
    series do not share one id.
    """
    pid = str(patient_id or "").strip()
    if LIDC_PATIENT_RE.match(pid):
        return pid
    return _anon(pid) if pid else _anon("no-patient-id:" + fallback)


def pseudonymize_uid(uid: str | None) -> str:
    """Keep a UID re-issued by TCIA's de-identification (root 1.3.6.1.4.1.14519.); otherwise a keyed pseudonym.

    Original UIDs can embed dates, device serials and institution roots, so they are never written as is.
    """
    u = str(uid or "").strip()
    if u.startswith(TCIA_UID_ROOT):
        return u
    return _anon(u)


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units, slices in ascending position order.

    ``hu`` is (D, H, W): int16 when the rescale slope/intercept are integers, float32 otherwise.
    ``spacing_mm`` is (z, row, column). ``origin`` (x, y, z in mm, patient LPS) and ``direction`` (3x3
    row-major, columns = directions of the column, row and slice index axes) follow SimpleITK's conventions,
    so :meth:`to_sitk` gives an image with the same geometry.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    z_positions: np.ndarray
    sop_uids: list[str]
    series_uid: str
    patient_id: str
    manufacturer: str = ""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    slice_thickness_mm: float = float("nan")
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (z before, z after) around missing slices
    source: str = ""  # file or folder name it was read from (no full path)
    warnings: list[str] = field(default_factory=list)  # about the geometry (tilt, drifting slices): into outputs

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]

    def slice_index(self, z_mm: float, tol_mm: float | None = None) -> int | None:
        """Index of the slice at position ``z_mm`` (within ``tol_mm``, default a quarter of the spacing)."""
        if len(self.z_positions) == 0:
            return None
        tol = 0.25 * self.spacing_mm[0] if tol_mm is None else tol_mm
        i = int(np.argmin(np.abs(self.z_positions - z_mm)))
        return i if abs(float(self.z_positions[i]) - z_mm) <= tol else None

    def gaps_between(self, z_lo: float, z_hi: float) -> list[tuple[float, float]]:
        """The gaps that lie (partly) inside [z_lo, z_hi]."""
        return [(a, b) for a, b in self.gaps if b > z_lo and a < z_hi]

    def gap_between_slices(self, a: int, b: int) -> bool:
        """Whether slices are missing between slice indices ``a`` and ``b``."""
        return bool(self.gaps_between(float(self.z_positions[a]), float(self.z_positions[b])))

    def to_sitk(self) -> Any:
        """The volume as a SimpleITK image with the same origin, spacing and direction."""
        import SimpleITK as sitk  # noqa: N813

        img = sitk.GetImageFromArray(self.hu)
        img.SetSpacing((float(self.spacing_mm[2]), float(self.spacing_mm[1]), float(self.spacing_mm[0])))
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetDirection(tuple(float(v) for v in self.direction))
        return img


# ---------------------------------------------------------------------------------------------------- DICOM


def _is_dicom_file(p: Path) -> bool:
    if p.name.startswith(".") or p.name.upper() == "DICOMDIR" or not p.is_file():
        return False
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    if p.suffix:  # .xml, .txt, .json ... next to the slices
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM files directly inside ``folder`` (``*.dcm`` or extension-less files with a DICM preamble)."""
    return sorted(p for p in Path(folder).iterdir() if _is_dicom_file(p))


def _read_header(path: Path, limits: VolumeLimits | None = None) -> Any:
    """The header of one DICOM file, without its pixel data. With ``limits``, the PixelData element is kept
    deferred (its length known, its bytes not read; :func:`pixel_payload`), and a deflated file is refused when it
    inflates to more than ``limits.max_decoded_bytes`` (pydicom inflates a whole deflated file in memory)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if limits is None:
                return pydicom.dcmread(path, stop_before_pixels=True)
            _check_inflated_size(path, limits)
            return pydicom.dcmread(path, defer_size=4096)
    except InputError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"corrupt or unreadable DICOM file {path.name}: {type(err).__name__}") from None


def _check_inflated_size(path: Path, limits: VolumeLimits) -> None:
    """Refuse a Deflated Explicit VR Little Endian file that inflates to more than the decoded-size cap, counting
    the inflated bytes in bounded chunks (nothing is kept)."""
    import zlib

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    with open(path, "rb") as f:
        f.seek(128 + 4)  # preamble and DICM; then the file meta group (not deflated), then the deflated stream
        raw = f.read()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, data = 0, raw[_meta_end(raw):]
    cap = VolumeLimits(limits.max_voxels, min(limits.max_decoded_bytes, ct_checks.DEFLATED_FILE_MAX_BYTES))
    while data:
        total += len(inflater.decompress(data, 1 << 20))
        cap.check_inflated(total, f"DICOM file {path.name} (deflated)")
        data = inflater.unconsumed_tail
    total += len(inflater.flush())
    cap.check_inflated(total, f"DICOM file {path.name} (deflated)")


def _meta_end(after_dicm: bytes) -> int:
    """Offset, after the DICM prefix, where the file meta group (explicit VR little endian group 0002) ends."""
    import struct

    i = 0
    while i + 8 <= len(after_dicm) and after_dicm[i:i + 2] == b"\x02\x00":
        vr = after_dicm[i + 4:i + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"):
            length = struct.unpack("<I", after_dicm[i + 8:i + 12])[0]
            i += 12 + length
        else:
            length = struct.unpack("<H", after_dicm[i + 6:i + 8])[0]
            i += 8 + length
    return i


def pixel_payload(ds: Any) -> int | None:
    """The length in bytes of a header's (deferred or read) PixelData; None when it is absent or compressed (an
    encapsulated payload says nothing of the decoded size: the volume caps bound those)."""
    tsuid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsuid is not None and tsuid.is_compressed:
        return None
    try:
        el = ds.get_item(0x7FE00010, keep_deferred=True)
    except (KeyError, TypeError):
        return None
    if el is None:
        return None
    length = getattr(el, "length", None)
    if length is None:
        value = getattr(el, "value", None)
        length = len(value) if isinstance(value, bytes | bytearray) else None
    if length is None or length == 0xFFFFFFFF:
        return None
    return int(length)


def _floats(ds: Any, keyword: str, n: int, path: Path) -> list[float] | None:
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    items = [v] if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") else list(v)
    try:
        vals = [float(x) for x in items]
    except (TypeError, ValueError):
        raise InputError(f"DICOM file {path.name}: {keyword} is not numeric ({v!r})") from None
    if len(vals) != n or not all(np.isfinite(vals)):
        raise InputError(f"DICOM file {path.name}: {keyword} should hold {n} numbers, got {v!r}")
    return vals


def _check_decodable(ds: Any, path: Path) -> None:
    """Refuse a compressed transfer syntax that no installed pydicom decoder plugin can read."""
    from pydicom.pixels import get_decoder

    tsuid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsuid is None or not tsuid.is_compressed:
        return
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError:
        raise InputError(f"DICOM file {path.name}: transfer syntax {tsuid.name} ({tsuid}) is not "
                         "supported by pydicom") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise InputError(f"DICOM file {path.name}: compressed transfer syntax {tsuid.name} ({tsuid}) "
                         f"cannot be decoded here (no decoder installed: {needs})")


def _pixels(path: Path, rows: int, cols: int) -> np.ndarray:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
    except InputError:
        raise
    except Exception as err:  # pydicom raises ValueError, EOFError, RuntimeError... on bad pixel data
        first = str(err).splitlines()[0].split(" - ")[0][:160] if str(err) else ""
        raise InputError(f"corrupt or truncated DICOM file {path.name}: cannot read its pixels "
                         f"({type(err).__name__}: {first})") from None
    if arr.shape != (rows, cols):
        raise InputError(f"DICOM file {path.name}: pixel data shape {arr.shape} is not a single "
                         f"{rows}x{cols} slice")
    return arr


def load_series(folder: str | Path, limits: VolumeLimits = CLI_LIMITS) -> CTVolume:
    """Load the one CT series held by ``folder`` into Hounsfield units, slices sorted by position.

    Raises :class:`InputError` for a missing folder, no DICOM files, non-CT modality, several series in one
    folder, a corrupt or truncated file, duplicate slice positions, inconsistent or absent spacing / size /
    orientation, or a compressed transfer syntax that no installed decoder can read; and, before any pixel array
    is allocated (:mod:`autorad.data.ct_checks`), a header that promises more pixels than the file holds, a series
    over ``limits``, spacings outside the plausible range, or a missing / zero / non-finite rescale. Gaps in z are
    listed in ``gaps``; tilted slices and slices drifting in-plane in ``warnings`` (not errors).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"DICOM folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder} (give the folder that holds one CT series)")
    files = dicom_files(folder)
    if not files:
        raise InputError(f"no DICOM files (*.dcm) in {folder}")
    headers = [(p, _read_header(p, limits)) for p in files]

    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in headers)
    if len(series) > 1:
        raise InputError(f"{len(series)} series mixed in one folder {folder.name} ({len(files)} files); "
                         "put each series in its own folder")
    modalities = Counter(str(ds.get("Modality", "")).strip() or "(none)" for _, ds in headers)
    if set(modalities) != {"CT"}:
        other = next(m for m in modalities if m != "CT")
        raise InputError(f"not a CT series: modality {other} in {folder.name} (only CT is supported)")

    sizes, spacings, orients, positions = set(), set(), set(), []
    first_spacing: list[float] = []
    for p, ds in headers:
        rows, cols = ds.get("Rows"), ds.get("Columns")
        if not rows or not cols:
            raise InputError(f"DICOM file {p.name}: Rows/Columns missing")
        sizes.add((int(rows), int(cols)))
        ps = _floats(ds, "PixelSpacing", 2, p)
        if ps is None:
            raise InputError(f"DICOM file {p.name}: PixelSpacing is absent (in-plane spacing unknown)")
        if min(ps) <= 0:
            raise InputError(f"DICOM file {p.name}: PixelSpacing {ps} is not positive")
        ct_checks.check_pixel_spacing(ps[0], ps[1], ct_checks.tag("PixelSpacing"))
        spacings.add(tuple(round(v, 5) for v in ps))
        first_spacing = first_spacing or ps
        iop = _floats(ds, "ImageOrientationPatient", 6, p) or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        orients.add(tuple(round(v, 4) for v in iop))
        ipp = _floats(ds, "ImagePositionPatient", 3, p)
        if ipp is None:
            raise InputError(f"DICOM file {p.name}: ImagePositionPatient is absent (slice position unknown)")
        positions.append(ipp)
    if len(sizes) > 1:
        raise InputError(f"inconsistent slice sizes in {folder.name}: {sorted(sizes)}")
    if len(spacings) > 1:
        raise InputError(f"inconsistent in-plane PixelSpacing in {folder.name}: {sorted(spacings)}")
    if len(orients) > 1:
        raise InputError(f"inconsistent ImageOrientationPatient in {folder.name}")
    (rows, cols), (row_mm, col_mm), iop = sizes.pop(), first_spacing, orients.pop()
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row_dir, col_dir)
    if abs(normal[2]) < 0.9:
        raise InputError(f"series in {folder.name} is not axial (slice normal "
                         f"{np.round(normal, 2).tolist()}); only axial CT is supported")

    pos = np.asarray(positions, dtype=np.float64)
    order = np.argsort(pos[:, 2], kind="stable")
    z = pos[order, 2]
    dup = np.nonzero(np.diff(z) < POSITION_TOL_MM)[0]
    if dup.size:
        a, b = files[order[dup[0]]], files[order[dup[0] + 1]]
        more = f", {dup.size} duplicates in all" if dup.size > 1 else ""
        raise InputError(f"duplicate slice position z={z[dup[0]]:.2f} mm in {folder.name} "
                         f"({a.name} and {b.name}{more})")

    first_ds = headers[order[0]][1]
    thickness = first_ds.get("SliceThickness")
    thickness = float(thickness) if thickness not in (None, "") else float("nan")
    if len(z) > 1:
        steps = np.diff(z)
        dz = float(np.median(steps))
        gaps = [(float(z[i]), float(z[i + 1])) for i in np.nonzero(steps > GAP_FACTOR * dz)[0]]
        ct_checks.check_slice_spacing(dz, f"the slice spacing (median step of {ct_checks.tag('ImagePositionPatient')})")
    else:
        if np.isfinite(thickness) and thickness > 0:
            ct_checks.check_slice_spacing(thickness, ct_checks.tag("SliceThickness"))
        dz = thickness if np.isfinite(thickness) and thickness > 0 else 1.0
        gaps = []
    geometry_warnings = [w for w in (ct_checks.tilt_warning(normal, ct_checks.tag("ImageOrientationPatient")),
                                     ct_checks.drift_warning(pos[order], normal)) if w]

    # every header checked before any pixel array is allocated: payload size, frames, rescale, size caps
    rescales = []
    with warnings.catch_warnings():  # pydicom warns about invalid DS values ('nan'); they are refused by name
        warnings.simplefilter("ignore")
        for out_i, i in enumerate(order):
            p, ds = headers[i]
            ct_checks.check_payload(ds, pixel_payload(ds), out_i)
            _check_decodable(ds, p)
            rescales.append(ct_checks.rescale(ds, out_i))
    integral = all(float(v).is_integer() and abs(v) <= INTEGRAL_RESCALE_MAX for pair in rescales for v in pair)
    limits.check((len(files), rows, cols), 2 if integral else 4, "the series")
    # int16 HU when the rescale is integral and every value fits (half the memory of float32)
    hu: np.ndarray = np.empty((len(files), rows, cols), dtype=np.int16 if integral else np.float32)
    for out_i, i in enumerate(order):
        p, ds = headers[i]
        slope, intercept = rescales[out_i]
        raw = _pixels(p, rows, cols)
        if integral:
            vals = raw.astype(np.int64) * int(slope) + int(intercept)
            if hu.dtype == np.int16 and (vals.min() < -32768 or vals.max() > 32767):
                hu = hu.astype(np.float32)
            hu[out_i] = vals
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below, by name
                hu[out_i] = raw.astype(np.float64) * slope + intercept
        ct_checks.check_finite_hu(hu[out_i], out_i)

    direction = (row_dir[0], col_dir[0], normal[0], row_dir[1], col_dir[1], normal[1],
                 row_dir[2], col_dir[2], normal[2])
    sid = str(first_ds.get("SeriesInstanceUID", ""))
    return CTVolume(
        hu=hu, spacing_mm=(dz, float(row_mm), float(col_mm)), z_positions=z.astype(np.float64),
        sop_uids=[str(headers[i][1].get("SOPInstanceUID", "")) for i in order],
        series_uid=pseudonymize_uid(sid),
        patient_id=pseudonymize_patient_id(first_ds.get("PatientID"), fallback=sid),
        manufacturer=str(first_ds.get("Manufacturer", "") or ""),
        origin=tuple(float(v) for v in pos[order[0]]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction), slice_thickness_mm=thickness, gaps=gaps,
        source=folder.name, warnings=geometry_warnings)


# ------------------------------------------------------------------------------------------- NIfTI / NRRD


def _is_image_file(p: Path) -> bool:
    return p.name.lower().endswith(NIFTI_NRRD_SUFFIXES)


_SITK_BYTES = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}


def _sitk_info(path: Path, what: str) -> Any:
    """A SimpleITK reader for ``path`` whose header (size, spacing, pixel type) is read, its pixels not yet."""
    import SimpleITK as sitk  # noqa: N813

    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if not path.is_file() or not _is_image_file(path):
        raise InputError(f"{what} must be a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file: {path.name}")
    if not os.access(path, os.R_OK):  # SimpleITK would say "does not exist"
        raise InputError(f"cannot read {what} file {path}: permission denied")
    from autorad.core.thirdparty import itk_to_log

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with itk_to_log():  # ITK's own WARNING lines go to the log
            reader.ReadImageInformation()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1][:160] if str(err).strip() else ""
        raise InputError(f"cannot read {what} file {path.name}: {first}") from None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
        raise InputError(f"{what} file {path.name} is not a 3D single-channel volume "
                         f"(dimension {reader.GetDimension()}, {reader.GetNumberOfComponents()} channels)")
    return reader


def _sitk_bytes_per_voxel(reader: Any) -> int:
    import SimpleITK as sitk  # noqa: N813

    name = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    return next((n for k, n in _SITK_BYTES.items() if k in name), 8)


def _sitk_execute(reader: Any, path: Path, what: str) -> Any:
    """The pixels of a reader whose header :func:`_sitk_info` read (and its caller checked)."""
    from autorad.core.thirdparty import itk_to_log

    try:
        with itk_to_log():  # ITK's own WARNING lines go to the log
            return reader.Execute()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1][:160] if str(err).strip() else ""
        raise InputError(f"cannot read {what} file {path.name}: {first}") from None


def check_image_header(path: str | Path, limits: VolumeLimits = CLI_LIMITS) -> Any:
    """Read and check a NIfTI / NRRD CT's header, nothing of its pixels: a 3D single-channel image, voxel sizes in
    the plausible range, a size within ``limits``. Returns the SimpleITK reader (ready to read the pixels)."""
    path = Path(path)
    reader = _sitk_info(path, "image")
    sx, sy, sz = reader.GetSpacing()
    if min(sx, sy, sz) <= 0:
        raise InputError(f"image file {path.name} has non-positive spacing {reader.GetSpacing()}")
    ct_checks.check_pixel_spacing(sx, sy, "the image's in-plane voxel size (x, y spacing)")
    ct_checks.check_slice_spacing(sz, "the image's slice spacing (z voxel size)")
    shape, per_voxel = tuple(reversed(reader.GetSize())), _sitk_bytes_per_voxel(reader)
    limits.check(shape, per_voxel, "the image file")
    need = math.prod(shape) * per_voxel
    if path.name.lower().endswith(".nii") and path.stat().st_size < need:  # uncompressed: voxels follow the header
        raise InputError(f"the image header says {' x '.join(map(str, shape))} voxels of {per_voxel} bytes, but the "
                         f"file holds only {path.stat().st_size} bytes")
    return reader


def load_image_file(path: str | Path, limits: VolumeLimits = CLI_LIMITS, name: str | None = None) -> CTVolume:
    """Load a NIfTI (.nii, .nii.gz) or NRRD CT volume whose voxel values are already Hounsfield units.

    The array is (D, H, W) in SimpleITK order (slice, row, column); slices are kept in file order and
    ``z_positions`` are the slice centres' z (mm). The patient id is ``anon-`` + a hash of the file name (``name``
    when given: the upload's name of a file decompressed under another). The header is checked before the pixels
    are read (:func:`check_image_header`); slices tilted from axial give a warning.
    """
    import SimpleITK as sitk  # noqa: N813

    path = Path(path)
    name = name or path.name
    reader = check_image_header(path, limits)
    sx, sy, sz = reader.GetSpacing()
    direction = tuple(float(v) for v in reader.GetDirection())
    img = _sitk_execute(reader, path, "image")
    arr = sitk.GetArrayViewFromImage(img)  # no copy: the one copy is the conversion below
    if not np.issubdtype(arr.dtype, np.integer) and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"image file {path.name} holds {bad} NaN or infinite voxel(s); a CT in Hounsfield units "
                         "must be finite everywhere")
    hu = arr.astype(np.int16) if np.issubdtype(arr.dtype, np.integer) and arr.min() >= -32768 and \
        arr.max() <= 32767 else arr.astype(np.float32)
    z = np.array([img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(hu.shape[0])], dtype=float)
    origin = tuple(img.GetOrigin())
    del arr, img
    tilt = ct_checks.tilt_warning(np.array(direction[2::3]), "the image's direction matrix")
    return CTVolume(hu=hu, spacing_mm=(float(sz), float(sy), float(sx)), z_positions=z,
                    sop_uids=[""] * hu.shape[0], series_uid=_anon("file:" + name),
                    patient_id=_anon("file:" + name), origin=origin,
                    direction=direction, slice_thickness_mm=float(sz), source=name,
                    warnings=[tilt] if tilt else [])


def load_mask_file(path: str | Path, like: CTVolume) -> np.ndarray:
    """Load a nodule mask (NIfTI / NRRD) as a (D, H, W) bool array (every voxel above 0); refuse one whose
    geometry differs from ``like`` (see :func:`load_mask_values`) or that is empty."""
    mask = load_mask_values(path, like) > 0
    if not mask.any():
        raise InputError(f"mask {Path(path).name} is empty (no voxel above 0)")
    return mask


def load_mask_values(path: str | Path, like: CTVolume) -> np.ndarray:
    """Load a mask or label map (NIfTI / NRRD) as its raw (D, H, W) values; refuse one whose geometry differs
    from ``like``: size must match exactly, spacing and origin within 1e-3 mm, direction within 1e-4.
    """
    import SimpleITK as sitk  # noqa: N813

    path = Path(path)
    reader = _sitk_info(path, "mask")  # the geometry is compared from the header, before any pixel is read
    d, h, w = like.shape
    size, spacing = (w, h, d), (float(like.spacing_mm[2]), float(like.spacing_mm[1]), float(like.spacing_mm[0]))
    if tuple(reader.GetSize()) != size:
        raise InputError(f"mask {path.name} has size {reader.GetSize()} but the image has {size} (x, y, z)")
    if not np.allclose(reader.GetSpacing(), spacing, rtol=1e-4, atol=1e-3):
        raise InputError(f"mask {path.name} has spacing {tuple(round(v, 4) for v in reader.GetSpacing())} "
                         f"mm but the image has {tuple(round(v, 4) for v in spacing)} mm")
    if not np.allclose(reader.GetOrigin(), like.origin, atol=1e-3):
        raise InputError(f"mask {path.name} has origin {tuple(round(v, 3) for v in reader.GetOrigin())} but "
                         f"the image has {tuple(round(float(v), 3) for v in like.origin)}")
    if not np.allclose(reader.GetDirection(), like.direction, atol=1e-4):
        raise InputError(f"mask {path.name} has a different orientation (direction) from the image")
    return sitk.GetArrayFromImage(_sitk_execute(reader, path, "mask"))


def load_ct(path: str | Path, limits: VolumeLimits = CLI_LIMITS) -> CTVolume:
    """A CT from a DICOM series folder (:func:`load_series`) or a NIfTI / NRRD file (:func:`load_image_file`)."""
    p = Path(path)
    if p.is_dir():
        return load_series(p, limits)
    if not p.exists():
        raise InputError(f"CT not found: {p} (give a DICOM series folder or a NIfTI / NRRD file)")
    return load_image_file(p, limits)


def write_mask_file(mask: np.ndarray, like: CTVolume, path: str | Path) -> Path:
    """Write a (D, H, W) mask as a uint8 NIfTI / NRRD image with ``like``'s geometry, atomically.

    The file appears complete or not at all (written beside ``path`` under a temporary name, then renamed).
    Whether ``path`` may be written at all is the caller's decision.
    """
    import tempfile

    import SimpleITK as sitk  # noqa: N813

    from autorad.core.io import atomic_write_bytes

    path = Path(path)
    m = np.asarray(mask)
    if m.shape != like.hu.shape:
        raise InputError(f"mask shape {m.shape} differs from the image's {like.hu.shape}")
    suffix = next((s for s in MASK_WRITE_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise InputError(f"the mask file must end in .nii, .nii.gz or .nrrd: {path.name}")
    img = sitk.GetImageFromArray(m.astype(np.uint8))
    img.CopyInformation(like.to_sitk())
    # SimpleITK writes only to a named file: write it in a private scratch folder, then publish the bytes through
    # the project's one atomic writer (permissions, rename, write errors naming the path).
    with tempfile.TemporaryDirectory(prefix="autorad-mask-") as scratch:
        tmp = Path(scratch) / f"mask{suffix}"
        from autorad.core.thirdparty import itk_to_log

        with itk_to_log():  # e.g. "Non-orthogonal direction matrix coerced to orthogonal" goes to the log
            sitk.WriteImage(img, str(tmp), useCompression=True)
        atomic_write_bytes(path, tmp.read_bytes())
    return path
