"""Cross-validated training, checkpoints, evaluate and resume on a small real dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autorad.core.errors import InputError
from autorad.data.dataset import Dataset
from autorad.evaluate.apply import evaluate
from autorad.train.entry import train
from autorad.train.features import build_features
from autorad.train.resolve import load_config
from autorad.train.run import load_model

pytestmark = pytest.mark.shared_data

TINY = ["model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=2",
        "train.lr=0.01"]


def _check_run(run, ds: Dataset):
    pred = pd.read_parquet(run / "predictions.parquet")
    assert sorted(pred["nodule_id"]) == sorted(ds.nodule_ids)  # every nodule exactly once, out of fold
    probs = pred[["prob_benign", "prob_unsure", "prob_malignant"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == len(ds) and 0 <= m["pooled"]["accuracy"] <= 1
    assert set(m["per_fold"]) == {str(k) for k in sorted(ds.manifest["fold"].unique())}
    assert (run / "report.html").is_file() and (run / "final" / "model" / "model.safetensors").is_file()
    # fold k's predictions come from a model that never saw fold k
    merged = pred.merge(ds.manifest[["nodule_id", "fold"]], on="nodule_id", suffixes=("", "_ds"))
    assert (merged["fold"] == merged["fold_ds"]).all()
    return pred, m


@pytest.mark.parametrize("kind", ["radiomics_logreg", "radiomics_gbm"])
def test_radiomics_baselines_train_and_reload(kind, small_maxslice_dataset, tmp_path):
    ds = Dataset(small_maxslice_dataset)
    cfg = load_config(kind, ["model.gbm_max_iter=30"] if kind == "radiomics_gbm" else None)
    run = train(ds.path, cfg, tmp_path / "run")
    pred, metrics = _check_run(run, ds)
    model, meta = load_model(run / "folds" / "0" / "model")
    table = build_features(ds, cfg)
    fold0 = table.subset(table.folds == 0)
    again = model.predict_proba(fold0)
    saved = pred[pred["fold"] == 0].set_index("nodule_id").loc[fold0.nodule_ids]
    assert np.allclose(again, saved[["prob_benign", "prob_unsure", "prob_malignant"]].to_numpy(), atol=1e-9)
    assert meta["radiomics_names"] == table.radiomics_names


@pytest.mark.parametrize("kind", ["coop", "cocoop", "autorad", "autorad_image", "linear_probe"])
def test_prompt_learners_and_probe_train_with_tiny_encoders(kind, small_maxslice_dataset, tmp_path):
    ds = Dataset(small_maxslice_dataset)
    cfg = load_config("offline", [f"model.kind={kind}", *TINY])
    run = train(ds.path, cfg, tmp_path / "run")
    _check_run(run, ds)
    info = json.loads((run / "run.json").read_text())
    assert any(e["weights"] == "random" for e in info["encoders"])  # tiny encoders are flagged, not hidden
    assert "random" in (run / "report.html").read_text().lower()
    model, _ = load_model(run / "final" / "model")
    table = build_features(ds, cfg)
    p = model.predict_proba(table)
    assert p.shape == (len(ds), 3) and np.isfinite(p).all()


def test_rerun_resumes_and_is_deterministic(small_maxslice_dataset, tmp_path):
    cfg = load_config("offline", ["model.kind=autorad", *TINY])
    run = train(small_maxslice_dataset, cfg, tmp_path / "a")
    first = (run / "metrics.json").read_bytes()
    stamp = (run / "folds" / "0" / "model" / "model.safetensors").stat().st_mtime_ns
    train(small_maxslice_dataset, cfg, tmp_path / "a")  # everything cached: nothing retrained
    assert (run / "folds" / "0" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (run / "metrics.json").read_bytes() == first
    other = train(small_maxslice_dataset, cfg, tmp_path / "b")
    assert (other / "metrics.json").read_bytes() == first


def test_folds_as_tasks_give_the_run_of_folds_in_turn(small_maxslice_dataset, tmp_path):
    """train.jobs 2: the folds train in 2 worker processes; same models, same predictions as one after another."""
    one = train(small_maxslice_dataset, load_config("offline", ["model.kind=autorad", *TINY]), tmp_path / "one")
    cfg = load_config("offline", ["model.kind=autorad", *TINY, "train.jobs=2"])
    two = train(small_maxslice_dataset, cfg, tmp_path / "two")
    assert "5 folds as tasks (local, jobs 2)" in (two / "log.txt").read_text()
    assert "fold 4: train" in (two / "log.txt").read_text()  # the workers log into the run's log too
    a, b = (pd.read_parquet(r / "predictions.parquet") for r in (one, two))
    assert a[["nodule_id", "fold", "label", "pred"]].equals(b[["nodule_id", "fold", "label", "pred"]])
    probs = ["prob_benign", "prob_unsure", "prob_malignant"]
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    stamp = (two / "folds" / "3" / "model" / "model.safetensors").stat().st_mtime_ns
    train(small_maxslice_dataset, cfg, tmp_path / "two")  # resumed: nothing retrained
    assert (two / "folds" / "3" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_validation_split_stays_inside_training_folds(small_maxslice_dataset, tmp_path):
    from autorad.train.fitting import validation_split

    cfg = load_config("offline", ["model.kind=autorad", *TINY, "train.val_fraction=0.2"])
    table = build_features(small_maxslice_dataset, cfg)
    tr = table.subset(table.folds != 0)
    fit, val = validation_split(tr, 0.2, 0)
    assert not set(fit.patient_ids) & set(val.patient_ids)
    assert not set(val.nodule_ids) & set(table.subset(table.folds == 0).nodule_ids)
    run = train(small_maxslice_dataset, cfg, tmp_path / "run")
    assert (run / "metrics.json").is_file()


def test_evaluate_applies_final_model(small_maxslice_dataset, tmp_path):
    cfg = load_config("radiomics_logreg")
    run = train(small_maxslice_dataset, cfg, tmp_path / "run")
    out = evaluate(run, small_maxslice_dataset, tmp_path / "eval")
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == len(Dataset(small_maxslice_dataset))
    # the final model saw every nodule: its accuracy on them is at least the out-of-fold accuracy
    oof = json.loads((run / "metrics.json").read_text())
    assert m["pooled"]["accuracy"] >= oof["pooled"]["accuracy"] - 1e-9


def test_one_class_dataset_is_refused(small_maxslice_dataset, tmp_path):
    import shutil

    src = Dataset(small_maxslice_dataset)
    dst = tmp_path / "one"
    shutil.copytree(src.path, dst)
    m = src.manifest.copy()
    m["label"] = "benign"
    m.to_parquet(dst / "manifest.parquet", index=False)
    with pytest.raises(InputError, match="only one class"):
        train(dst, load_config("radiomics_logreg"), tmp_path / "run")


def test_learner_init_does_not_depend_on_process_history(small_maxslice_dataset):
    """Same seed, same fold: identical initial prompts whether or not the text encoder was loaded before."""
    from autorad.train.kinds import make_model
    from autorad.train.kinds.prompting import load_text_encoder

    # the real MiniLM: loading it draws from torch's global generator (tiny-text uses its own)
    cfg = load_config("offline", ["model.kind=coop", *TINY, "model.text_encoder=minilm-l6-text", "train.epochs=1"])
    table = build_features(small_maxslice_dataset, cfg)
    states = []
    for _ in range(2):
        load_text_encoder.cache_clear()  # first fit loads the encoder, as in a fresh process
        m = make_model(cfg.model)
        m.fit(table, cfg.train, fold=0)
        states.append({k: v.clone() for k, v in m.learner.learnable_state_dict().items()})
    m = make_model(cfg.model)  # encoder already cached this time
    m.fit(table, cfg.train, fold=0)
    cached = m.learner.learnable_state_dict()
    for k in states[0]:
        assert states[0][k].equal(states[1][k]) and states[0][k].equal(cached[k]), k
