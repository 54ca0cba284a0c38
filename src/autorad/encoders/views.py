"""Dihedral views of a nodule crop: a nodule on an axial slice has no orientation, so its 8 in-plane rotations
and flips are equally valid images of it (``model.views``).

Training draws one view per nodule per epoch (augmentation); prediction averages the class probabilities over
all ``model.views`` views (test-time augmentation). Dataset embedding (:mod:`autorad.encoders.embed`) and the
predictor (:mod:`autorad.apps.predictor`) both build views with :func:`view`, so training and inference see the same
images. View 0 is the image itself.
"""

from __future__ import annotations

import numpy as np

MAX_VIEWS = 8  # the dihedral group of the square: 4 quarter turns, each optionally mirrored


def view(image: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0-7) of a 2D crop or a 3D (z, y, x) volume: ``k % 4`` quarter turns in the axial plane, after a
    left-right mirror when ``k >= 4``. A contiguous copy (or the input itself for ``k == 0``)."""
    if not 0 <= k < MAX_VIEWS:
        raise ValueError(f"view index must be in 0..{MAX_VIEWS - 1} (got {k})")
    if k == 0:
        return image
    out = np.flip(image, axis=-1) if k >= 4 else image
    return np.ascontiguousarray(np.rot90(out, k % 4, axes=(-2, -1)))


def views_of(images: list[np.ndarray], n_views: int) -> list[np.ndarray]:
    """Views 0..n_views-1 of every image, view-major: ``[img0 v0, img1 v0, ..., img0 v1, ...]``."""
    return [view(img, k) for k in range(n_views) for img in images]
