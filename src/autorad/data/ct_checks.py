"""Sanity rules for a CT's header, checked before its pixels are allocated and before anything is computed.

One home for the thresholds that ``autorad predict`` / ``segment`` (the CLI) and ``autorad serve`` (the server) apply
through the same loaders (:mod:`autorad.data.dicom`): the size a volume may decode to, the plausible range of voxel
spacings, the rescale to Hounsfield units, and when a tilted or sheared series earns a warning. Messages name the
DICOM tag (keyword and number) and the slice index in position order, never a path (folder names may hold names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autorad.core.errors import InputError

PIXEL_SPACING_RANGE_MM = (0.05, 20.0)  # in-plane voxel size of any CT (clinical: 0.3-1.0 mm)
SLICE_SPACING_RANGE_MM = (0.1, 50.0)  # distance between slice centres (clinical: 0.5-10 mm)
TILT_WARN_DEG = 1.0  # slices tilted more than this from axial (gantry tilt, oblique) -> a warning
AXIAL_MAX_TILT_DEG = math.degrees(math.acos(0.9))  # beyond ~25.8 degrees a DICOM series is not axial: refused
DRIFT_WARN_MM = 1.0  # a slice's in-plane offset from the first slice's axis beyond this -> a warning
DEFLATED_FILE_MAX_BYTES = 256 << 20  # one deflated DICOM file (one slice) may inflate to at most this
GIB = 1 << 30

TAGS = {"Rows": "(0028,0010)", "Columns": "(0028,0011)", "NumberOfFrames": "(0028,0008)",
        "PixelSpacing": "(0028,0030)", "SliceThickness": "(0018,0050)", "ImagePositionPatient": "(0020,0032)",
        "ImageOrientationPatient": "(0020,0037)", "RescaleIntercept": "(0028,1052)", "RescaleSlope": "(0028,1053)",
        "PixelData": "(7FE0,0010)"}


def tag(keyword: str) -> str:
    """``"RescaleSlope (0028,1053)"``: how messages name a DICOM attribute."""
    return f"{keyword} {TAGS[keyword]}"


class VolumeTooLargeError(InputError):
    """A volume would decode to more voxels or bytes than allowed (the server answers 413)."""


def _count(n: float) -> str:
    for div, word in ((1e9, "billion"), (1e6, "million")):
        if n >= div:
            return f"{n / div:.1f} {word}"
    return f"{int(n)}"


def _bytes(n: float) -> str:
    for div, unit in ((GIB, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class VolumeLimits:
    """Caps on what one CT may decode to, checked from its header before any pixel array is allocated.

    ``max_voxels`` counts voxels; ``max_decoded_bytes`` counts what the decoder allocates (voxels x the bytes of the
    file's pixel type, or the inflated size of a compressed file)."""

    max_voxels: int = 1 << 30  # 1024^3: 2 GiB as int16
    max_decoded_bytes: int = 8 * GIB

    def check(self, shape: tuple[int, ...], bytes_per_voxel: int, what: str) -> None:
        """Refuse ``what`` (e.g. "the series") of ``shape`` voxels of ``bytes_per_voxel`` bytes over a cap."""
        n = math.prod(int(s) for s in shape)
        dims = " x ".join(str(int(s)) for s in shape)
        if n > self.max_voxels:
            raise VolumeTooLargeError(f"{what} is {dims} = {_count(n)} voxels, more than the limit of "
                                      f"{_count(self.max_voxels)} voxels")
        if n * bytes_per_voxel > self.max_decoded_bytes:
            raise VolumeTooLargeError(f"{what} is {dims} voxels of {bytes_per_voxel} bytes, which decodes to "
                                      f"{_bytes(n * bytes_per_voxel)}, more than the limit of "
                                      f"{_bytes(self.max_decoded_bytes)}")

    def check_inflated(self, n_bytes: int, what: str) -> None:
        """Refuse a compressed stream that inflates to more than ``max_decoded_bytes``."""
        if n_bytes > self.max_decoded_bytes:
            raise VolumeTooLargeError(f"{what} decompresses to more than the limit of "
                                      f"{_bytes(self.max_decoded_bytes)}")


CLI_LIMITS = VolumeLimits()  # the CLI and the Python API: the user's own machine
SERVE_LIMITS = VolumeLimits(max_voxels=1 << 29, max_decoded_bytes=GIB)  # `autorad serve` defaults (512x512x2048)


def check_in_range(value: float, bounds: tuple[float, float], what: str, kind: str) -> None:
    """Refuse a spacing outside ``bounds`` (mm): ``what`` names where it came from, ``kind`` which spacing."""
    lo, hi = bounds
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{what} is {value:g} mm; a CT's {kind} lies between {lo:g} and {hi:g} mm")


def check_pixel_spacing(row_mm: float, col_mm: float, what: str) -> None:
    for v in (row_mm, col_mm):
        check_in_range(float(v), PIXEL_SPACING_RANGE_MM, what, "in-plane pixel spacing")


def check_slice_spacing(dz_mm: float, what: str) -> None:
    check_in_range(float(dz_mm), SLICE_SPACING_RANGE_MM, what, "slice spacing")


def _tag_number(ds: Any, keyword: str, index: int) -> float:
    v = ds.get(keyword)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise InputError(f"{tag(keyword)} is missing on slice {index}: the stored values cannot be turned into "
                         "Hounsfield units")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{tag(keyword)} is not a number ({str(v)[:40]!r}) on slice {index}") from None
    if not math.isfinite(x):
        raise InputError(f"{tag(keyword)} is {x} on slice {index}; it must be a finite number")
    return x


def rescale(ds: Any, index: int) -> tuple[float, float]:
    """A CT slice's (RescaleSlope, RescaleIntercept), both required (the CT Image module makes them type 1): a
    missing, non-numeric, non-finite or zero slope and a missing or non-finite intercept are refused."""
    slope = _tag_number(ds, "RescaleSlope", index)
    if slope == 0:
        raise InputError(f"{tag('RescaleSlope')} is 0 on slice {index}: every voxel would have the same value")
    return slope, _tag_number(ds, "RescaleIntercept", index)


def check_finite_hu(hu: np.ndarray, index: int) -> None:
    """Refuse a slice whose Hounsfield units are not all finite after the rescale (overflow, float pixel data)."""
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        bad = int(hu.size - np.count_nonzero(np.isfinite(hu)))
        raise InputError(f"slice {index} has {bad} NaN or infinite value(s) after {tag('RescaleSlope')} and "
                         f"{tag('RescaleIntercept')} were applied")


def expected_pixel_bytes(ds: Any) -> int:
    """Bytes of uncompressed pixel data that the header promises: Rows x Columns x frames x samples x bits."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return (int(ds.Rows) * int(ds.Columns) * frames * samples * bits + 7) // 8


def check_payload(ds: Any, payload: int | None, index: int) -> None:
    """Refuse a slice whose header promises more (uncompressed) pixel bytes than its PixelData holds, before any
    array is allocated. ``payload`` is the PixelData element's length (None: encapsulated or unknown)."""
    frames = ds.get("NumberOfFrames")
    if frames not in (None, "") and int(frames) != 1:
        raise InputError(f"{tag('NumberOfFrames')} is {int(frames)} on slice {index}: multi-frame files are not "
                         "supported (one slice per file)")
    if payload is None:
        return
    need = expected_pixel_bytes(ds)
    if payload < need:
        raise InputError(f"{tag('Rows')} x {tag('Columns')} say {int(ds.Rows)} x {int(ds.Columns)} pixels on slice "
                         f"{index} ({_bytes(need)} of pixel data), but its {tag('PixelData')} holds "
                         f"{_bytes(payload)}")


def tilt_deg(normal: np.ndarray) -> float:
    """Angle between the slice normal and the patient's z axis, in degrees."""
    n = np.asarray(normal, dtype=float)
    return math.degrees(math.acos(min(1.0, abs(float(n[2])) / max(float(np.linalg.norm(n)), 1e-12))))


def tilt_warning(normal: np.ndarray, where: str) -> str | None:
    """A warning for slices tilted more than :data:`TILT_WARN_DEG` from axial (``where`` names the source)."""
    t = tilt_deg(normal)
    if t <= TILT_WARN_DEG:
        return None
    return (f"the slices are tilted {t:.1f} degrees from axial ({where}); autorad measures them as axial "
            "slices, so sizes and shapes are approximate")


def drift_warning(positions: np.ndarray, normal: np.ndarray) -> str | None:
    """A warning when slice positions (sorted, (N, 3) mm) drift in-plane from the first slice's axis by more than
    :data:`DRIFT_WARN_MM`: gantry tilt (a sheared stack) or slices of different scans stacked together."""
    pos = np.asarray(positions, dtype=float)
    if len(pos) < 2:
        return None
    n = np.asarray(normal, dtype=float) / max(float(np.linalg.norm(normal)), 1e-12)
    d = pos - pos[0]
    inplane = d - np.outer(d @ n, n)
    drift = np.linalg.norm(inplane, axis=1)
    worst = float(drift.max())
    if worst <= DRIFT_WARN_MM:
        return None
    steps = np.linalg.norm(np.diff(inplane, axis=0), axis=1)
    return (f"irregular slice positions: slices drift up to {worst:.1f} mm in-plane from the first one (up to "
            f"{float(steps.max()):.1f} mm between neighbours; {tag('ImagePositionPatient')}): gantry tilt or slices "
            "of different scans; autorad stacks them as if aligned, so 3D shapes are distorted")
