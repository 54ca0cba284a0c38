"""``autorad predict`` and :class:`autorad.apps.predictor.Predictor` on real LIDC data: one path with training
(a dataset nodule with its own mask gets the probabilities ``autorad evaluate`` gives it), DICOM / NIfTI inputs,
masks, refusals and warnings, the batch mode, the report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autorad.apps.predict import load_predictor, predict
from autorad.apps.predictor import Predictor
from autorad.core.errors import InputError
from autorad.data.dataset import Dataset
from autorad.data.dicom import CTVolume, load_series
from autorad.data.lidc import find_series_folders
from autorad.evaluate.apply import evaluate
from autorad.train.entry import train
from autorad.train.resolve import load_config

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def logreg_run(small_maxslice_dataset, tmp_path_factory):
    return train(small_maxslice_dataset, load_config("radiomics_logreg"), tmp_path_factory.mktemp("p") / "run")


@pytest.fixture(scope="module")
def image_run(small_maxslice_dataset, tmp_path_factory):
    cfg = load_config("offline", ["model.kind=autorad", "model.vision_encoder=tiny-vit-2d",
                                  "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=1"])
    return train(small_maxslice_dataset, cfg, tmp_path_factory.mktemp("p") / "run")


@pytest.fixture(scope="module")
def views_run(small_maxslice_dataset, tmp_path_factory):
    """The image + radiomics MetaNet with 4 dihedral views (test-time averaging)."""
    cfg = load_config("offline", ["model.kind=autorad_image", "model.vision_encoder=tiny-vit-2d", "model.views=4",
                                  "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=1"])
    return train(small_maxslice_dataset, cfg, tmp_path_factory.mktemp("p") / "run")


@pytest.fixture(scope="module")
def nodule_0001(lidc_dicom_root):
    """The LIDC-IDRI-0001 series and its nodule's consensus record (from our own LIDC ingest)."""
    from autorad.data.lidc import iter_lidc

    series = next(f.path for f in find_series_folders(lidc_dicom_root) if "0001" in str(f.path))
    rec = next(r for r in iter_lidc(series.parents[1]) if hasattr(r, "slice_mask"))
    vol = load_series(series)
    z = vol.slice_index(rec.z_mm)
    rows, cols = np.nonzero(rec.slice_mask)
    d = 2 * np.sqrt(rec.slice_mask.sum() / np.pi) * rec.pixel_spacing_mm
    return series, vol, (int(cols.mean()), int(rows.mean()), z), float(d), rec


@pytest.fixture(scope="module")
def ct_files(nodule_0001, tmp_path_factory):
    """The 0001 series as NIfTI, with the consensus middle-slice mask and a 2-label map."""
    import SimpleITK as sitk  # noqa: N813

    series, vol, centre, d, rec = nodule_0001
    t = tmp_path_factory.mktemp("nii")
    img = vol.to_sitk()
    sitk.WriteImage(img, str(t / "ct.nii.gz"))
    m = np.zeros(vol.hu.shape, np.uint8)
    m[centre[2]] = rec.slice_mask
    labels = m.copy()
    labels[centre[2], :5, :5] = 2
    for name, arr in (("mask.nii.gz", m), ("labels.nii.gz", labels)):
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(t / name))
    return t


def _dataset_volume(arrays: dict, row: pd.Series) -> CTVolume:
    """A dataset nodule's stored slice as a one-slice CT, as a user would pass it."""
    ps = float(row["pixel_spacing_mm"])
    return CTVolume(hu=arrays["slice_hu"][None], spacing_mm=(1.0, ps, ps), z_positions=np.array([0.0]),
                    sop_uids=[""], series_uid="x", patient_id="x")


@pytest.mark.parametrize("run_name", ["logreg_run", "image_run", "views_run", "tail_tuned_run"])
def test_dataset_nodule_with_its_own_mask_gets_the_evaluate_probabilities(run_name, small_maxslice_dataset,
                                                                          request, tmp_path):
    run = request.getfixturevalue(run_name)
    ev = pd.read_parquet(evaluate(run, small_maxslice_dataset, tmp_path / "ev") / "predictions.parquet")
    ds = Dataset(small_maxslice_dataset)
    predictor = Predictor.from_run(run)
    for nid in ds.nodule_ids[:6]:
        arrays, row = ds.arrays(nid), ds.row(nid)
        out = predictor.predict(_dataset_volume(arrays, row), mask=arrays["slice_mask"][None]).to_dict()
        want = ev[ev["nodule_id"] == nid].iloc[0]
        for c in ("benign", "unsure", "malignant"):
            assert out["probabilities"][c] == pytest.approx(float(want[f"prob_{c}"]), abs=1e-6)
        assert out["mask"]["method"] == "given"
        # the numpy form: the stored slice, its mask and its pixel spacing as arrays
        ps = float(row["pixel_spacing_mm"])
        r = predictor.predict(arrays["slice_hu"], mask=arrays["slice_mask"], spacing_mm=(ps, ps))
        np.testing.assert_allclose(r.probabilities, [float(want[f"prob_{c}"]) for c in r.classes_], atol=1e-6)
        assert r.predicted_class == out["predicted_class"]


def test_lidc_dicom_nodule_matches_its_ingested_record(logreg_run, nodule_0001, ct_files, tmp_path):
    """The same nodule through LIDC ingestion + evaluate and through predict on the DICOM series with the
    consensus mask: same slice, spacing, crop and radiomics, so the same probabilities."""
    from autorad.data.dataset import write_dataset

    series, vol, centre, d, rec = nodule_0001
    ds = write_dataset([rec], tmp_path / "ds", "lidc-dicom")
    ev = pd.read_parquet(evaluate(logreg_run, ds.path, tmp_path / "ev") / "predictions.parquet")
    out = predict(logreg_run, dicom=series, mask=ct_files / "mask.nii.gz")
    assert out["slice_index"] == centre[2] and out["slice_z_mm"] == pytest.approx(rec.z_mm)
    for c in ("benign", "unsure", "malignant"):
        assert out["probabilities"][c] == pytest.approx(float(ev.iloc[0][f"prob_{c}"]), abs=1e-6)


def test_predict_dicom_with_explicit_disk(logreg_run, nodule_0001, tmp_path):
    series, _, centre, d, _ = nodule_0001
    out = predict(logreg_run, dicom=series, center=centre, diameter_mm=d, disk=True, report=tmp_path / "r.html",
                  save_mask=tmp_path / "m.nii.gz")
    p = out["probabilities"]
    assert set(p) == {"benign", "unsure", "malignant"} and abs(sum(p.values()) - 1) < 1e-5
    assert out["predicted_class"] == max(p, key=p.get)
    assert out["mask"]["method"] == "disk" and "disk" in out["mask"]["description"]
    assert out["radiomics_status"] == "ok" and out["slice_index"] == centre[2]
    assert abs(out["equivalent_diameter_mm"] - d) < 0.15 * d
    html = (tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in html and out["predicted_class"] in html
    assert "drawn disk" in html and "{'" not in html and "z = " in html and "accuracy" in html
    import SimpleITK as sitk  # noqa: N813

    saved = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert sitk.GetArrayFromImage(saved).sum() == out["mask"]["voxels"]
    assert np.allclose(saved.GetOrigin(), load_series(series).origin)


def test_nifti_mask_equals_dicom_mask_and_label_maps_need_label(image_run, nodule_0001, ct_files):
    series = nodule_0001[0]
    a = predict(image_run, image=ct_files / "ct.nii.gz", mask=ct_files / "mask.nii.gz")
    b = predict(image_run, dicom=series, mask=ct_files / "mask.nii.gz")
    for c in a["probabilities"]:
        assert a["probabilities"][c] == pytest.approx(b["probabilities"][c], abs=1e-6)
    assert a["model"]["vision_encoder"] == "tiny-vit-2d"
    with pytest.raises(InputError, match="--label"):
        predict(image_run, image=ct_files / "ct.nii.gz", mask=ct_files / "labels.nii.gz")
    c = predict(image_run, image=ct_files / "ct.nii.gz", mask=ct_files / "labels.nii.gz", label=1)
    assert c["probabilities"] == a["probabilities"]


def test_predict_refuses_bad_inputs(logreg_run, nodule_0001, tmp_path):
    series, vol, centre, d, _ = nodule_0001
    with pytest.raises(InputError, match="outside the volume"):
        predict(logreg_run, dicom=series, center=(9999, 5, 1), diameter_mm=5, disk=True)
    with pytest.raises(InputError, match="in air"):
        predict(logreg_run, dicom=series, center=(0, 0, 0), diameter_mm=5, disk=True)
    for bad in (0, float("nan"), float("inf"), 500):
        with pytest.raises(InputError, match="--diameter-mm"):
            predict(logreg_run, dicom=series, center=centre, diameter_mm=bad, disk=True)
    with pytest.raises(InputError):
        predict(logreg_run, dicom=tmp_path / "missing", center=centre, diameter_mm=5, disk=True)
    with pytest.raises(InputError, match="not a trained run"):
        predict(tmp_path, dicom=series, center=centre, diameter_mm=5, disk=True)
    (tmp_path / "exists.html").write_text("user's file")
    with pytest.raises(InputError, match="already exists"):
        predict(logreg_run, dicom=series, center=centre, diameter_mm=5, disk=True, report=tmp_path / "exists.html")
    assert (tmp_path / "exists.html").read_text() == "user's file"


def test_simulated_and_other_version_runs_warn(logreg_run, nodule_0001):
    series, vol, centre, d, _ = nodule_0001
    base = Predictor.from_run(logreg_run)
    meta = {**base.meta, "dataset": {**base.meta["dataset"], "source": "phantom"}, "autorad_version": "0.0.1"}
    p = Predictor(base.run_dir, base.model, meta)
    out = p.predict(vol, center=centre, diameter_mm=d, disk=True)
    assert out.to_dict()["simulated_training_data"] is True
    assert out.warnings[0].startswith("MODEL TRAINED ON SIMULATED DATA")
    assert any("autorad 0.0.1" in w for w in out.warnings)
    # LIDC-IDRI-0001 is among the training patients of the first 150 max-slice nodules: the leakage guard says so
    own = base.predict(vol, center=centre, diameter_mm=d, disk=True).warnings
    assert len(own) == 1 and own[0].startswith("this series was in the model's training data")


def test_batch_matches_single_predictions(logreg_run, nodule_0001, ct_files, tmp_path):
    from autorad.apps.predict import predict_batch

    series, vol, centre, d, _ = nodule_0001
    c = ",".join(map(str, centre))
    csv = tmp_path / "nodules.csv"
    csv.write_text("id,ct,center,mask,diameter_mm,disk\n"
                   f"a,{ct_files / 'ct.nii.gz'},,{ct_files / 'mask.nii.gz'},,\n"
                   f"b,{series},\"{c}\",,{d:.3f},1\n"
                   f"air,{series},\"0,0,0\",,5,1\n")
    table = predict_batch(logreg_run, csv, tmp_path / "out")
    assert table["id"].tolist() == ["a", "b", "air"]
    assert table["error"].tolist()[:2] == ["", ""] and "in air" in table["error"].iloc[2]
    single = predict(logreg_run, image=ct_files / "ct.nii.gz", mask=ct_files / "mask.nii.gz")
    assert table.iloc[0]["prob_malignant"] == pytest.approx(single["probabilities"]["malignant"], abs=1e-6)
    js = json.loads((tmp_path / "out" / "nodules" / "b.json").read_text())
    assert js["mask"]["method"] == "disk" and js["id"] == "b"
    assert not (tmp_path / "out" / "nodules" / "air.json").exists()
    assert pd.read_parquet(tmp_path / "out" / "predictions.parquet").shape[0] == 3
    with pytest.raises(InputError, match="line 2"):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"ct,center\n{series},\"1,2\"\n")
        predict_batch(logreg_run, bad, tmp_path / "out2")


def test_predict_cli_prints_json_and_fails_cleanly(logreg_run, nodule_0001, tmp_path):
    series, _, centre, d, _ = nodule_0001
    c = ",".join(map(str, centre))
    cmd = [sys.executable, "-m", "autorad", "predict", str(logreg_run), "--dicom", str(series), "--center", c]
    ok = subprocess.run(cmd + ["--diameter-mm", f"{d:.2f}", "--disk"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert set(out["probabilities"]) == {"benign", "unsure", "malignant"} and out["mask"]["method"] == "disk"
    for extra in (["--diameter-mm", "nan", "--disk"], ["--diameter-mm", "500"], ["--diameter-mm", "inf"]):
        bad = subprocess.run(cmd + extra, capture_output=True, text=True)
        assert bad.returncode == 2 and "--diameter-mm" in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    bad = subprocess.run(cmd[:-1] + ["1,2"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("autorad: error:")
    air = subprocess.run(cmd[:-1] + ["0,0,0", "--diameter-mm", "5", "--disk"], capture_output=True, text=True)
    assert air.returncode == 2 and "in air" in air.stderr and len(air.stderr.strip().splitlines()) == 1


def test_load_predictor_is_loaded_once(logreg_run):
    assert load_predictor(logreg_run) is load_predictor(logreg_run)


def test_dicom_seg_and_sr_read_back(logreg_run, nodule_0001, ct_files, tmp_path):
    """--dicom-seg holds the mask used, on the source slices; --dicom-sr holds the class, probabilities and
    mask volume of the JSON, referencing the SEG and the series."""
    import highdicom as hd
    import pydicom

    series, vol, *_ = nodule_0001
    out = predict(logreg_run, dicom=series, mask=ct_files / "mask.nii.gz", dicom_seg=tmp_path / "seg.dcm",
                  dicom_sr=tmp_path / "sr.dcm", save_mask=tmp_path / "m.nii.gz")
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    src = pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True)
    assert seg.PatientID == src.PatientID and seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert int(seg.get_volume().array.sum()) == out["mask"]["voxels"]
    frame_refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in seg.PerFrameFunctionalGroupsSequence}
    assert frame_refs == {vol.sop_uids[out["slice_index"]]}  # the one slice the mask covers
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    assert sr.PatientID == src.PatientID
    text = str(sr)
    assert all(f"Probability of class {c}" in text for c in out["probabilities"])
    groups = hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    values = {m.name.meaning: m.value for m in groups[0].get_measurements()}
    assert values["Volume"] == pytest.approx(out["mask"]["volume_mm3"])
    for c, p in out["probabilities"].items():
        assert values[f"Probability of class {c}"] == pytest.approx(p)
    assert groups[0].get_qualitative_evaluations()[0].value.meaning == out["predicted_class"]
    assert seg.SOPInstanceUID in text


def test_a_click_is_enough_the_nodule_is_segmented(logreg_run, nodule_0001, tmp_path):
    """--center without --diameter-mm segments the nodule with autorad.segment; the mask used is the
    segmentation's (saved with the CT's geometry), it overlaps the readers' consensus, and every output says how
    it was made; --diameter-mm is passed on as a hint."""
    import SimpleITK as sitk  # noqa: N813

    pytest.importorskip("autorad.segment", reason="the click segmenter is not in this checkout")
    from autorad.segment import segment_click

    series, vol, centre, d, rec = nodule_0001
    out = predict(logreg_run, dicom=series, center=centre, save_mask=tmp_path / "m.nii.gz",
                  report=tmp_path / "r.html")
    assert out["mask"]["method"] == "click" and "segmented from a click" in out["mask"]["description"]
    want = segment_click(vol.hu, vol.spacing_mm, centre).mask
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz"))).astype(bool)
    assert saved.shape == vol.hu.shape and (saved == want).all()
    k = vol.slice_index(rec.z_mm)
    inter = np.logical_and(saved[k], rec.slice_mask).sum()
    assert 2 * inter / (saved[k].sum() + rec.slice_mask.sum()) > 0.6  # Dice with the consensus on its slice
    assert "segmented from a click" in (tmp_path / "r.html").read_text()
    hinted = predict(logreg_run, dicom=series, center=centre, diameter_mm=d)
    assert hinted["mask"]["method"] in ("click", "disk") and "hint" in hinted["mask"]["detail"]
    cli = subprocess.run([sys.executable, "-m", "autorad", "predict", str(logreg_run), "--dicom", str(series),
                          "--center", ",".join(map(str, centre))], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["probabilities"] == out["probabilities"]
