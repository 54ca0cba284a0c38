"""How a user names a nodule on a new CT, and the checks that refuse or warn instead of misleading.

A nodule comes as a mask (a file or array with the CT's geometry, binary or a label map with ``label``), or as a
centre click (voxel indices X = column, Y = row, Z = slice in position order) from which the click segmentation
(:mod:`autorad.segment`) makes the mask, or -- only when asked for explicitly -- a disk of a given diameter.
Every check raises :class:`~autorad.core.errors.InputError` naming the option at fault (the CLI prints one line and
exits 2); soft problems become warnings that go into every output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autorad.core.errors import InputError
from autorad.data.dicom import CTVolume
from autorad.data.geometry import is_square
from autorad.segment.core import MAX_HINT_MM, MIN_HINT_MM, check_hint

DIAMETER_RANGE_MM = (MIN_HINT_MM, MAX_HINT_MM)  # the segmenter's hint range: 2-100 mm (LIDC nodules are 3-30 mm)
UNEVEN_SPACING_RTOL = 0.1  # slice steps differing from the median step by more than this are "uneven"

MASK_METHODS = {
    "given": "mask given by the user",
    "click": "segmented from a click by autorad.segment",
    "disk": "a drawn disk of the given diameter around the click (not a segmentation)",
}


@dataclass
class NoduleMask:
    """The mask a prediction uses, how it was made, and what to warn about."""

    mask: np.ndarray  # (D, H, W) bool
    method: str  # a key of MASK_METHODS
    detail: str  # in words: the file, the segmentation method, the disk's diameter ...
    warnings: list[str] = field(default_factory=list)


def parse_center(text: str) -> tuple[int, int, int]:
    """``"X,Y,Z"`` -> integer voxel indices (column, row, slice)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 3:
        raise InputError(f"--center must be X,Y,Z voxel indices, got {text!r}")
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(f"--center must hold three integers, got {text!r}") from None


def check_diameter(diameter_mm: float | None) -> float | None:
    """``--diameter-mm``: None, or a finite number within :data:`DIAMETER_RANGE_MM` (the segmenter's own rule,
    :func:`autorad.segment.check_hint`, also for the disk's diameter)."""
    return check_hint(diameter_mm)


def check_center(vol: CTVolume, center: tuple[int, int, int]) -> None:
    """Refuse a centre outside the volume, or one in air (the segmenter's rule, for a disk too)."""
    from autorad.segment.core import check_seed_in_air  # one air rule for clicks and disks

    x, y, z = (int(v) for v in center)
    d, h, w = vol.hu.shape
    if not (0 <= x < w and 0 <= y < h and 0 <= z < d):
        raise InputError(f"--center {x},{y},{z} lies outside the volume (X < {w}, Y < {h}, Z < {d})")
    check_seed_in_air(vol.hu[z], (y, x), (float(vol.spacing_mm[1]), float(vol.spacing_mm[2])),
                       f"--center {x},{y},{z}")


def disk_mask(vol: CTVolume, center: tuple[int, int, int], diameter_mm: float) -> np.ndarray:
    """A (D, H, W) mask holding a disk of ``diameter_mm`` on slice Z around (X, Y) (the explicit disk mode)."""
    x, y, z = center
    d, h, w = vol.hu.shape
    rows, cols = np.ogrid[:h, :w]
    r = diameter_mm / 2.0
    disk = ((rows - y) * vol.spacing_mm[1]) ** 2 + ((cols - x) * vol.spacing_mm[2]) ** 2 <= r ** 2
    mask = np.zeros((d, h, w), dtype=bool)
    mask[z] = disk
    return mask


def binary_mask(values: np.ndarray, label: int | None = None, name: str = "--mask") -> np.ndarray:
    """A label map or mask -> bool mask. Without ``label`` the values must be 0 and 1 only (a several-label map,
    another single label or fractional values are refused, naming ``--label``); with it, the voxels equal to it."""
    v = np.asarray(values)
    if v.dtype == bool:
        out = v
    else:
        finite = np.isfinite(v) if v.dtype.kind == "f" else np.ones(v.shape, dtype=bool)
        if not finite.all():
            raise InputError(f"{name} holds NaN or infinite values; a mask must hold 0/1 or integer labels")
        if v.dtype.kind == "f" and not np.all(v == np.round(v)):
            raise InputError(f"{name} holds non-integer values (e.g. {float(v[v != np.round(v)][0]):g}): "
                             "give a binary 0/1 mask, or a label map with --label N")
        labels = sorted(int(u) for u in np.unique(v) if u != 0)
        if label is not None:
            if int(label) not in labels:
                raise InputError(f"--label {label} is not in {name} (labels present: "
                                 f"{', '.join(map(str, labels)) or 'none'})")
            out = v == int(label)
        elif labels not in ([], [1]):
            shown = ", ".join(map(str, labels[:8])) + (" ..." if len(labels) > 8 else "")
            raise InputError(f"{name} holds label(s) {shown}, not a binary 0/1 mask: choose the nodule with "
                             "--label N")
        else:
            out = v == 1
    if not out.any():
        raise InputError(f"{name} is empty (no nodule voxel)")
    return out


def series_warnings(vol: CTVolume) -> list[str]:
    """Warnings about the series itself: the loader's (tilted slices, slices drifting in-plane), missing slices,
    uneven slice steps, non-square pixels."""
    out = list(vol.warnings)
    if vol.gaps:
        shown = "; ".join(f"z {a:g} to {b:g} mm" for a, b in vol.gaps[:3])
        out.append(f"the series has {len(vol.gaps)} gap(s) where slices are missing ({shown}); slice indices "
                   "skip them, so use the z positions in mm")
    z = np.asarray(vol.z_positions, dtype=float)
    if len(z) > 2:
        steps = np.diff(z)
        med = float(np.median(steps))
        uneven = np.abs(steps - med) > UNEVEN_SPACING_RTOL * med
        if uneven.any() and not vol.gaps:
            out.append(f"uneven slice spacing: steps from {steps.min():.3g} to {steps.max():.3g} mm (median "
                       f"{med:.3g} mm); 3D features assume the median")
    if not is_square(vol.spacing_mm[1], vol.spacing_mm[2]):
        out.append(f"non-square pixels ({vol.spacing_mm[1]:g} x {vol.spacing_mm[2]:g} mm); the 2D crop and "
                   "radiomics use their geometric mean, as ingestion does")
    return out
