"""The run record sealed into a final model (autorad.train.record): what predict, serve and the reports show is
the sealed content; a model moved between runs is detected; the leakage guard of evaluate, compare, robustness
and predict. Through the real CLI where a command is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from autorad.apps.predictor import Predictor
from autorad.core.errors import InputError
from autorad.data.dataset import Dataset, write_dataset
from autorad.data.phantom import iter_phantom
from autorad.train.checkpoint import META_FILE, TENSOR_FILE, load_checkpoint, reseal_meta
from autorad.train.record import RECORD_KEY, attach_run_record, id_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factory import make_ct_series  # noqa: E402


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autorad", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def copy_run(run: Path, dest: Path) -> Path:
    """The run and its dataset, side by side as ``autorad run`` lays them out, copied so they may be changed."""
    shutil.copytree(run.parent / "dataset", dest / "dataset")
    return Path(shutil.copytree(run, dest / "run"))


def model_meta(run: Path) -> dict:
    return json.loads((run / "final" / "model" / META_FILE).read_text())


@pytest.fixture(scope="module")
def disjoint_dataset(phantom_logreg_run, tmp_path_factory) -> Path:
    """Phantom nodules of patients the phantom run never saw."""
    trained = set(Dataset(phantom_logreg_run.parent / "dataset").manifest["patient_id"])
    out = tmp_path_factory.mktemp("disjoint") / "ds"
    write_dataset(iter_phantom(20, seed=3, exclude_patients=trained), out, "phantom")
    return out


@pytest.fixture(scope="module")
def evaluations(phantom_logreg_run, disjoint_dataset, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """``autorad evaluate`` of the run on its own training data and on the disjoint dataset (folder, stdout)."""
    root = tmp_path_factory.mktemp("evals")
    out = {}
    for name, data in (("train", phantom_logreg_run.parent / "dataset"), ("disjoint", disjoint_dataset)):
        p = cli("evaluate", phantom_logreg_run, "--data", data, "--out", root / name)
        assert p.returncode == 0, p.stderr
        out[name] = (root / name, p.stdout)
    return out


def test_a_trained_run_carries_its_sealed_record(phantom_logreg_run):
    meta = model_meta(phantom_logreg_run)
    record = meta[RECORD_KEY]
    metrics = json.loads((phantom_logreg_run / "metrics.json").read_text())
    assert record["metrics"] == metrics  # the whole metrics.json, whatever it holds
    assert record["summary"]["pooled"]["accuracy"] == metrics["pooled"]["accuracy"]
    assert record["run_id"] == json.loads((phantom_logreg_run / "run.json").read_text())["run_id"]
    ds = Dataset(phantom_logreg_run.parent / "dataset")
    assert record["training_set"]["patients"] == sorted({id_hash(p) for p in ds.manifest["patient_id"]})
    assert record["training_set"]["n_nodules"] == len(ds)
    assert not any(p in json.dumps(record) for p in ds.manifest["patient_id"])  # hashes, not the ids
    p = Predictor.from_run(phantom_logreg_run)
    assert p.cv_metrics["sealed"] is True and p.record_warnings == []


def test_an_edited_metrics_json_is_not_shown(phantom_logreg_run, tmp_path):
    run = copy_run(phantom_logreg_run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    true_accuracy = metrics["pooled"]["accuracy"]
    metrics["pooled"]["accuracy"] = 0.99
    (run / "metrics.json").write_text(json.dumps(metrics))
    s = make_ct_series(tmp_path / "ct")
    r, c = s.center_rc
    p = cli("predict", run, "--dicom", s.folder, "--center", f"{round(c)},{round(r)},{s.center_index}",
            "--diameter-mm", "8", "--disk", "--report", tmp_path / "r.html")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["model"]["cross_validation"]["accuracy"] == true_accuracy != 0.99
    assert any("differs from the metrics sealed" in w for w in out["warnings"])
    page = (tmp_path / "r.html").read_text()
    assert "0.990" not in page and f"{true_accuracy:.3f}" in page and "differs from the metrics sealed" in page


def test_a_final_model_copied_from_another_run_is_detected(phantom_logreg_run, tmp_path):
    other = copy_run(phantom_logreg_run, tmp_path)  # run B: its own identity and metrics, run A's final/model
    info = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**info, "run_id": uuid.uuid4().hex}))
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["pooled"]["accuracy"] = 0.5
    (other / "metrics.json").write_text(json.dumps(metrics))
    p = Predictor.from_run(other)
    assert p.cv_metrics["accuracy"] == model_meta(phantom_logreg_run)[RECORD_KEY]["summary"]["pooled"]["accuracy"]
    assert any("sealed by another run" in w for w in p.model_warnings())
    with pytest.raises(Exception, match="sealed by another run"):
        attach_run_record(other)  # not blessed into run B either


def _unseal(run: Path) -> None:
    """Make ``run`` look like one trained before run records: no record in the model, no run id."""
    _, meta = load_checkpoint(run / "final" / "model")
    reseal_meta(run / "final" / "model", {k: v for k, v in meta.items() if k != RECORD_KEY})
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k != "run_id"}))


def test_attach_on_an_old_run_works_from_the_run_folder_and_is_idempotent(phantom_logreg_run, tmp_path):
    run = copy_run(phantom_logreg_run, tmp_path)
    _unseal(run)
    old = Predictor.from_run(run)
    assert old.cv_metrics["sealed"] is False and old.cv_metrics["accuracy"] is not None
    assert any("unverified" in w for w in old.model_warnings())
    tensors = (run / "final" / "model" / TENSOR_FILE).read_bytes()
    record = attach_run_record(run)  # the dataset is found beside the run (run.json names it)
    assert record["training_set"]["n_nodules"] == len(Dataset(run.parent / "dataset"))
    assert json.loads((run / "run.json").read_text())["run_id"] == record["run_id"]
    first = {f: (run / f).read_bytes() for f in ("run.json", f"final/model/{META_FILE}")}
    assert attach_run_record(run) == record
    assert {f: (run / f).read_bytes() for f in first} == first  # nothing rewritten
    assert (run / "final" / "model" / TENSOR_FILE).read_bytes() == tensors
    new = Predictor.from_run(run)
    assert new.cv_metrics["sealed"] is True and new.record_warnings == []
    assert new.cv_metrics["accuracy"] == old.cv_metrics["accuracy"]


def test_attach_refuses_a_dataset_that_is_not_the_runs(phantom_logreg_run, disjoint_dataset, tmp_path):
    run = copy_run(phantom_logreg_run, tmp_path)
    _unseal(run)
    with pytest.raises(InputError, match="does not hold the nodules"):
        attach_run_record(run, disjoint_dataset)
    shutil.rmtree(run.parent / "dataset")
    with pytest.raises(InputError, match="cannot find the dataset"):
        attach_run_record(run)
    assert RECORD_KEY not in model_meta(run)


def test_evaluate_on_the_training_data_is_not_external(evaluations, phantom_logreg_run):
    folder, stdout = evaluations["train"]
    overlap = json.loads((folder / "metrics.json").read_text())["training_overlap"]
    ds = Dataset(phantom_logreg_run.parent / "dataset")
    assert overlap["patients"] == ds.manifest["patient_id"].nunique() > 0 and overlap["nodules"] == len(ds)
    page = (folder / "report.html").read_text()
    assert "NOT AN EXTERNAL EVALUATION." in page
    assert f"{overlap['patients']} of the {overlap['n_patients']} patients were in training" in page
    assert "External evaluation" not in page and "external evaluation:" not in stdout.replace("not an external", "")
    assert f"not an external evaluation: {overlap['patients']} of the" in stdout


def test_evaluate_on_disjoint_data_is_external(evaluations):
    folder, stdout = evaluations["disjoint"]
    overlap = json.loads((folder / "metrics.json").read_text())["training_overlap"]
    assert overlap["patients"] == 0 and overlap["nodules"] == 0 and overlap["n_nodules"] == 20
    assert "External evaluation" in (folder / "report.html").read_text()
    assert "not an external" not in stdout and "external evaluation" in stdout


def test_compare_marks_the_row_evaluated_on_training_data(evaluations, tmp_path):
    (train, _), (disjoint, _) = evaluations["train"], evaluations["disjoint"]
    p = cli("compare", train, disjoint, "--out", tmp_path / "cmp")
    assert p.returncode == 0, p.stderr
    lines = [" ".join(line.split()) for line in p.stdout.splitlines()]
    assert lines[0].endswith("| training overlap |")
    train_row = next(line for line in lines if line.endswith("NOT EXTERNAL |"))
    other_row = next(line for line in lines if "none (external)" in line)
    assert "NOT EXTERNAL" in train_row and "**" not in train_row  # never bold
    assert "**" in other_row
    assert any(line.startswith("NOT EXTERNAL:") for line in lines)
    csv = pd.read_csv(tmp_path / "cmp.csv")
    assert list(csv["training_overlap_patients"] > 0) == [True, False]


def test_robustness_reports_the_overlap(phantom_logreg_run, tmp_path):
    p = cli("robustness", phantom_logreg_run, "--data", phantom_logreg_run.parent / "dataset", "--variants",
            "consensus", "--out", tmp_path / "rob")
    assert p.returncode == 0, p.stderr
    overlap = json.loads((tmp_path / "rob" / "robustness.json").read_text())["training_overlap"]
    assert overlap["patients"] > 0
    assert "Not an external evaluation" in (tmp_path / "rob" / "robustness.md").read_text()
    assert "Not an external evaluation" in p.stdout


def test_predict_warns_on_a_training_series_or_patient(phantom_logreg_run, tmp_path):
    row = Dataset(phantom_logreg_run.parent / "dataset").manifest.iloc[0]
    cases = {"new": make_ct_series(tmp_path / "new"),
             "patient": make_ct_series(tmp_path / "patient", patient_id=str(row["patient_id"]))}
    series = make_ct_series(tmp_path / "series")
    for f in series.folder.glob("*.dcm"):  # a training series (its public TCIA UID) under another patient id
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = str(row["series_uid"])
        ds.save_as(f)
    cases["series"] = series
    warned = {}
    for name, s in cases.items():
        r, c = s.center_rc
        p = cli("predict", phantom_logreg_run, "--dicom", s.folder, "--center",
                f"{round(c)},{round(r)},{s.center_index}", "--diameter-mm", "8", "--disk")
        assert p.returncode == 0, p.stderr
        warned[name] = [w for w in json.loads(p.stdout)["warnings"] if "was in the model's training data" in w]
        assert bool(warned[name]) == ("was in the model's training data" in p.stderr)
    assert warned["new"] == []
    assert warned["patient"] and warned["patient"][0].startswith("this patient")
    assert warned["series"] and warned["series"][0].startswith("this series")
