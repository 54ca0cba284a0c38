"""Click segmentation (autorad.segment): synthetic nodules, refusals, geometry, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from autorad.core.errors import InputError
from autorad.data.consensus import dice
from autorad.segment import seed_from_mask, segment_click, segment_click_2d

SPACING = (1.25, 0.7, 0.7)  # z, row, column (mm)


def synthetic_lung(shape=(40, 96, 96), radius_mm=5.0, centre=(20, 48, 50), seed=0):
    """Lung parenchyma (-850 HU, noise) with a chest wall, a vessel and a soft-tissue sphere; returns (hu, sphere)."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-850, 25, shape).astype(np.float32)
    z, r, c = np.indices(shape)
    dz, dr, dc = SPACING
    hu[:, :, :18] = 40.0  # chest wall along one side
    hu[:, :, :10] = -1000.0  # air outside the body
    vessel = ((r - 20) * dr) ** 2 + ((z - 10) * dz) ** 2 <= 1.2 ** 2  # a vessel running along the columns
    hu[vessel] = 30.0
    sphere = ((z - centre[0]) * dz) ** 2 + ((r - centre[1]) * dr) ** 2 + ((c - centre[2]) * dc) ** 2 <= radius_mm ** 2
    hu[sphere] = rng.normal(30, 20, int(sphere.sum()))
    return hu, sphere


def test_sphere_in_synthetic_lung_3d():
    hu, sphere = synthetic_lung()
    res = segment_click(hu, SPACING, (50, 48, 20))
    assert res.mask.shape == hu.shape and res.mask.dtype == bool
    assert dice(res.mask, sphere) > 0.9
    assert res.method.endswith("3d") and res.warnings == []


def test_sphere_2d_and_hint():
    hu, sphere = synthetic_lung(radius_mm=4.0)
    res = segment_click_2d(hu[20], SPACING[1:], (48, 50))
    assert res.mask.shape == hu[20].shape and dice(res.mask, sphere[20]) > 0.9
    hinted = segment_click_2d(hu[20], SPACING[1:], (48, 50), diameter_hint_mm=8.0)
    assert dice(hinted.mask, sphere[20]) > 0.9 and hinted.warnings == []
    far = segment_click_2d(hu[20], SPACING[1:], (48, 50), diameter_hint_mm=40.0)
    assert any("far from" in w for w in far.warnings)


def test_sphere_touching_the_chest_wall_is_not_the_wall():
    hu, sphere = synthetic_lung(radius_mm=4.0, centre=(20, 48, 24))
    res = segment_click(hu, SPACING, (24, 48, 20))
    assert dice(res.mask, sphere) > 0.7
    assert not res.mask[:, :, 10:16].any()  # the wall itself is not taken


def test_refusals():
    hu, _ = synthetic_lung()
    air = np.full((10, 64, 64), -1000.0, dtype=np.float32)
    with pytest.raises(InputError, match="in air"):
        segment_click(air, SPACING, (30, 30, 5))
    with pytest.raises(InputError, match="outside the volume"):
        segment_click(hu, SPACING, (96, 10, 10))
    with pytest.raises(InputError, match="outside the volume"):
        segment_click(hu, SPACING, (10, 10, -1))
    for bad in (1.0, 101.0, math.inf, math.nan, -5.0):
        with pytest.raises(InputError, match="diameter-mm"):
            segment_click(hu, SPACING, (50, 48, 20), diameter_hint_mm=bad)
    with pytest.raises(InputError, match="spacing"):
        segment_click(hu, (1.0, 0.0, 0.7), (50, 48, 20))
    with pytest.raises(InputError, match="3D"):
        segment_click(hu[0], SPACING, (50, 48, 20))
    with pytest.raises(InputError, match="outside"):
        segment_click_2d(hu[20], SPACING[1:], (96, 5))


def test_no_nodule_without_hint_is_an_error_with_hint_a_disk():
    rng = np.random.default_rng(1)
    lung = rng.normal(-850, 25, (64, 64)).astype(np.float32)
    with pytest.raises(InputError, match="no nodule found"):
        segment_click_2d(lung, (0.7, 0.7), (32, 32))
    res = segment_click_2d(lung, (0.7, 0.7), (32, 32), diameter_hint_mm=6.0)
    assert res.method == "disk-from-hint" and res.warnings
    assert abs(2 * math.sqrt(res.mask.sum() * 0.49 / math.pi) - 6.0) < 0.6
    tissue = rng.normal(40, 20, (200, 200)).astype(np.float32)  # inside the chest wall: no object to outline
    with pytest.raises(InputError, match="no nodule found"):
        segment_click_2d(tissue, (0.7, 0.7), (100, 100))


def test_seed_from_mask():
    m = np.zeros((9, 9), bool)
    m[2:5, 2:5] = True
    assert seed_from_mask(m) == (3, 3)
    ring = np.zeros((11, 11), bool)
    ring[1:10, 1:10] = True
    ring[3:8, 3:8] = False  # centroid (5, 5) is a hole: the nearest mask pixel is returned
    r, c = seed_from_mask(ring)
    assert ring[r, c]


def test_cli_writes_nifti_with_geometry_and_refuses_overwrite(tmp_path):
    import SimpleITK as sitk  # noqa: N813

    hu, sphere = synthetic_lung()
    img = sitk.GetImageFromArray(hu.astype(np.int16))
    img.SetSpacing(SPACING[::-1])
    img.SetOrigin((-12.0, 30.5, -200.0))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    out = tmp_path / "mask.nii.gz"
    cmd = [sys.executable, "-m", "autorad", "segment", "--image", str(tmp_path / "ct.nii.gz"), "--center", "50,48,20",
           "--out", str(out)]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["middle_slice"] == 20 and summary["method"].startswith("unet")
    m = sitk.ReadImage(str(out))
    assert m.GetSize() == img.GetSize() and np.allclose(m.GetOrigin(), img.GetOrigin())
    assert np.allclose(m.GetSpacing(), img.GetSpacing())
    assert dice(sitk.GetArrayFromImage(m) > 0, sphere) > 0.9
    before = out.read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert out.read_bytes() == before
    bad = subprocess.run(cmd[:6] + ["--center", "0,0,0", "--out", str(tmp_path / "m3.nii.gz")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m3.nii.gz").exists()


def test_shipped_weights_load_strictly_and_refuse_tampering(tmp_path):
    import shutil

    from autorad.core.errors import CheckpointError
    from autorad.segment.model import WEIGHTS_DIR, load_segmenter

    seg = load_segmenter()
    assert seg.meta["trained_on"] == "all dev patients" and seg.window_px == 48
    bad = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # flip bits of one weight
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_segmenter(bad)
    with pytest.raises(CheckpointError):
        load_segmenter(tmp_path / "missing")


@pytest.mark.parametrize("bad", ["1", "101", "nan", "inf", "big"])
def test_cli_diameter_hint_is_bounded_like_predicts(tmp_path, bad, capsys):
    """``segment --diameter-mm`` takes the same bounded option type as ``predict --diameter-mm``."""
    from autorad.apps.cli import main

    with pytest.raises(SystemExit) as err:
        main(["segment", "--image", str(tmp_path / "ct.nii.gz"), "--center", "1,1,1", "--diameter-mm", bad,
              "--out", str(tmp_path / "m.nii.gz")])
    line = capsys.readouterr().err.strip()
    assert err.value.code == 2 and "argument --diameter-mm" in line and "\n" not in line
    assert not (tmp_path / "m.nii.gz").exists()
