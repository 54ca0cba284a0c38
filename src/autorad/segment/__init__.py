"""Nodule segmentation from one click (a seed voxel), in 2D on a slice or in 3D on a CT volume.

Public API::

    from autorad.segment import segment_click, segment_click_2d

    res = segment_click(volume_hu, spacing_zyx_mm, seed_xyz=(x, y, z), diameter_hint_mm=None)
    res.mask      # bool (D, H, W), the image's shape
    res.method    # "unet-click-3d" (or "disk-from-hint" when nothing was found and a hint was given)
    res.warnings  # list of one-line warnings

Seeds follow ``autorad predict --center``: X = column, Y = row, Z = slice index. A seed outside the image, a seed
in air, a hint outside 2-100 mm (or not finite) and a click where no nodule is found (without a hint) raise
:class:`~autorad.core.errors.InputError`. The shipped segmenter is a small U-Net trained on the LIDC max-slice dev
crops (see docs/segmentation.md for how it was trained and how well it does on patients it never saw).
"""

from __future__ import annotations

import numpy as np

from autorad.segment.core import ClickSegmenter, SegmentResult, check_hint, seed_from_mask
from autorad.segment.model import load_segmenter

__all__ = ["ClickSegmenter", "SegmentResult", "check_hint", "load_segmenter", "seed_from_mask", "segment_click",
           "segment_click_2d"]


def segment_click(image_hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], seed_xyz: tuple[int, int, int],
                  diameter_hint_mm: float | None = None) -> SegmentResult:
    """Segment the nodule at ``seed_xyz`` (column, row, slice index) in a (D, H, W) HU volume, in 3D.

    Args:
        image_hu: the (D, H, W) volume in HU.
        spacing_zyx_mm: the voxel size (slice, row, column) in mm.
        seed_xyz: the click as voxel indices (x = column, y = row, z = slice).
        diameter_hint_mm: an optional size hint (2-100 mm).

    Returns:
        A :class:`SegmentResult`: the (D, H, W) mask, how it was made, warnings.
    """
    return load_segmenter().segment_3d(image_hu, spacing_zyx_mm, seed_xyz, diameter_hint_mm)


def segment_click_2d(slice_hu: np.ndarray, spacing_rc_mm: tuple[float, float], seed_rc: tuple[int, int],
                     diameter_hint_mm: float | None = None) -> SegmentResult:
    """Segment the nodule at ``seed_rc`` (row, column) on one (H, W) HU slice.

    Args:
        slice_hu: the (H, W) slice in HU.
        spacing_rc_mm: the pixel size (row, column) in mm.
        seed_rc: the click as (row, column).
        diameter_hint_mm: an optional size hint (2-100 mm).

    Returns:
        A :class:`SegmentResult`: the (H, W) mask, how it was made, warnings.
    """
    return load_segmenter().segment_2d(slice_hu, spacing_rc_mm, seed_rc, diameter_hint_mm)
