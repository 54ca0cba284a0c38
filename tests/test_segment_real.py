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
    from autorad.segment import load_segmenter
    from autorad.segment.evaluation import score_crops
    from autorad.segment.training import load_crops

    crops = load_crops(maxslice_npz)
    crops = crops.subset(np.arange(0, len(crops), 20))
    scores = score_crops(load_segmenter(), crops.images, crops.masks, crops.spacing_mm)
    assert len(scores) > 100
    one = segment_click_2d(crops.images[0], (crops.spacing_mm[0],) * 2, seed_from_mask(crops.masks[0]))
    assert dice(one.mask, crops.masks[0]) == scores[0]  # the public function is the scored path
    assert np.mean(scores) > 0.85, np.mean(scores)
    assert np.median(scores) > 0.85


def test_lidc_0001_3d_against_consensus(lidc_dicom_root):
    from autorad.data.geometry import middle_slice_index as middle_slice  # the one middle-slice rule
    from autorad.segment.evaluation import lidc_volumes

    nodule_id, vol, truth = next(n for n in lidc_volumes(lidc_dicom_root / "LIDC-IDRI-0001"))
    assert nodule_id == "LIDC-IDRI-0001-n1"
    z, y, x = seed_from_mask(truth)
    res = segment_click(vol.hu, vol.spacing_mm, (x, y, z))
    assert res.mask.shape == vol.hu.shape
    d3 = dice(res.mask, truth)
    assert d3 > 0.8, d3
    assert abs(middle_slice(res.mask) - middle_slice(truth)) <= 1
    k = middle_slice(truth)
    assert dice(res.mask[k], truth[k]) > 0.85


def test_cli_segment_dicom_writes_the_series_geometry(lidc_dicom_root, tmp_path):
    import json
    import subprocess
    import sys

    import SimpleITK as sitk  # noqa: N813

    from autorad.data.dicom import load_series
    from autorad.data.lidc import find_series_folders

    series = next(f.path for f in find_series_folders(lidc_dicom_root) if "0001" in str(f.path))
    out = tmp_path / "mask.nii.gz"
    run = subprocess.run([sys.executable, "-m", "autorad", "segment", "--dicom", str(series), "--center", "316,367,7",
                          "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["slices"][0] <= 4 and summary["slices"][1] >= 9 and "LIDC" not in run.stdout
    ref = load_series(series).to_sitk()
    m = sitk.ReadImage(str(out))
    assert m.GetSize() == ref.GetSize()
    assert np.allclose(m.GetOrigin(), ref.GetOrigin()) and np.allclose(m.GetSpacing(), ref.GetSpacing())
    assert np.allclose(m.GetDirection(), ref.GetDirection())
    assert int(sitk.GetArrayFromImage(m).sum()) == summary["voxels"]
