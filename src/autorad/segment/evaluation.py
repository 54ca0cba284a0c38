"""How well the click segmenter does: Dice against consensus masks, on max-slice crops (2D) and LIDC series (3D).

Used by bench/segment_dice.py (the table in docs/segmentation.md) and by the real-data tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autorad.core.errors import InputError
from autorad.data.consensus import dice
from autorad.segment.core import ClickSegmenter, seed_from_mask

if TYPE_CHECKING:
    from autorad.data.dataset import NoduleRecord
    from autorad.data.dicom import CTVolume


def score_crops(segmenter: ClickSegmenter, images: np.ndarray, masks: np.ndarray, spacing_mm: np.ndarray,
                offset_px: int = 0, seed: int = 0) -> np.ndarray:
    """Dice of :meth:`ClickSegmenter.segment_2d`, clicked at each mask's centre, against each mask.

    ``offset_px`` moves each click that many pixels (rounded) in a random direction (seeded), as a user's click
    is not at the exact centre. A click where nothing is found (an :class:`InputError`) scores 0.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(len(images))
    for i, (img, m, s) in enumerate(zip(images, masks, spacing_mm, strict=True)):
        r, c = seed_from_mask(m)
        if offset_px:
            angle = rng.uniform(0, 2 * np.pi)
            r = int(np.clip(round(r + offset_px * np.sin(angle)), 0, m.shape[0] - 1))
            c = int(np.clip(round(c + offset_px * np.cos(angle)), 0, m.shape[1] - 1))
        try:
            res = segmenter.segment_2d(img, (float(s), float(s)), (r, c))
        except InputError:
            continue
        out[i] = dice(res.mask, m)
    return out


def consensus_in_volume(vol: CTVolume, rec: NoduleRecord) -> np.ndarray:
    """An LIDC record's 3D consensus placed in its whole volume (the record keeps a padded box of it).

    The box is found where its HU values and the middle slice's mask match the volume exactly.
    """
    k_mid = vol.slice_index(rec.z_mm)
    r_full, c_full = np.argwhere(rec.slice_mask)[0]
    depth, height, width = rec.volume_mask.shape
    for j in range(depth):
        if not rec.volume_mask[j].any():
            continue
        r_box, c_box = np.argwhere(rec.volume_mask[j])[0]
        z0, y0, x0 = k_mid - j, r_full - r_box, c_full - c_box
        if z0 < 0 or z0 + depth > vol.hu.shape[0] or y0 < 0 or x0 < 0:
            continue
        if np.array_equal(vol.hu[z0:z0 + depth, y0:y0 + height, x0:x0 + width], rec.volume_hu) and \
                np.array_equal(rec.volume_mask[j], rec.slice_mask[y0:y0 + height, x0:x0 + width]):
            full = np.zeros(vol.hu.shape, dtype=bool)
            full[z0:z0 + depth, y0:y0 + height, x0:x0 + width] = rec.volume_mask
            return full
    raise ValueError(f"could not place the consensus of {rec.nodule_id} in its volume")


def lidc_volumes(root: str | Path) -> Iterator[tuple[str, CTVolume, np.ndarray]]:
    """(nodule id, CTVolume, 3D consensus) for every nodule record of the LIDC series under ``root``."""
    from autorad.data.dicom import load_series
    from autorad.data.lidc import find_series_folders, iter_lidc

    for folder in find_series_folders(root):
        for rec in iter_lidc(folder.path):
            if not hasattr(rec, "slice_mask") or not rec.slice_mask.any():
                continue
            vol = load_series(folder.path)
            yield rec.nodule_id, vol, consensus_in_volume(vol, rec)
