"""Click segmentation on real LIDC data: dev max-slice crops (2D) and the LIDC-IDRI-0001 series (3D)."""

from __future__ import annotations

import numpy as np
import pytest

from autorad.data.consensus import dice
from autorad.segment import seed_from_mask, segment_click, segment_click_2d

pytestmark = pytest.mark.shared_data


def test_dev_crops_dice_floor(maxslice_npz):
    """Every 20th dev crop, clicked at its consensus centre.

    The shipped weights were trained on all dev patients, so this checks that the shipped code path and weights
    still segment as trained (a broken window, scaling or threshold drops it far below); the held-out Dice
    (patient-level 5-fold) is measured by bench/segment_dice.py and reported in docs/segmentation.md.
    """
    from autorad.segment.training import load_crops

    crops = load_crops(maxslice_npz)
    crops = crops.subset(np.arange(0, len(crops), 20))
    scores = [dice(segment_click_2d(img, (s, s), seed_from_mask(m)).mask, m)
              for img, m, s in zip(crops.images, crops.masks, crops.spacing_mm, strict=True)]
    assert len(scores) > 100
    assert np.mean(scores) > 0.85, np.mean(scores)
    assert np.median(scores) > 0.85


def _full_consensus(vol, rec) -> np.ndarray:
    """The record's 3D consensus placed in the whole volume (the record keeps a padded box of it)."""
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
    raise AssertionError("could not place the consensus box in the volume")


def test_lidc_0001_3d_against_consensus(lidc_dicom_root):
    from autorad.data.dicom import load_series
    from autorad.data.lidc import find_series_folders, iter_lidc
    from autorad.predict import middle_slice

    series = next(f.path for f in find_series_folders(lidc_dicom_root) if "0001" in str(f.path))
    rec = next(r for r in iter_lidc(series.parents[1]) if hasattr(r, "slice_mask"))
    vol = load_series(series)
    truth = _full_consensus(vol, rec)
    z, y, x = seed_from_mask(truth)
    res = segment_click(vol.hu, vol.spacing_mm, (x, y, z))
    assert res.mask.shape == vol.hu.shape
    d3 = dice(res.mask, truth)
    assert d3 > 0.8, d3
    assert abs(middle_slice(res.mask) - middle_slice(truth)) <= 1
    k = middle_slice(truth)
    assert dice(res.mask[k], truth[k]) > 0.85
