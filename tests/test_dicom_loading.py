"""CT loading: DICOM series (order, HU, geometry, gaps, privacy, broken inputs), NIfTI/NRRD images and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import IDENTIFIERS, make_ct_series

from autorad.core.errors import InputError
from autorad.data.dicom import (
    load_image_file,
    load_mask_file,
    load_series,
    pseudonymize_patient_id,
    pseudonymize_uid,
)


def test_series_loads_in_position_order_with_hu_and_geometry(tmp_path):
    s = make_ct_series(tmp_path / "s", unsorted_names=True, seed=3)
    names = [f.name for f in s.files]
    assert names != sorted(names), "the factory should have shuffled the file names"
    vol = load_series(s.folder)
    assert vol.hu.shape == (12, 64, 64)
    np.testing.assert_array_equal(vol.hu, s.hu)  # HU = stored + intercept, in position order
    np.testing.assert_allclose(vol.z_positions, s.z_positions)
    assert vol.sop_uids == s.sop_uids
    assert vol.spacing_mm == pytest.approx((1.25, 0.7, 0.7))
    assert vol.gaps == []
    img = vol.to_sitk()
    assert img.GetSize() == (64, 64, 12)
    assert img.GetSpacing() == pytest.approx((0.7, 0.7, 1.25))
    assert img.GetOrigin() == pytest.approx((-0.5 * 64 * 0.7, -0.5 * 64 * 0.7, -100.0))
    # the sphere's centre voxel is where the factory put it
    r, c = (int(round(v)) for v in s.center_rc)
    assert vol.hu[s.center_index, r, c] == 30


def test_series_privacy_pseudonyms(tmp_path):
    s = make_ct_series(tmp_path / "s")
    vol = load_series(s.folder)
    assert vol.patient_id == pseudonymize_patient_id(IDENTIFIERS["PatientID"])
    assert vol.patient_id.startswith("anon-") and len(vol.patient_id) == 21
    assert vol.series_uid.startswith("anon-") and s.series_uid not in vol.series_uid
    text = repr({k: v for k, v in vars(vol).items() if k not in ("hu",)})
    for value in IDENTIFIERS.values():
        assert value not in text
    assert pseudonymize_patient_id("LIDC-IDRI-0042") == "LIDC-IDRI-0042"
    assert pseudonymize_patient_id("LIDC-IDRI-0042x").startswith("anon-")
    tcia = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
    assert pseudonymize_uid(tcia) == tcia
    lidc = make_ct_series(tmp_path / "lidc", patient_id="LIDC-IDRI-0007")
    assert load_series(lidc.folder).patient_id == "LIDC-IDRI-0007"


def test_gaps_are_listed_not_fatal(tmp_path):
    s = make_ct_series(tmp_path / "s", missing_slices=[4, 5])
    vol = load_series(s.folder)
    assert vol.hu.shape[0] == 10
    assert vol.gaps == [pytest.approx((s.z_positions[3], s.z_positions[6]))]
    assert vol.gaps_between(s.z_positions[2], s.z_positions[7])
    assert not vol.gaps_between(s.z_positions[7], s.z_positions[10])
    assert vol.spacing_mm[0] == pytest.approx(1.25)


def test_non_integral_rescale_gives_float_hu(tmp_path):
    s = make_ct_series(tmp_path / "s", rescale=(0.5, -1000.0))
    vol = load_series(s.folder)
    assert vol.hu.dtype == np.float32
    np.testing.assert_allclose(vol.hu, s.hu, atol=0.5)


def test_rle_compressed_series_decodes(tmp_path):
    s = make_ct_series(tmp_path / "s", transfer_syntax="rle")
    np.testing.assert_array_equal(load_series(s.folder).hu, s.hu)


BROKEN = [
    ({"modality": "MR"}, "not a CT series: modality MR"),
    ({"mixed_series": 2}, "2 series mixed in one folder"),
    ({"truncate_slice": 3}, "truncated DICOM file img0003.dcm"),
    ({"corrupt_slice": 5}, "corrupt or unreadable DICOM file img0005.dcm"),
    ({"duplicate_slice": 3}, "duplicate slice position z=-96.25"),
    ({"drop_pixel_spacing": True}, "PixelSpacing is absent"),
    ({"odd_spacing_slice": 2}, "inconsistent in-plane PixelSpacing"),
    ({"odd_size_slice": 2}, "inconsistent slice sizes"),
]


@pytest.mark.parametrize(("knob", "message"), BROKEN, ids=[next(iter(k)) for k, _ in BROKEN])
def test_broken_series_raise_one_line_input_error(tmp_path, knob, message):
    s = make_ct_series(tmp_path / "s", **knob)
    with pytest.raises(InputError) as err:
        load_series(s.folder)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_undecodable_transfer_syntax_is_named(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1

    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here; the dummy frame would be a corrupt-file case")
    s = make_ct_series(tmp_path / "s", transfer_syntax="jpegls1")
    with pytest.raises(InputError, match=r"compressed transfer syntax JPEG Lossless.*cannot be decoded"):
        load_series(s.folder)


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.xml").write_text("<x/>")
    with pytest.raises(InputError, match="no DICOM files"):
        load_series(tmp_path / "empty")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_image_and_mask_files_roundtrip_and_geometry_check(tmp_path, suffix):
    import SimpleITK as sitk  # noqa: N813

    s = make_ct_series(tmp_path / "s")
    vol = load_series(s.folder)
    img_path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(vol.to_sitk(), str(img_path))
    back = load_image_file(img_path)
    np.testing.assert_array_equal(back.hu, vol.hu)
    assert back.spacing_mm == pytest.approx(vol.spacing_mm)
    np.testing.assert_allclose(back.z_positions, vol.z_positions)
    assert back.patient_id.startswith("anon-")

    mask = np.zeros(vol.hu.shape, dtype=np.uint8)
    mask[s.center_index, 20:25, 20:25] = 1
    m_img = sitk.GetImageFromArray(mask)
    m_img.CopyInformation(vol.to_sitk())
    sitk.WriteImage(m_img, str(tmp_path / f"mask{suffix}"))
    loaded = load_mask_file(tmp_path / f"mask{suffix}", like=back)
    assert loaded.dtype == bool and loaded.sum() == 25

    shifted = sitk.GetImageFromArray(mask)
    shifted.CopyInformation(vol.to_sitk())
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / f"shifted{suffix}"))
    with pytest.raises(InputError, match="origin"):
        load_mask_file(tmp_path / f"shifted{suffix}", like=back)

    sitk.WriteImage(sitk.GetImageFromArray(mask[:-1]), str(tmp_path / f"small{suffix}"))
    with pytest.raises(InputError, match="size"):
        load_mask_file(tmp_path / f"small{suffix}", like=back)

    spaced = sitk.GetImageFromArray(mask)
    spaced.CopyInformation(vol.to_sitk())
    spaced.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(spaced, str(tmp_path / f"spaced{suffix}"))
    with pytest.raises(InputError, match="spacing"):
        load_mask_file(tmp_path / f"spaced{suffix}", like=back)


def test_image_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image_file(tmp_path / "ct.nii.gz")
    (tmp_path / "ct.png").write_bytes(b"x")
    with pytest.raises(InputError, match="NIfTI"):
        load_image_file(tmp_path / "ct.png")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot read image file bad.nii.gz"):
        load_image_file(tmp_path / "bad.nii.gz")


@pytest.mark.shared_data
def test_real_lidc_series(lidc_dicom_root: Path):
    folder = next(p.parent for p in sorted(lidc_dicom_root.glob("LIDC-IDRI-0001/*/*/*.dcm")))
    vol = load_series(folder)
    assert vol.hu.shape == (16, 512, 512)
    assert vol.patient_id == "LIDC-IDRI-0001"
    assert vol.series_uid.startswith("1.3.6.1.4.1.14519.")
    assert vol.spacing_mm == pytest.approx((2.5, 0.703125, 0.703125))
    assert vol.z_positions[0] == pytest.approx(-132.5) and vol.z_positions[-1] == pytest.approx(-95.0)
    assert np.all(np.diff(vol.z_positions) > 0) and vol.gaps == []
    inside_body = vol.hu[8, 200:300, 200:300]
    assert -1100 < float(np.median(vol.hu[8])) < 100 and inside_body.max() > 0  # real HU, not raw stored values
