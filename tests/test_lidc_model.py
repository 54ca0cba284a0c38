"""The built-in model that ships with the package (``src/autorad/pretrained/lidc``, built by
docs/scripts/build_lidc_model.py): it loads strictly, its displayed metrics are the sealed ones, it predicts the
sample CT through the real CLI, and evaluating it on its own training patients is never called external."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autorad.pretrained import BUILTIN_DIR_ENV, MODEL_CARD, builtin_path, is_installed

pytestmark = pytest.mark.skipif(not is_installed("lidc") and not os.environ.get(BUILTIN_DIR_ENV),
                                reason="the built-in model lidc is not installed")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != BUILTIN_DIR_ENV}  # the shipped model, not a test copy
    return subprocess.run([sys.executable, "-m", "autorad", *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "HF_HUB_OFFLINE": "1"}, timeout=600)


@pytest.fixture(scope="module")
def shipped() -> Path:
    if os.environ.get(BUILTIN_DIR_ENV):
        pytest.skip(f"${BUILTIN_DIR_ENV} points the built-in models elsewhere")
    return builtin_path("lidc")


def test_the_shipped_model_is_sealed_and_its_card_shows_its_numbers(shipped):
    from autorad.apps.predictor import Predictor

    p = Predictor.load("lidc")
    cv = p.cv_metrics
    assert cv["sealed"] is True and not p.record_warnings  # metrics.json beside it is the sealed one
    assert cv["n"] >= 1000 and cv["n_folds"] == 5
    assert p.temperature is not None and cv["ece_calibrated"] < cv["ece"]  # calibration was adopted: it helped
    card = (shipped / MODEL_CARD).read_text()
    assert f"| accuracy | {cv['accuracy']:.3f} |" in card and "not a medical device" in card
    assert "CC BY 3.0" in card and "Armato" in card
    size = sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file())
    assert size < 12e6


def test_the_sample_ct_is_predicted_through_the_cli(shipped, tmp_path):
    out = _cli("predict", "lidc", "--sample", "lidc-idri-0001", "--report", "r.html", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    # the sample's nodule: 4 readers rated it 5, 5, 5, 4 (malignant); it is a training patient, and says so
    assert res["predicted_class"] == "malignant" and res["calibrated"] is True
    assert any(w.startswith("this series was in the model's training data") for w in res["warnings"])
    assert "training data" in out.stderr
    assert (tmp_path / "r.html").is_file() and "model confidence" in (tmp_path / "r.html").read_text()


def test_sample_refuses_a_second_nodule_source(shipped, tmp_path):
    out = _cli("predict", "lidc", "--sample", "lidc-idri-0001", "--center", "1,2,3", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--sample" in out.stderr
    bad = _cli("predict", "lidc", "--sample", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "lidc-idri-0001" in bad.stderr


@pytest.mark.shared_data
def test_evaluate_lidc_on_its_training_patients_is_not_external(shipped, maxslice_npz, tmp_path):
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest

    ds = tmp_path / "ds"
    ingest("maxslice", ds, maxslice_npz, DataConfig(source="maxslice", limit=30))
    out = _cli("evaluate", "lidc", "--data", str(ds), "--out", str(tmp_path / "ev"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["training_overlap"]["patients"] > 0
    report = (tmp_path / "ev" / "report.html").read_text()
    assert "External evaluation" not in report and "NOT AN EXTERNAL EVALUATION" in report
    assert "not an external evaluation" in out.stdout + out.stderr
