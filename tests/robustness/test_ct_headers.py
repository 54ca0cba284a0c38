"""CT headers that make no sense, through the real CLI: refused before allocation or computation, or warned about.

Every command line runs once, in one batch (:mod:`robustness.cli_batch`), on synthetic series (tests/dicom_factory.py)
whose headers were edited after writing. The thresholds live in ``autorad.data.ct_checks``; the server applies the
same ones (tests/robustness/test_server.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bad_headers import deflated_dicom_bomb, nifti_lying, set_raw, tweak

from robustness.cli_batch import CliResult, run_batch

DISK = ["--diameter-mm", "6", "--disk"]  # an explicit disk: these cases test headers, not the click segmentation
CENTER = ["--center", "19,30,6", *DISK]  # the factory's nodule: column 19, row 30, slice 6
MAX_RSS_KB = 3 << 20  # a refused series must not have allocated its claimed size (an 8 GiB slice, 88 GiB series)


def _position(shift_x: float = 0.0, shift_y: float = 0.0):
    def change(i: int, ds) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + shift_x * (i % 2), y + shift_y * i, z]
    return change


def _tilted(deg: float):
    c, s = float(np.cos(np.radians(deg))), float(np.sin(np.radians(deg)))

    def change(i: int, ds) -> None:  # rotate the slice plane about x; positions along the new normal
        ds.ImageOrientationPatient = [1, 0, 0, 0, c, s]
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y - s * i * 1.25, -100.0 + c * i * 1.25]
    return change


def _nifti(path: Path, spacing: tuple[float, float, float]) -> Path:
    import SimpleITK as sitk  # noqa: N813
    from dicom_factory import phantom_volume

    img = sitk.GetImageFromArray(phantom_volume(12, 64, 0.7, 1.25, (30.0, 19.0), 6, 4.0))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, phantom_logreg_run: Path):
    """Build every series, run every command line in one batch; return name -> (result, report path)."""
    t = tmp_path_factory.mktemp("headers")
    out = t / "out"
    out.mkdir()
    rows = lambda i, ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535))  # noqa: E731
    series = {
        "ok": tweak(t / "ok", lambda i, ds: None),
        "rows_65535": tweak(t / "rows", rows, n_slices=11),
        "rows_65535_rle": tweak(t / "rows_rle", rows, n_slices=11, transfer_syntax="rle"),
        "frames": tweak(t / "frames", lambda i, ds: setattr(ds, "NumberOfFrames", 3)),
        "slope_zero": tweak(t / "slope0", lambda i, ds: setattr(ds, "RescaleSlope", 0)),
        "slope_nan": tweak(t / "slope_nan", lambda i, ds: set_raw(ds, "RescaleSlope", "nan")),
        "slope_inf": tweak(t / "slope_inf", lambda i, ds: set_raw(ds, "RescaleSlope", "inf")),
        "intercept_missing": tweak(t / "no_intercept", lambda i, ds: delattr(ds, "RescaleIntercept")),
        "intercept_nan": tweak(t / "intercept_nan", lambda i, ds: set_raw(ds, "RescaleIntercept", "nan")),
        "overflow": tweak(t / "overflow", lambda i, ds: setattr(ds, "RescaleSlope", 1e38)),
        "spacing_huge": tweak(t / "sp_huge", lambda i, ds: setattr(ds, "PixelSpacing", [1e6, 1e6])),
        "spacing_tiny": tweak(t / "sp_tiny", lambda i, ds: setattr(ds, "PixelSpacing", [1e-6, 1e-6])),
        "slices_far": tweak(t / "far", lambda i, ds: setattr(ds, "ImagePositionPatient",
                                                            [0, 0, -100 + 60.0 * i])),
        "slices_close": tweak(t / "close", lambda i, ds: setattr(ds, "ImagePositionPatient",
                                                                [0, 0, -100 + 0.01 * i])),
        "drift": tweak(t / "drift", _position(shift_x=60.0)),
        "gantry_tilt": tweak(t / "gantry", _position(shift_y=1.25 * float(np.tan(np.radians(15))))),
        "tilt_15": tweak(t / "tilt", _tilted(15.0)),
        "deflated_bomb": deflated_dicom_bomb(t / "deflated"),
    }
    images = {"nifti_z_tiny": _nifti(t / "z_tiny.nii.gz", (0.7, 0.7, 1e-9)),
              "nifti_xy_huge": _nifti(t / "xy_huge.nii.gz", (1e6, 1e6, 1.25)),
              "nifti_lying": nifti_lying(t / "lying.nii")}
    run = str(phantom_logreg_run)
    argv: dict[str, tuple[list, Path]] = {}
    for name, folder in series.items():
        center = ["--center", "19,30,0", *DISK] if name == "deflated_bomb" else CENTER
        argv[name] = (["predict", run, "--dicom", folder, *center, "--report", out / f"{name}.html"],
                      out / f"{name}.html")
    for name, path in images.items():
        argv[name] = (["predict", run, "--image", path, *CENTER, "--report", out / f"{name}.html"],
                      out / f"{name}.html")
    names = list(argv)
    results = run_batch([argv[n][0] for n in names], t / "batch")
    return {n: (r, argv[n][1]) for n, r in zip(names, results, strict=True)}


def refused(cases, name: str, *words: str) -> CliResult:
    """Exit 2, one ``autorad: error:`` line holding every word, no traceback, no report, no path in the line,
    and bounded memory (nothing of the claimed size was allocated)."""
    r, report = cases[name]
    line = r.refusal_line(*words)
    assert "/" not in line.removeprefix("autorad: error: "), f"a path in the message: {line}"
    assert not report.exists()
    assert r.max_rss_kb < MAX_RSS_KB, f"{r.max_rss_kb // 1024} MiB peak"
    return r


def warned(cases, name: str, *words: str) -> dict:
    """Exit 0; the prediction's warnings and the report hold a warning with every word."""
    r, report = cases[name]
    assert r.rc == 0, r.err
    res = json.loads(r.out)
    hits = [w for w in res["warnings"] if all(x.lower() in w.lower() for x in words)]
    assert hits, res["warnings"]
    html = report.read_text(encoding="utf-8")
    assert hits[0].split(";")[0].split("(")[0].strip() in html
    return res


# --------------------------------------------------------------------------------------- sizes and payload


def test_rows_columns_65535_on_11_slices(cases):
    """Rows and Columns 65535 on 11 slices of 64 x 64 pixels (an 88 GiB volume): refused before allocation,
    naming Rows (0028,0010), Columns (0028,0011), the slice and what PixelData holds; peak memory stays small."""
    refused(cases, "rows_65535", "Rows (0028,0010)", "Columns (0028,0011)", "65535", "slice 0", "PixelData")


def test_rows_columns_65535_compressed(cases):
    """The same on an RLE-compressed series (its payload size says nothing): refused by the voxel cap before
    anything is decoded ('more than the limit')."""
    refused(cases, "rows_65535_rle", "the series", "voxels, more than the limit")


def test_multi_frame_file(cases):
    """NumberOfFrames 3 in a one-slice file: refused, naming NumberOfFrames (0028,0008)."""
    refused(cases, "frames", "NumberOfFrames (0028,0008)", "slice 0")


def test_deflated_dicom_bomb(cases):
    """A 1 MB Deflated Explicit VR file whose dataset inflates to 1.1 GiB: refused while inflating, in bounded
    chunks ('decompresses to more than'), never inflated in memory."""
    refused(cases, "deflated_bomb", "deflated", "decompresses to more than the limit")


def test_nifti_header_larger_than_its_file(cases):
    """An uncompressed .nii whose header claims 1024 x 1024 x 520 voxels but holds 64 KiB: refused ('the file
    holds only'), not read as zeros."""
    refused(cases, "nifti_lying", "header says", "holds only")


# --------------------------------------------------------------------------------------- rescale to HU


def test_rescale_slope_zero(cases):
    """RescaleSlope 0 (formerly taken as 1): refused, 'RescaleSlope (0028,1053) is 0 on slice 0'."""
    refused(cases, "slope_zero", "RescaleSlope (0028,1053) is 0 on slice 0")


def test_rescale_slope_nan(cases):
    """RescaleSlope NaN (formerly RuntimeWarnings, then a class): refused, naming the tag and 'nan'."""
    refused(cases, "slope_nan", "RescaleSlope (0028,1053)", "nan", "finite")


def test_rescale_slope_inf(cases):
    """RescaleSlope inf: refused, naming the tag and 'inf'."""
    refused(cases, "slope_inf", "RescaleSlope (0028,1053)", "inf", "finite")


def test_rescale_intercept_missing(cases):
    """No RescaleIntercept (formerly HU shifted by 1024 silently, a prediction with --disk): refused, naming
    RescaleIntercept (0028,1052) and 'missing'."""
    refused(cases, "intercept_missing", "RescaleIntercept (0028,1052)", "missing")


def test_rescale_intercept_nan(cases):
    """RescaleIntercept NaN: refused, naming the tag."""
    refused(cases, "intercept_nan", "RescaleIntercept (0028,1052)", "nan")


def test_values_not_finite_after_rescale(cases):
    """RescaleSlope 1e38 (finite, but the HU overflow float32): refused, 'NaN or infinite value(s) after
    RescaleSlope', naming the slice."""
    refused(cases, "overflow", "slice 0", "NaN or infinite", "RescaleSlope")


# --------------------------------------------------------------------------------------- spacing


def test_pixel_spacing_huge(cases):
    """PixelSpacing 1e6 mm (formerly an equivalent diameter of 22,511,093 mm): refused, naming PixelSpacing
    (0028,0030) and the range 0.05-20 mm."""
    refused(cases, "spacing_huge", "PixelSpacing (0028,0030)", "1e+06", "between 0.05 and 20 mm")


def test_pixel_spacing_tiny(cases):
    """PixelSpacing 1e-6 mm (formerly raw PyRadiomics lines and a diameter of 0.0): refused, naming the tag."""
    refused(cases, "spacing_tiny", "PixelSpacing (0028,0030)", "between 0.05 and 20 mm")


def test_slice_spacing_too_large(cases):
    """Slices 60 mm apart: refused, 'slice spacing', ImagePositionPatient and the range 0.1-50 mm."""
    refused(cases, "slices_far", "slice spacing", "ImagePositionPatient (0020,0032)", "between 0.1 and 50 mm")


def test_slice_spacing_too_small(cases):
    """Slices 0.01 mm apart: refused the same way."""
    refused(cases, "slices_close", "slice spacing", "between 0.1 and 50 mm")


def test_nifti_slice_spacing_tiny(cases):
    """A NIfTI whose z voxel size is 1e-9 mm (formerly a volume of 0.0): refused, 'slice spacing'."""
    refused(cases, "nifti_z_tiny", "slice spacing", "1e-09", "between 0.1 and 50 mm")


def test_nifti_pixel_spacing_huge(cases):
    """A NIfTI whose x, y voxel size is 1e6 mm: refused, 'in-plane'."""
    refused(cases, "nifti_xy_huge", "in-plane", "between 0.05 and 20 mm")


# --------------------------------------------------------------------------------------- geometry warnings


def test_plain_series_has_no_geometry_warning(cases):
    """The same synthetic series unedited: exit 0 and no tilt or drift warning (the warnings below could fail)."""
    r, _ = cases["ok"]
    assert r.rc == 0, r.err
    assert not [w for w in json.loads(r.out)["warnings"] if "tilted" in w or "irregular slice" in w]


def test_alternate_slices_shifted(cases):
    """Every other slice shifted 60 mm in x (formerly no warning): predicted, with 'irregular slice positions'
    ('60.0 mm') in the JSON warnings and the report."""
    warned(cases, "drift", "irregular slice positions", "60.0 mm")


def test_gantry_tilt_shear(cases):
    """Axial slices whose positions shift in y by tan(15 degrees) x the slice step (a gantry tilt): predicted,
    with the drift warning in the JSON and the report."""
    warned(cases, "gantry_tilt", "irregular slice positions", "gantry tilt")


def test_tilted_orientation(cases):
    """ImageOrientationPatient tilted 15 degrees from axial (formerly accepted silently): predicted, with
    'tilted 15.0 degrees' in the JSON warnings and the report."""
    warned(cases, "tilt_15", "tilted 15.0 degrees from axial")
