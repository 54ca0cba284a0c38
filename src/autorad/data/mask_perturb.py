"""The one home of the n-pixel mask perturbation: a nodule mask grown or shrunk by ``n`` pixels.

``grow<n>`` dilates and ``shrink<n>`` erodes the mask by scikit-image's disk of radius ``n`` (radius 1 is the
4-connected 3x3 cross). A 3D mask is changed in-plane, slice by slice (a disk in every slice, nothing across
slices). A mask that the erosion would remove entirely keeps the pixel (voxel) nearest to its centroid, so a
shrunk mask is never empty and never silently equal to the original.

``autorad robustness`` (prediction with changed masks), the stability-aware radiomics selection
(:mod:`autorad.radiomics.stability`, its perturbed radiomics tables) and ``docs/scripts/make_results.py`` all
call :func:`perturb_mask`.
"""

from __future__ import annotations

import re

import numpy as np

from autorad.core.errors import InputError

_PATTERN = re.compile(r"^(grow|shrink)([1-9][0-9]*)$")


def centroid_pixel(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the mask pixel (voxel) nearest to its centroid (a click inside the nodule)."""
    idx = np.nonzero(mask)
    pts = np.stack(idx, axis=1).astype(np.float64)
    i = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    return tuple(int(a[i]) for a in idx)


def morph(mask: np.ndarray, radius_px: int, grow: bool) -> np.ndarray:
    """Dilate (``grow``) or erode a 2D or 3D boolean mask by a disk of ``radius_px`` pixels (in-plane for 3D);
    an eroded-away mask keeps its centre pixel. Returns a boolean array of the same shape."""
    from scipy.ndimage import binary_dilation, binary_erosion
    from skimage.morphology import disk

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise InputError(f"a mask to perturb must be 2D or 3D, got {mask.ndim}D")
    footprint = disk(int(radius_px)).astype(bool)
    if mask.ndim == 3:
        footprint = footprint[None]
    if grow:
        return binary_dilation(mask, structure=footprint)
    out = binary_erosion(mask, structure=footprint)
    if not out.any() and mask.any():
        out = np.zeros_like(mask)
        out[centroid_pixel(mask)] = True
    return out


def parse_variant(variant: str) -> tuple[int, bool]:
    """``"grow2"`` -> (2, True); ``"shrink1"`` -> (1, False); :class:`InputError` for anything else."""
    m = _PATTERN.match(str(variant))
    if m is None:
        raise InputError(f"unknown mask perturbation {variant!r}: use grow<n> or shrink<n> (n >= 1 pixels)")
    return int(m.group(2)), m.group(1) == "grow"


def perturb_mask(mask: np.ndarray, variant: str) -> np.ndarray:
    """The mask changed by ``variant`` (``grow<n>`` / ``shrink<n>``), in the mask's own dtype."""
    radius, grow = parse_variant(variant)
    mask = np.asarray(mask)
    return morph(mask != 0, radius, grow).astype(mask.dtype)
