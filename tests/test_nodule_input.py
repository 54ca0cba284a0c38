"""Input checks of predict (no model needed): air clicks, diameters, label maps, gaps, geometry rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autorad.apps.nodule_input import binary_mask, check_center, check_diameter, disk_mask, series_warnings
from autorad.core.errors import InputError
from autorad.data.dicom import CTVolume
from autorad.data.geometry import (
    PAD_INPLANE_PX,
    PAD_SLICES,
    middle_slice_index,
    nodule_arrays,
    nodule_in_volume,
    pixel_spacing_mm,
    subvolume_box,
)


def _vol(d=9, h=40, w=40, gaps=(), z=None, spacing=(1.25, 0.7, 0.7)) -> CTVolume:
    hu = np.full((d, h, w), -1000, dtype=np.int16)
    hu[:, 10:30, 10:30] = 30
    zs = np.arange(d) * spacing[0] if z is None else np.asarray(z, float)
    return CTVolume(hu=hu, spacing_mm=spacing, z_positions=zs, sop_uids=[""] * d, series_uid="s", patient_id="p",
                    gaps=list(gaps))


def test_middle_slice_rule_rounds_down_and_refuses_empty():
    m = np.zeros((10, 4, 4), bool)
    m[3:7, 1, 1] = True  # slices 3..6 -> (3 + 6) // 2 = 4
    assert middle_slice_index(m) == 4
    m[:] = False
    with pytest.raises(InputError, match="empty"):
        middle_slice_index(m)


def test_pixel_spacing_rule():
    assert pixel_spacing_mm(0.7, 0.7) == 0.7
    assert pixel_spacing_mm(0.5, 0.8) == pytest.approx(math.sqrt(0.4))


def test_subvolume_box_pads_and_stops_at_gaps():
    box = subvolume_box((5, 20, 20), (6, 25, 25), (20, 64, 64))
    assert (box[0].start, box[0].stop) == (5 - PAD_SLICES, 6 + PAD_SLICES + 1)
    assert (box[1].start, box[1].stop) == (20 - PAD_INPLANE_PX, 25 + PAD_INPLANE_PX + 1)
    gapped = subvolume_box((5, 20, 20), (6, 25, 25), (20, 64, 64), lambda a, b: a < 5)  # a gap below slice 5
    assert gapped[0].start == 5 and gapped[0].stop == 9


def test_nodule_in_volume_and_arrays_follow_the_rules():
    vol = _vol()
    m = np.zeros(vol.hu.shape, bool)
    m[2:5, 15:20, 15:21] = True
    nod = nodule_in_volume(vol.hu, m, vol.spacing_mm)
    assert nod.slice_index == 3 and nod.pixel_spacing_mm == 0.7 and nod.volume_mask.sum() == m.sum()
    arrays = nodule_arrays(nod.slice_hu, nod.slice_mask, nod.pixel_spacing_mm, 2.0, 16, nod.volume_hu,
                           nod.volume_mask, nod.volume_spacing_mm)
    assert arrays["slice_hu"].dtype == np.int16 and arrays["crop_mask"].sum() == nod.slice_mask.sum()
    assert set(arrays) >= {"slice_hu", "slice_mask", "crop_hu", "crop_mask", "volume_hu", "volume_mask"}


@pytest.mark.parametrize("d", [float("nan"), float("inf"), -3, 0, 1.9, 100.5, 500])
def test_bad_diameters_are_refused_naming_the_option(d):
    with pytest.raises(InputError, match="--diameter-mm"):
        check_diameter(d)


def test_good_diameters_pass():
    assert check_diameter(None) is None and check_diameter(2) == 2.0 and check_diameter("12.5") == 12.5


def test_air_click_is_refused_tissue_click_passes():
    vol = _vol()
    with pytest.raises(InputError, match="in air"):
        check_center(vol, (0, 0, 0))
    with pytest.raises(InputError, match="outside the volume"):
        check_center(vol, (40, 5, 1))
    check_center(vol, (20, 20, 4))


@pytest.mark.parametrize("values,match", [
    (np.array([0, 1, 2]), "label"), (np.array([0, 2, 2]), "label"), (np.array([0.0, 0.7, 1.0]), "non-integer"),
    (np.array([0, 0, 0]), "empty"), (np.array([0.0, np.nan]), "NaN")])
def test_label_maps_and_fractions_need_label(values, match):
    with pytest.raises(InputError, match=match):
        binary_mask(values)


def test_label_picks_one_label():
    v = np.array([0, 1, 2, 2])
    assert binary_mask(v, label=2).tolist() == [False, False, True, True]
    assert binary_mask(np.array([0, 1, 1])).sum() == 2
    with pytest.raises(InputError, match="--label 3"):
        binary_mask(v, label=3)


def test_series_warnings_gap_and_uneven():
    assert series_warnings(_vol()) == []
    w = series_warnings(_vol(gaps=[(2.5, 5.0)]))
    assert len(w) == 1 and "gap" in w[0] and "z 2.5 to 5 mm" in w[0]
    uneven = _vol(d=5, z=[0, 1.25, 2.5, 3.9, 5.15])
    assert any("uneven" in x for x in series_warnings(uneven))
    assert any("non-square" in x for x in series_warnings(_vol(spacing=(1.25, 0.6, 0.8))))


def test_disk_mask_has_the_diameter():
    vol = _vol(h=80, w=80)
    m = disk_mask(vol, (40, 40, 4), 14.0)
    area = m.sum() * 0.7 * 0.7
    assert abs(2 * math.sqrt(area / math.pi) - 14.0) < 0.7 and m[4].any() and not m[3].any()
