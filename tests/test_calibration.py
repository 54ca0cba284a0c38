"""Temperature scaling (:mod:`autorad.train.calibration`): the maths on synthetic probabilities, the nested
per-fold estimate, and the stage on a finished run (metrics.json block, figures, report, Predictor, evaluate,
``autorad calibrate``, ``train.calibration`` resuming without retraining)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.evaluate.metrics import PROB_COLUMNS, log_loss, reliability_bins
from autorad.train import calibration as cal


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _synthetic(n: int, t_true: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) and the probabilities softmax(t_true * z): calibrated by T = t_true exactly."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, 3))
    q = _softmax(z)
    y = np.array([rng.choice(3, p=row) for row in q])
    return _softmax(t_true * z), y


def _frame(proba: np.ndarray, y: np.ndarray, n_folds: int = 5) -> pd.DataFrame:
    df = pd.DataFrame({"nodule_id": [f"n{i}" for i in range(len(y))], "fold": np.arange(len(y)) % n_folds,
                       "label": [CLASS_NAMES[i] for i in y]})
    return cal.with_probabilities(df, proba)


def _ece(proba: np.ndarray, y: np.ndarray) -> float:
    return reliability_bins(proba.max(axis=1), proba.argmax(axis=1) == y)["ece"]


def test_fit_recovers_a_known_temperature() -> None:
    for t_true in (2.5, 0.6):
        proba, y = _synthetic(6000, t_true)
        assert cal.fit_temperature(proba, y) == pytest.approx(t_true, rel=0.08)


def test_scaling_keeps_the_argmax_and_softens_over_confidence() -> None:
    proba, y = _synthetic(3000, 3.0, seed=1)
    t = cal.fit_temperature(proba, y)
    scaled = cal.apply_temperature(proba, t)
    assert t > 1
    assert np.array_equal(scaled.argmax(axis=1), proba.argmax(axis=1))
    assert np.allclose(scaled.sum(axis=1), 1)
    assert _ece(scaled, y) < 0.5 * _ece(proba, y)
    assert log_loss(scaled, y) < log_loss(proba, y)
    assert np.allclose(cal.apply_temperature(proba, 1.0), proba)


def test_fit_refuses_bad_shapes_and_temperatures() -> None:
    with pytest.raises(InputError):
        cal.fit_temperature(np.full((4, 2), 0.5), np.zeros(4, dtype=int))
    with pytest.raises(InputError):
        cal.fit_temperature(np.full((4, 3), 1 / 3), np.zeros(3, dtype=int))
    for bad in (0, -1.0, float("nan"), True, "2"):
        with pytest.raises(InputError):
            cal.apply_temperature(np.full((1, 3), 1 / 3), bad)


def test_each_fold_is_scaled_by_a_temperature_fitted_on_the_other_folds_only() -> None:
    proba, y = _synthetic(1500, 2.0, seed=2)
    df = _frame(proba, y)
    scaled, temps = cal.nested_calibrated(df)
    for k, t_k in enumerate(temps):
        rest = (df["fold"] != k).to_numpy()
        assert t_k == pytest.approx(cal.fit_temperature(proba[rest], y[rest]), abs=1e-9)
        assert np.allclose(scaled.loc[~rest, list(PROB_COLUMNS)].to_numpy(), cal.apply_temperature(proba[~rest], t_k))
    # change fold 0 only (its labels and probabilities): its own temperature stays, every other fold's moves
    changed = df.copy()
    in0 = (df["fold"] == 0).to_numpy()
    changed.loc[in0, list(PROB_COLUMNS)] = cal.apply_temperature(proba[in0], 0.3)
    changed.loc[in0, "label"] = [CLASS_NAMES[(i + 1) % 3] for i in y[in0]]
    _, temps2 = cal.nested_calibrated(changed)
    assert temps2[0] == pytest.approx(temps[0], abs=1e-9)
    assert all(abs(a - b) > 1e-3 for a, b in zip(temps[1:], temps2[1:], strict=True))


def test_calibrate_predictions_block() -> None:
    proba, y = _synthetic(1500, 2.5, seed=3)
    block = cal.calibrate_predictions(_frame(proba, y))
    assert block["method"] == "temperature" and block["n"] == 1500 and len(block["per_fold_temperature"]) == 5
    assert block["temperature"] == pytest.approx(cal.fit_temperature(proba, y), abs=1e-5)
    before, after = block["cv"]["before"], block["cv"]["after"]
    assert set(before) == set(cal.SCORES)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"]
    with pytest.raises(InputError, match="at least 2 folds"):
        cal.calibrate_predictions(_frame(proba, y, n_folds=1))


@pytest.fixture
def run_copy(phantom_logreg_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(phantom_logreg_run, tmp_path / "run"))


def test_calibrate_run_writes_the_block_and_is_idempotent(run_copy: Path) -> None:
    from autorad.train.run import Run

    run = Run(run_copy)
    pooled = run.read_metrics()["pooled"]
    oof = run.read_predictions()
    block = cal.calibrate_run(run)
    metrics = run.read_metrics()
    assert metrics["calibration"] == block and metrics["pooled"] == pooled  # the CV numbers stay the model's own
    assert block["cv"]["before"]["ece"] == pytest.approx(pooled["ece"], abs=1e-6)
    assert cal.run_temperature(run) == block["temperature"]
    pd.testing.assert_frame_equal(run.read_predictions(), oof)  # out-of-fold predictions untouched
    for name in ("reliability_uncalibrated.png", "reliability_calibrated.png"):
        assert (run_copy / "figures" / name).stat().st_size > 1000
    html = (run_copy / "report.html").read_text()
    assert "Calibration (temperature scaling)" in html and "Reliability after" in html
    first = run.metrics_file.read_bytes()
    assert cal.calibrate_run(run) == block and run.metrics_file.read_bytes() == first


def test_predictor_and_evaluate_apply_the_run_temperature(run_copy: Path, phantom_logreg_run: Path,
                                                          tmp_path: Path) -> None:
    from autorad.apps.predictor import Predictor
    from autorad.data.dataset import Dataset
    from autorad.data.dicom import CTVolume
    from autorad.evaluate.apply import evaluate

    data = phantom_logreg_run.parent / "dataset"
    ds = Dataset(data)
    nid = ds.nodule_ids[0]
    arrays, row = ds.arrays(nid), ds.row(nid)
    ps = float(row["pixel_spacing_mm"])
    vol = CTVolume(hu=arrays["slice_hu"][None], spacing_mm=(1.0, ps, ps), z_positions=np.array([0.0]),
                   sop_uids=[""], series_uid="x", patient_id="x")
    before = Predictor.from_run(run_copy).predict(vol, mask=arrays["slice_mask"][None]).to_dict()
    assert before["calibrated"] is False and "probabilities_uncalibrated" not in before
    raw_eval = pd.read_parquet(evaluate(run_copy, data, tmp_path / "ev0") / "predictions.parquet")

    t = cal.calibrate_run(run_copy)["temperature"]
    after = Predictor.from_run(run_copy).predict(vol, mask=arrays["slice_mask"][None]).to_dict()
    assert after["calibrated"] is True and after["temperature"] == t
    assert after["probabilities_uncalibrated"] == before["probabilities"]
    raw = np.array([[before["probabilities"][c] for c in CLASS_NAMES]])
    want = cal.apply_temperature(raw, t)[0]
    for i, c in enumerate(CLASS_NAMES):
        assert after["probabilities"][c] == pytest.approx(want[i], abs=1e-5)
    assert after["predicted_class"] == before["predicted_class"]
    assert after["probabilities"] != before["probabilities"]

    ev = evaluate(run_copy, data, tmp_path / "ev1")
    metrics = json.loads((ev / "metrics.json").read_text())
    block = metrics["calibration"]
    assert block["temperature"] == t
    assert block["evaluation"]["before"]["ece"] == pytest.approx(
        json.loads((tmp_path / "ev0" / "metrics.json").read_text())["pooled"]["ece"], abs=1e-6)
    assert metrics["pooled"]["ece"] == pytest.approx(block["evaluation"]["after"]["ece"], abs=1e-6)
    scaled = pd.read_parquet(ev / "predictions.parquet")
    assert np.allclose(scaled[list(PROB_COLUMNS)].to_numpy(),
                       cal.apply_temperature(raw_eval[list(PROB_COLUMNS)].to_numpy(), t), atol=1e-9)
    row0 = scaled[scaled["nodule_id"] == nid].iloc[0]
    assert after["probabilities"]["malignant"] == pytest.approx(float(row0["prob_malignant"]), abs=1e-5)
    assert (ev / "figures" / "reliability_calibrated.png").is_file()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autorad", *args], capture_output=True, text=True, timeout=300)


def test_cli_calibrate(run_copy: Path, tmp_path: Path) -> None:
    res = _cli("calibrate", str(run_copy))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    t = json.loads((run_copy / "metrics.json").read_text())["calibration"]["temperature"]
    assert len(lines) == 1 and f"temperature {t:.3f}" in lines[0] and "ECE" in lines[0] and "->" in lines[0]
    for bad in (tmp_path / "missing", run_copy / "figures"):
        res = _cli("calibrate", str(bad))
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("autorad: error: RUN ")
        assert "Traceback" not in res.stderr


def test_option_is_left_out_of_the_config_until_switched_on() -> None:
    from autorad.train.resolve import load_config
    from autorad.train.seeds import single_seed_config

    assert "calibration" not in load_config("radiomics_logreg").model_dump(mode="json")["train"]
    on = load_config("radiomics_logreg", ["train.calibration=temperature", "train.n_seeds=2"])
    assert on.model_dump(mode="json")["train"]["calibration"] == "temperature"
    assert single_seed_config(on, 0).train.calibration == "none"  # the combined run calibrates the ensemble
    with pytest.raises(Exception, match="calibration"):
        load_config("radiomics_logreg", ["train.calibration=platt"])


def test_switching_calibration_on_resumes_without_retraining(run_copy: Path, phantom_logreg_run: Path) -> None:
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    data = phantom_logreg_run.parent / "dataset"
    models = sorted(run_copy.glob("**/model/*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    assert models
    train(data, load_config("radiomics_logreg", ["train.calibration=temperature"]), run_copy)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps  # no fold or final model retrained
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["calibration"]["method"] == "temperature"
    assert "Calibration (temperature scaling)" in (run_copy / "report.html").read_text()


def test_seed_ensemble_run_calibrates_its_pooled_predictions(phantom_logreg_run: Path, tmp_path: Path) -> None:
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    cfg = load_config("radiomics_logreg", ["train.calibration=temperature", "train.n_seeds=2",
                                           "train.seed_ensemble=true", "train.final_model=false"])
    run = train(phantom_logreg_run.parent / "dataset", cfg, tmp_path / "seeds")
    metrics = json.loads((run / "metrics.json").read_text())
    oof = pd.read_parquet(run / "predictions.parquet")
    assert metrics["calibration"] == cal.calibrate_predictions(oof)  # the ensemble's pooled predictions
    for s in (0, 1):
        assert "calibration" not in json.loads((run / "seeds" / str(s) / "metrics.json").read_text())
