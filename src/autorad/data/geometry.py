"""Nodule geometry: the one home of every rule that turns a CT volume and a nodule mask into what a model sees.

Ingestion (LIDC DICOM, phantom, max-slice) and prediction both call these functions, so training and inference
cannot drift apart:

- :func:`middle_slice_index`: the slice halfway between the mask's first and last slice (rounded down);
- :func:`pixel_spacing_mm`: the one in-plane spacing used for the 2D crop and 2D radiomics;
- :func:`subvolume_box`: the mask's bounding box padded by :data:`PAD_SLICES` / :data:`PAD_INPLANE_PX`, never
  across a gap in the series;
- :func:`nodule_arrays`: the arrays a nodule is stored (``arrays/<id>.npz``) and featurised from: middle slice,
  its mask, the encoder crop (:mod:`autorad.data.crop`) and the padded sub-volume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autorad.config import CROP_FACTOR, CROP_MIN_PX
from autorad.core.errors import InputError
from autorad.data.crop import crop_nodule

PAD_INPLANE_PX = 10  # pixels around the mask's bounding box in the 3D sub-volume
PAD_SLICES = 2  # slices above and below it
SQUARE_PIXEL_RTOL = 1e-3  # row and column spacings closer than this count as square pixels

GapCheck = Callable[[int, int], bool]  # (slice a, slice b) -> whether slices are missing between them


def middle_slice_index(mask: np.ndarray) -> int:
    """Index of the slice halfway between the first and last slice the (D, H, W) mask touches, rounded down.

    Raises :class:`InputError` for an empty mask. The slice may itself be empty when the mask skips slices;
    callers that need a non-empty slice check it (ingestion skips such a nodule, prediction refuses it).
    """
    filled = np.flatnonzero(np.asarray(mask).reshape(mask.shape[0], -1).any(axis=1))
    if filled.size == 0:
        raise InputError("the nodule mask is empty")
    return (int(filled[0]) + int(filled[-1])) // 2


def pixel_spacing_mm(row_mm: float, col_mm: float) -> float:
    """The single in-plane spacing of the 2D crop and radiomics: the row spacing for square pixels (every LIDC
    scan), else the geometric mean, which keeps pixel areas (callers warn about non-square pixels)."""
    row_mm, col_mm = float(row_mm), float(col_mm)
    if is_square(row_mm, col_mm):
        return row_mm
    return float(np.sqrt(row_mm * col_mm))


def is_square(row_mm: float, col_mm: float) -> bool:
    """Whether two in-plane spacings count as equal (relative tolerance :data:`SQUARE_PIXEL_RTOL`)."""
    return abs(float(row_mm) - float(col_mm)) <= SQUARE_PIXEL_RTOL * max(abs(float(row_mm)), abs(float(col_mm)))


def subvolume_box(lo: tuple[int, int, int], hi: tuple[int, int, int], shape: tuple[int, ...],
                  gap_between: GapCheck | None = None) -> tuple[slice, slice, slice]:
    """Inclusive extent ``lo..hi`` (slice, row, column) padded by :data:`PAD_SLICES` / :data:`PAD_INPLANE_PX`,
    clipped to ``shape`` and never extended across a gap in z (``gap_between(a, b)`` says whether one lies
    between slices a and b)."""
    depth, height, width = (int(s) for s in shape[:3])
    z0, z1 = max(lo[0] - PAD_SLICES, 0), min(hi[0] + PAD_SLICES, depth - 1)
    if gap_between is not None:
        while z0 < lo[0] and gap_between(z0, lo[0]):
            z0 += 1
        while z1 > hi[0] and gap_between(hi[0], z1):
            z1 -= 1
    y0, y1 = max(lo[1] - PAD_INPLANE_PX, 0), min(hi[1] + PAD_INPLANE_PX, height - 1)
    x0, x1 = max(lo[2] - PAD_INPLANE_PX, 0), min(hi[2] + PAD_INPLANE_PX, width - 1)
    return slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1)


def mask_extent(mask: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Inclusive (lo, hi) indices of a non-empty (D, H, W) mask's bounding box."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        raise InputError("the nodule mask is empty")
    return (tuple(int(i.min()) for i in idx), tuple(int(i.max()) for i in idx))  # type: ignore[return-value]


@dataclass
class VolumeNodule:
    """A nodule cut out of a volume by the rules above (before cropping)."""

    slice_index: int
    slice_hu: np.ndarray
    slice_mask: np.ndarray
    pixel_spacing_mm: float
    box: tuple[slice, slice, slice]
    volume_hu: np.ndarray
    volume_mask: np.ndarray
    volume_spacing_mm: tuple[float, float, float]


def nodule_in_volume(hu: np.ndarray, mask: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                     gap_between: GapCheck | None = None) -> VolumeNodule:
    """Middle slice, its mask, the in-plane spacing and the padded sub-volume of the nodule ``mask`` in ``hu``."""
    mask = np.asarray(mask, dtype=bool)
    lo, hi = mask_extent(mask)
    k = middle_slice_index(mask)
    box = subvolume_box(lo, hi, hu.shape, gap_between)
    return VolumeNodule(slice_index=k, slice_hu=hu[k], slice_mask=mask[k],
                        pixel_spacing_mm=pixel_spacing_mm(spacing_zyx_mm[1], spacing_zyx_mm[2]), box=box,
                        volume_hu=hu[box], volume_mask=mask[box],
                        volume_spacing_mm=tuple(float(s) for s in spacing_zyx_mm))  # type: ignore[arg-type]


def nodule_arrays(slice_hu: np.ndarray, slice_mask: np.ndarray, pixel_spacing: float,
                  crop_factor: float = CROP_FACTOR, crop_min_px: int = CROP_MIN_PX,
                  volume_hu: np.ndarray | None = None, volume_mask: np.ndarray | None = None,
                  volume_spacing_mm: tuple[float, float, float] | None = None) -> dict[str, np.ndarray]:
    """The arrays a nodule is stored as and featurised from (dtype included: HU as int16, masks as bool).

    ``crop_box`` (the crop's row, column and size) is added for reports; datasets do not store it.
    """
    mask = np.asarray(slice_mask, dtype=bool)
    slice_hu = np.asarray(slice_hu).astype(np.int16)
    crop_hu, crop_mask, box = crop_nodule(slice_hu, mask, pixel_spacing, crop_factor, crop_min_px)
    arrays: dict[str, np.ndarray] = {"slice_hu": slice_hu, "slice_mask": mask,
                                     "crop_hu": crop_hu.astype(np.int16), "crop_mask": crop_mask,
                                     "crop_box": np.array([box.r0, box.c0, box.size], dtype=np.int64)}
    if volume_hu is not None and volume_mask is not None:
        arrays["volume_hu"] = np.asarray(volume_hu).astype(np.int16)
        arrays["volume_mask"] = np.asarray(volume_mask, dtype=bool)
        arrays["volume_spacing_mm"] = np.asarray(volume_spacing_mm, dtype=np.float64)
    return arrays
