"""Broken inputs through the real CLI: exit code, one named error line, no traceback, nothing half-written.

Every command line of this file runs once, in one batch (:mod:`robustness.cli_batch`: each case is its own
forked ``autorad`` process with its own exit code and output); the tests below check one case each. The test
names and docstrings are the table of docs/reliability.md (docs/scripts/make_reliability.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dicom_factory import make_ct_series, make_lidc_case, read_back
from safetensors.numpy import load_file, save_file

from autorad.core.io import hash_file
from autorad.core.outputs import MARKER, write_marker
from autorad.train.checkpoint import seal_meta
from robustness.cli_batch import CliResult, run_batch

DISK = ["--diameter-mm", "6", "--disk"]  # an explicit disk: these cases test inputs, not the click segmentation
CENTER = ["--center", "19,30,6", *DISK]  # the factory's nodule: column 19, row 30, slice 6


def _nifti(arr: np.ndarray, path: Path, spacing=(0.7, 0.7, 1.25), origin=(0.0, 0.0, 0.0)) -> Path:
    import SimpleITK as sitk  # noqa: N813

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def _tamper(run: Path, dest: Path, how: str) -> Path:
    """A copy of ``run`` whose final checkpoint has a missing key, an extra key, a wrong shape or flipped bytes."""
    shutil.copytree(run, dest)
    ck = dest / "final" / "model"
    tensors = load_file(ck / "model.safetensors")
    meta = json.loads((ck / "model.json").read_text())
    if how == "flipped":
        data = bytearray((ck / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (ck / "model.safetensors").write_bytes(bytes(data))
        return dest
    if how == "missing":
        del tensors["coef"]
    elif how == "extra":
        tensors["surplus"] = np.zeros(3, np.float32)
    elif how == "shape":
        tensors["coef"] = tensors["coef"][:, :-1].copy()
    # a self-consistent file: the manifest and checksums match the tampered tensors, so only the model's own
    # strict loading can notice
    save_file(tensors, ck / "model.safetensors")
    meta["tensors"] = {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()}
    meta["sha256"] = hash_file(ck / "model.safetensors")
    (ck / "model.json").write_text(json.dumps(seal_meta(meta)))
    return dest


def _filtered_dataset(src: Path, dest: Path, keep) -> Path:
    shutil.copytree(src, dest)
    man = pd.read_parquet(dest / "manifest.parquet")
    man[keep(man)].reset_index(drop=True).to_parquet(dest / "manifest.parquet", index=False)
    return dest


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path, logreg_run: Path):
    """Build every broken input, run every command line in one batch; return name -> (result, output path)."""
    t = tmp_path_factory.mktemp("inputs")
    out = t / "out"
    out.mkdir()
    run = str(logreg_run)
    existing = out / "ds_existing"
    series = {
        "ok": {}, "corrupt": {"corrupt_slice": 3}, "truncated": {"truncate_slice": 3},
        "non_ct": {"modality": "MR"}, "mixed": {"mixed_series": 2}, "duplicate": {"duplicate_slice": 3},
        "gap": {"missing_slices": [2]}, "unsorted": {"unsorted_names": True}, "rle": {"transfer_syntax": "rle"},
        "jpeg": {"transfer_syntax": "jpegls1"}, "no_spacing": {"drop_pixel_spacing": True},
        "odd_spacing": {"odd_spacing_slice": 4}, "odd_size": {"odd_size_slice": 4},
    }
    d = {k: make_ct_series(t / "dicom" / k, **kw).folder for k, kw in series.items()}
    zero = make_ct_series(t / "dicom" / "zero_spacing")
    for f in zero.files:
        ds = read_back(f)
        ds.PixelSpacing = [0, 0]
        ds.save_as(f)
    d["zero_spacing"] = zero.folder
    zero_nrrd = t / "zero_spacing.nrrd"  # hand-written: SimpleITK will not write a zero spacing
    zero_nrrd.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 4\nspace: left-posterior-superior\n"
                          b"space directions: (0,0,0) (0,0.7,0) (0,0,1.25)\nkinds: domain domain domain\n"
                          b"endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n" + bytes(2 * 8 * 8 * 4))
    (t / "dicom" / "empty").mkdir()
    d["empty"] = t / "dicom" / "empty"
    make_lidc_case(t / "lidc_no_nodules", readers=[])
    make_lidc_case(t / "lidc_gap", missing_slices=[6])
    make_lidc_case(t / "lidc_corrupt", corrupt_slice=2)

    hu = make_ct_series(t / "ref").hu.astype(np.float32)
    img = _nifti(hu, t / "img.nii.gz")
    nan, inf = hu.copy(), hu.copy()
    nan[6, 30, 19] = np.nan
    inf[6, 10, 10] = np.inf
    zeros = np.zeros(hu.shape, np.uint8)
    ball, one, line, whole = zeros.copy(), zeros.copy(), zeros.copy(), np.ones_like(zeros)
    ball[5:8, 26:34, 15:23] = 1
    one[6, 30, 19] = 1
    line[6, 30, 10:30] = 1
    m = {"ball": _nifti(ball, t / "ball.nii.gz"), "empty": _nifti(zeros, t / "empty.nii.gz"),
         "one": _nifti(one, t / "one.nii.gz"), "line": _nifti(line, t / "line.nii.gz"),
         "whole": _nifti(whole, t / "whole.nii.gz"),
         "spacing": _nifti(ball, t / "m_spacing.nii.gz", spacing=(0.8, 0.7, 1.25)),
         "size": _nifti(ball[:, :, :-1].copy(), t / "m_size.nii.gz"),
         "origin": _nifti(ball, t / "m_origin.nii.gz", origin=(5.0, 0.0, 0.0))}

    (t / "unknown_key.yaml").write_text(yaml.safe_dump({"extends": "radiomics_logreg", "train": {"epochz": 3}}))
    (t / "wrong_type.yaml").write_text(yaml.safe_dump({"extends": "radiomics_logreg",
                                                       "train": {"epochs": "many"}}))
    (t / "not_yaml.yaml").write_text("model: [unclosed\n")
    tampered = {h: _tamper(logreg_run, t / f"run_{h}", h) for h in ("missing", "extra", "shape", "flipped")}
    one_class = _filtered_dataset(small_dataset, t / "ds_one_class", lambda m: m["label"] == "unsure")
    fold_gap = _filtered_dataset(small_dataset, t / "ds_fold_gap",
                                 lambda m: ~((m["fold"] == 0) & (m["label"] == "benign")))

    def predict_dicom(name: str) -> list:
        return ["predict", run, "--dicom", d[name], *CENTER, "--report", out / f"{name}.html"]

    def predict_mask(name: str, image: Path = img) -> list:
        return ["predict", run, "--image", image, "--mask", m[name], "--report", out / f"mask_{name}.html"]

    argv: dict[str, tuple[list, Path | None]] = {
        **{f"dicom_{k}": (predict_dicom(k), out / f"{k}.html") for k in d},
        # slice 2 is missing: the nodule's slice (6 in the full series) is the 6th present one, Z=5
        "dicom_gap": (["predict", run, "--dicom", d["gap"], "--center", "19,30,5", *DISK, "--report",
                       out / "gap.html"], out / "gap.html"),
        "dicom_missing_path": (["predict", run, "--dicom", t / "nowhere", *CENTER, "--report", out / "nw.html"],
                               out / "nw.html"),
        "lidc_missing_root": (["ingest", "lidc", t / "nowhere", "--out", out / "ds_missing"], out / "ds_missing"),
        "lidc_empty_root": (["ingest", "lidc", d["empty"], "--out", out / "ds_empty"], out / "ds_empty"),
        "lidc_no_nodules": (["ingest", "lidc", t / "lidc_no_nodules", "--out", out / "ds_nn"], out / "ds_nn"),
        "lidc_gap": (["ingest", "lidc", t / "lidc_gap", "--out", out / "ds_gap"], out / "ds_gap"),
        "lidc_into_existing": (["ingest", "lidc", t / "lidc_no_nodules", "--out", existing, "--overwrite"], None),
        "lidc_corrupt": (["ingest", "lidc", t / "lidc_corrupt", "--out", out / "ds_corrupt"], out / "ds_corrupt"),
        "maxslice_missing": (["ingest", "maxslice", t / "nowhere.npz", "--out", out / "ds_ms"], out / "ds_ms"),
        "maxslice_corrupt": (["ingest", "maxslice", d["corrupt"] / "img0003.dcm", "--out", out / "ds_msc"],
                             out / "ds_msc"),
        **{f"mask_{k}": (predict_mask(k), out / f"mask_{k}.html") for k in m},
        # NRRD: SimpleITK's NIfTI writer and reader turn NaN / inf into 0, NRRD keeps them
        "image_nan": (["predict", run, "--image", _nifti(nan, t / "nan.nrrd"), "--mask", m["ball"], "--report",
                       out / "nan.html"], out / "nan.html"),
        "image_inf": (["predict", run, "--image", _nifti(inf, t / "inf.nrrd"), "--mask", m["ball"], "--report",
                       out / "inf.html"], out / "inf.html"),
        "image_zero_spacing": (["predict", run, "--image", zero_nrrd, "--center", "2,2,2", *DISK],
                               None),
        "image_missing": (["predict", run, "--image", t / "nowhere.nii.gz", "--mask", m["ball"]], None),
        "image_not_nifti": (["predict", run, "--image", d["ok"] / "img0003.dcm", "--mask", m["ball"]], None),
        "center_outside": (["predict", run, "--dicom", d["ok"], "--center", "500,2,3", *DISK], None),
        "config_unknown_key": (["train", small_dataset, "--config", t / "unknown_key.yaml", "--out",
                                out / "r_uk"], out / "r_uk"),
        "config_wrong_type": (["train", small_dataset, "--config", t / "wrong_type.yaml", "--out", out / "r_wt"],
                              out / "r_wt"),
        "config_not_yaml": (["train", small_dataset, "--config", t / "not_yaml.yaml", "--out", out / "r_ny"],
                            out / "r_ny"),
        "config_unknown_override": (["train", small_dataset, "--config", "radiomics_logreg", "--set",
                                     "model.n_ctxx=3", "--out", out / "r_uo"], out / "r_uo"),
        "config_missing": (["train", small_dataset, "--config", t / "nowhere.yaml", "--out", out / "r_cm"],
                           out / "r_cm"),
        **{f"checkpoint_{h}": (["predict", r, "--dicom", d["ok"], *CENTER, "--report", out / f"ck_{h}.html"],
                               out / f"ck_{h}.html") for h, r in tampered.items()},
        "checkpoint_flipped_evaluate": (["evaluate", tampered["flipped"], "--data", small_dataset, "--out",
                                         out / "ev_flipped"], out / "ev_flipped"),
        "run_missing": (["predict", t / "no_run", "--dicom", d["ok"], *CENTER], None),
        "dataset_missing": (["train", t / "no_ds", "--config", "radiomics_logreg", "--out", out / "r_nd"],
                            out / "r_nd"),
        "dataset_one_class": (["train", one_class, "--config", "radiomics_logreg", "--out", out / "r_1c"],
                              out / "r_1c"),
        "fold_without_class": (["train", fold_gap, "--config", "radiomics_logreg", "--set",
                                "train.final_model=false", "--out", out / "r_fg"], out / "r_fg"),
    }
    names = list(argv)
    existing.mkdir()
    (existing / "keep.txt").write_text("an earlier dataset")
    write_marker(existing, "dataset")  # an earlier autorad output, so --overwrite may replace it
    results = run_batch([argv[n][0] for n in names], t / "batch")
    return {n: (r, argv[n][1], out) for n, r in zip(names, results, strict=True)}


def refused(cases, name: str, *words: str) -> CliResult:
    """Exit 2, one ``autorad: error:`` line naming the problem (every word in it), no traceback, no output
    left behind and no temporary leftovers."""
    r, target, out = cases[name]
    r.refusal_line(*words)
    if target is not None:
        assert not Path(target).exists(), f"{target} was written by a failed command"
    assert not [p for p in Path(out).rglob("*") if ".tmp-" in p.name], "temporary leftovers"
    return r


def accepted(cases, name: str) -> dict:
    """Exit 0 with a prediction whose probabilities are finite and sum to 1; the report is written."""
    r, target, _ = cases[name]
    r.assert_no_traceback()
    assert r.rc == 0, r.err
    res = json.loads(r.out)
    p = np.array(list(res["probabilities"].values()))
    assert np.all(np.isfinite(p)) and abs(p.sum() - 1) < 1e-4
    if target is not None:
        assert Path(target).is_file()
    return res


# ------------------------------------------------------------------------------------------- DICOM series


def test_dicom_missing_path(cases):
    """predict --dicom on a folder that does not exist: refused, 'not found'."""
    refused(cases, "dicom_missing_path", "not found")


def test_dicom_empty_folder(cases):
    """predict --dicom on an empty folder: refused, 'no DICOM files'."""
    refused(cases, "dicom_empty", "no DICOM files")


def test_dicom_corrupt_file(cases):
    """A slice replaced by random bytes (still .dcm): refused, names the corrupt file."""
    refused(cases, "dicom_corrupt", "corrupt", "img")


def test_dicom_truncated_file(cases):
    """A slice cut to 60% of its bytes: refused, 'truncated' and the file name."""
    refused(cases, "dicom_truncated", "truncated", "img")


def test_dicom_non_ct_modality(cases):
    """An MR series: refused, 'not a CT series: modality MR'."""
    refused(cases, "dicom_non_ct", "not a CT", "MR")


def test_dicom_two_series_mixed(cases):
    """Two SeriesInstanceUIDs in one folder: refused, '2 series mixed in one folder'."""
    refused(cases, "dicom_mixed", "2 series mixed")


def test_dicom_duplicate_slice_positions(cases):
    """Two files at the same z: refused, 'duplicate slice position' with both file names."""
    refused(cases, "dicom_duplicate", "duplicate slice position")


def test_dicom_missing_slices_still_predicts(cases):
    """A gap in z (one slice missing) away from the nodule: the volume loads; the same nodule slice gives the
    same probabilities as the complete series (--center's Z counts the slices present)."""
    gap, ok = accepted(cases, "dicom_gap"), accepted(cases, "dicom_ok")
    assert gap["slice_index"] == 5 and ok["slice_index"] == 6
    assert gap["probabilities"] == ok["probabilities"]


def test_dicom_unsorted_file_names(cases):
    """File names in shuffled order: slices are sorted by position; same prediction as the sorted series."""
    assert accepted(cases, "dicom_unsorted")["probabilities"] == accepted(cases, "dicom_ok")["probabilities"]


def test_dicom_rle_compressed(cases):
    """RLE Lossless transfer syntax: decoded natively; same prediction as the uncompressed series."""
    assert accepted(cases, "dicom_rle")["probabilities"] == accepted(cases, "dicom_ok")["probabilities"]


def test_dicom_jpeg_without_decoder(cases):
    """JPEG Lossless with no decoder plugin installed: refused, names the transfer syntax and the plugins."""
    r, _, _ = cases["dicom_jpeg"]
    if r.rc == 0:
        pytest.skip("a JPEG decoder plugin is installed here")
    refused(cases, "dicom_jpeg", "JPEG Lossless", "decode")


def test_dicom_absent_pixel_spacing(cases):
    """No PixelSpacing: refused, 'PixelSpacing is absent'."""
    refused(cases, "dicom_no_spacing", "PixelSpacing is absent")


def test_dicom_zero_pixel_spacing(cases):
    """PixelSpacing 0\\0 (wrong spacing): refused, 'PixelSpacing ... is not positive'."""
    refused(cases, "dicom_zero_spacing", "PixelSpacing", "not positive")


def test_image_zero_spacing(cases):
    """An NRRD volume with a zero voxel spacing: refused, names the spacing."""
    refused(cases, "image_zero_spacing", "spacing")


def test_dicom_inconsistent_pixel_spacing(cases):
    """One slice with another PixelSpacing: refused, 'inconsistent in-plane PixelSpacing'."""
    refused(cases, "dicom_odd_spacing", "inconsistent", "PixelSpacing")


def test_dicom_inconsistent_slice_size(cases):
    """One slice with another size: refused, 'inconsistent slice sizes'."""
    refused(cases, "dicom_odd_size", "inconsistent slice sizes")


def test_center_outside_volume(cases):
    """--center outside the volume: refused, 'lies outside the volume'."""
    refused(cases, "center_outside", "outside the volume")


# ---------------------------------------------------------------------------------------- LIDC ingestion


def test_lidc_missing_root(cases):
    """ingest lidc on a missing folder: refused, 'not found'; no dataset folder."""
    refused(cases, "lidc_missing_root", "not found")


def test_lidc_root_without_dicom(cases):
    """ingest lidc on a folder without DICOM: refused, names it; no dataset folder."""
    refused(cases, "lidc_empty_root", "DICOM")


def test_lidc_xml_without_nodules(cases):
    """Reader XML with no nodule of 3 mm or more: refused, 'no usable nodule' with that reason."""
    refused(cases, "lidc_no_nodules", "no usable nodule", "no nodule of 3 mm")


def test_lidc_nodule_across_missing_slices(cases):
    """The nodule's annotated slice is missing from the series: the nodule is skipped, with the reason."""
    refused(cases, "lidc_gap", "no usable nodule", "missing")


def test_failed_ingest_leaves_existing_output_unchanged(cases):
    """A failing ingest --overwrite whose --out holds an earlier dataset: refused, the earlier dataset is left
    exactly as it was (the new one would only have replaced it on success)."""
    refused(cases, "lidc_into_existing", "no usable nodule")
    existing = cases["lidc_into_existing"][2] / "ds_existing"
    assert sorted(p.name for p in existing.iterdir()) == sorted([MARKER, "keep.txt"])
    assert (existing / "keep.txt").read_text() == "an earlier dataset"


def test_lidc_corrupt_slice(cases):
    """A corrupt file in the only series: the series is skipped and the reason named."""
    refused(cases, "lidc_corrupt", "no usable nodule", "corrupt")


def test_maxslice_missing_file(cases):
    """ingest maxslice on a missing NPZ: refused, 'not found'."""
    refused(cases, "maxslice_missing", "not found")


def test_maxslice_not_an_npz(cases):
    """ingest maxslice on a file that is no NPZ: refused with a one-line error."""
    refused(cases, "maxslice_corrupt")


# ------------------------------------------------------------------------------------------ NIfTI / masks


def test_image_missing_file(cases):
    """predict --image on a missing file: refused, 'not found'."""
    refused(cases, "image_missing", "not found")


def test_image_not_nifti(cases):
    """predict --image on a .dcm file: refused, names the accepted formats."""
    refused(cases, "image_not_nifti", ".nii")


def test_mask_different_spacing(cases):
    """NIfTI mask with another spacing than the image: refused, names both spacings."""
    refused(cases, "mask_spacing", "spacing")


def test_mask_different_size(cases):
    """NIfTI mask with another size than the image: refused, names both sizes."""
    refused(cases, "mask_size", "size")


def test_mask_different_origin(cases):
    """NIfTI mask with another origin than the image: refused, names both origins."""
    refused(cases, "mask_origin", "origin")


def test_mask_empty(cases):
    """An all-zero mask: refused, 'empty'."""
    refused(cases, "mask_empty", "empty")


def test_mask_single_pixel(cases):
    """A 1-pixel mask: predicted; radiomics_status says why features failed (imputed by the model)."""
    res = accepted(cases, "mask_one")
    assert res["radiomics_status"].startswith("failed:") and "voxel" in res["radiomics_status"]


def test_mask_line(cases):
    """A one-pixel-wide line: predicted; radiomics_status names the failure (too few dimensions)."""
    res = accepted(cases, "mask_line")
    assert res["radiomics_status"].startswith("failed:")


def test_mask_whole_image(cases):
    """A mask covering the whole volume: predicted, radiomics ok, crop clipped to the image."""
    assert accepted(cases, "mask_whole")["radiomics_status"] == "ok"


def test_mask_nodule_ball(cases):
    """A proper NIfTI image + mask: predicted, radiomics ok, report written."""
    assert accepted(cases, "mask_ball")["radiomics_status"] == "ok"


def test_image_with_nan(cases):
    """A NaN voxel in an NRRD image: refused, 'NaN or infinite' (never a silent prediction)."""
    refused(cases, "image_nan", "NaN or infinite")


def test_image_with_inf(cases):
    """An inf voxel in an NRRD image: refused, 'NaN or infinite'."""
    refused(cases, "image_inf", "NaN or infinite")


# ----------------------------------------------------------------------------------------------- configs


def test_config_unknown_key(cases):
    """A config with an unknown key: refused before anything is written, the key is named."""
    refused(cases, "config_unknown_key", "unknown key", "train.epochz")


def test_config_wrong_type(cases):
    """A config with a wrong type: refused, names the key and the bad value."""
    refused(cases, "config_wrong_type", "train.epochs", "many")


def test_config_not_yaml(cases):
    """A config that is not valid YAML: refused, 'not valid YAML'."""
    refused(cases, "config_not_yaml", "not valid YAML")


def test_config_unknown_override(cases):
    """--set with an unknown key: refused, the key is named."""
    refused(cases, "config_unknown_override", "unknown key", "model.n_ctxx")


def test_config_missing_file(cases):
    """--config naming no file and no shipped config: refused, 'config file not found'."""
    refused(cases, "config_missing", "config file not found")


# ------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_missing_key(cases):
    """A final checkpoint lacking a tensor (manifest and checksum consistent): refused, names the key."""
    refused(cases, "checkpoint_missing", "coef")


def test_checkpoint_extra_key(cases):
    """A final checkpoint with an unexpected tensor: refused, names the key."""
    refused(cases, "checkpoint_extra", "surplus")


def test_checkpoint_wrong_shape(cases):
    """A final checkpoint with a tensor of the wrong shape: refused, names the key and the shapes."""
    refused(cases, "checkpoint_shape", "coef")


def test_checkpoint_flipped_bytes(cases):
    """One byte flipped in the tensor file: refused by predict ('corrupt' / SHA-256)."""
    refused(cases, "checkpoint_flipped", "corrupt")


def test_checkpoint_flipped_bytes_evaluate(cases):
    """One byte flipped in the tensor file: refused by evaluate; no evaluation folder is written."""
    refused(cases, "checkpoint_flipped_evaluate", "corrupt")


def test_run_missing(cases):
    """predict with a folder that is no trained run: refused, 'final model'."""
    refused(cases, "run_missing", "final model")


# ---------------------------------------------------------------------------------------------- datasets


def test_dataset_missing(cases):
    """train on a folder that is no dataset: refused, 'not an autorad dataset'; no run folder."""
    refused(cases, "dataset_missing", "not an autorad dataset")


def test_dataset_one_class(cases):
    """A dataset with one class only: refused, 'only one class (unsure)'; no run folder."""
    refused(cases, "dataset_one_class", "only one class", "unsure")


def test_fold_without_a_class(cases):
    """A fold with no benign nodule: trains; a warning names the fold and the class, also in run.json."""
    r, target, _ = cases["fold_without_class"]
    r.assert_no_traceback()
    assert r.rc == 0, r.err
    assert "warning: fold 0: no benign nodule in its test part" in r.err
    assert any("fold 0: no benign" in w for w in json.loads((target / "run.json").read_text())["warnings"])
