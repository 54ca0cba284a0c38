"""Crop geometry: a square window of ``factor`` x the nodule's equivalent diameter, centred on the mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autorad.config import CROP_FACTOR, CROP_MIN_PX  # the defaults live with CropConfig

AIR_HU = -1000


def equivalent_diameter_mm(mask: np.ndarray, spacing_mm: float | tuple[float, float]) -> float:
    """Diameter of the circle with the mask's area, in mm (0 for an empty mask)."""
    sy, sx = (spacing_mm, spacing_mm) if np.isscalar(spacing_mm) else spacing_mm
    area = float(np.count_nonzero(mask)) * float(sy) * float(sx)
    return float(2.0 * np.sqrt(area / np.pi))


@dataclass(frozen=True)
class CropBox:
    """A square box in pixel coordinates: rows [r0, r0+size), columns [c0, c0+size)."""

    r0: int
    c0: int
    size: int


def crop_box(mask: np.ndarray, spacing_mm: float, factor: float = CROP_FACTOR, min_px: int = CROP_MIN_PX) -> CropBox:
    """The crop box: centred on the mask's centroid, side = max(min_px, factor x diameter / spacing) pixels."""
    if not mask.any():
        raise ValueError("empty mask: no nodule to crop around")
    rows, cols = np.nonzero(mask)
    cr, cc = float(rows.mean()), float(cols.mean())
    diameter_px = equivalent_diameter_mm(mask, spacing_mm) / float(spacing_mm)
    size = max(int(min_px), int(np.ceil(factor * diameter_px)))
    r0 = int(np.floor(cr + 0.5 - size / 2.0))
    c0 = int(np.floor(cc + 0.5 - size / 2.0))
    return CropBox(r0, c0, size)


def apply_crop(image: np.ndarray, box: CropBox, fill: float = AIR_HU) -> np.ndarray:
    """Cut ``box`` out of a 2D array; parts outside the image are filled with ``fill``."""
    out = np.full((box.size, box.size), fill, dtype=image.dtype)
    h, w = image.shape
    r0, c0 = max(box.r0, 0), max(box.c0, 0)
    r1, c1 = min(box.r0 + box.size, h), min(box.c0 + box.size, w)
    if r1 > r0 and c1 > c0:
        out[r0 - box.r0:r1 - box.r0, c0 - box.c0:c1 - box.c0] = image[r0:r1, c0:c1]
    return out


def crop_nodule(image: np.ndarray, mask: np.ndarray, spacing_mm: float, factor: float = CROP_FACTOR,
                min_px: int = CROP_MIN_PX) -> tuple[np.ndarray, np.ndarray, CropBox]:
    """Crop image (filled with air outside) and mask (filled with 0) with the same box."""
    box = crop_box(mask, spacing_mm, factor, min_px)
    return apply_crop(image, box, AIR_HU), apply_crop(mask.astype(bool), box, False), box
