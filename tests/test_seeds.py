"""Several seeds under the same folds: per-seed runs, mean ± std over seeds, the seed ensemble as the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autorad.data.dataset import Dataset
from autorad.evaluate.metrics import compute_metrics
from autorad.train.entry import train
from autorad.train.features import build_features
from autorad.train.kinds.fusion import FusedModel
from autorad.train.kinds.seed_ensemble import SeedEnsemble
from autorad.train.resolve import load_config
from autorad.train.run import load_model
from autorad.train.seeds import average_predictions, fuse, seed_summary

pytestmark = pytest.mark.shared_data

TINY = ["model.kind=autorad", "model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2",
        "train.epochs=2", "train.lr=0.01", "train.n_seeds=2"]
PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]


def test_seed_ensemble_run(small_maxslice_dataset, tmp_path):
    ds = Dataset(small_maxslice_dataset)
    cfg = load_config("offline", [*TINY, "train.seed_ensemble=true", "train.soft_targets=0.5", "model.fusion=gbm",
                                  "model.fusion_weight=0.25", "model.gbm_max_iter=20"])
    run = train(ds.path, cfg, tmp_path / "run")
    seeds = [pd.read_parquet(run / "seeds" / s / "predictions.parquet") for s in ("0", "1")]
    assert not np.allclose(seeds[0][PROBS], seeds[1][PROBS])  # the seeds really differ
    pred = pd.read_parquet(run / "predictions.parquet").set_index("nodule_id")
    gbm = pd.read_parquet(run / "gbm" / "predictions.parquet").set_index("nodule_id")  # trained once, no seed
    mean = (seeds[0].set_index("nodule_id")[PROBS] + seeds[1].set_index("nodule_id")[PROBS]) / 2
    assert np.allclose(pred.loc[mean.index, PROBS], 0.75 * mean + 0.25 * gbm.loc[mean.index, PROBS], atol=1e-9)
    m = json.loads((run / "metrics.json").read_text())
    per_seed = [compute_metrics(fuse(f, gbm.reset_index(), 0.25))["pooled"]["accuracy"] for f in seeds]
    assert m["seeds"]["values"]["accuracy"] == per_seed
    assert m["seeds"]["mean"]["accuracy"] == pytest.approx(np.mean(per_seed), abs=1e-6)
    assert m["seeds"]["std"]["accuracy"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-6)
    # the shipped model is the ensemble of both seeds' final models and predicts their mean
    model, _ = load_model(run / "final" / "model")
    assert isinstance(model, FusedModel) and isinstance(model.base, SeedEnsemble) and len(model.base.members) == 2
    table = build_features(ds, cfg)
    members = [load_model(run / "seeds" / s / "final" / "model")[0] for s in "01"]
    g = load_model(run / "gbm" / "final" / "model")[0].predict_proba(table)
    expect = 0.75 * (members[0].predict_proba(table) + members[1].predict_proba(table)) / 2 + 0.25 * g
    assert np.allclose(model.predict_proba(table), expect, atol=1e-6)
    # a rerun reuses every finished seed and gives the same numbers
    record = json.loads((run / "final" / "model" / "model.json").read_text())["run_record"]
    again = json.loads((train(ds.path, cfg, tmp_path / "run") / "metrics.json").read_text())
    assert again["pooled"] == m["pooled"]
    # the shipped model carries the ensemble's own sealed record (not seed 0's), kept by the rerun
    assert record["metrics"] == m and record["training_set"]["n_nodules"] == len(ds)
    assert record["run_id"] == json.loads((run / "run.json").read_text())["run_id"]
    seed0 = json.loads((run / "seeds" / "0" / "final" / "model" / "model.json").read_text())["run_record"]
    assert seed0["run_id"] != record["run_id"]
    assert json.loads((run / "final" / "model" / "model.json").read_text())["run_record"] == record


def test_summary_and_average_helpers():
    a = pd.DataFrame({"nodule_id": ["x", "y"], "fold": [0, 1], "label": ["benign", "unsure"],
                      "prob_benign": [0.6, 0.2], "prob_unsure": [0.3, 0.3], "prob_malignant": [0.1, 0.5], "pred": ""})
    b = a.iloc[::-1].copy()
    b[PROBS] = [[0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]  # rows in the other order: aligned by nodule_id
    avg = average_predictions([a, b]).set_index("nodule_id")
    assert np.allclose(avg.loc["x", PROBS].to_numpy(dtype=float), [0.4, 0.25, 0.35])
    assert avg.loc["x", "pred"] == "benign" and avg.loc["y", "pred"] == "unsure"
    s = seed_summary({0: {"pooled": {"accuracy": 0.5}}, 1: {"pooled": {"accuracy": 0.7}}})
    assert s["mean"]["accuracy"] == pytest.approx(0.6)
    assert s["std"]["accuracy"] == pytest.approx(np.std([0.5, 0.7], ddof=1), abs=1e-6)


def test_seed_workers_start_with_the_features_cached(tmp_path, monkeypatch):
    """The seeds' shared radiomics and embeddings are computed once, before any worker starts (workers computing
    them at once would write one cache twice)."""
    import autorad.core.tasks
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest
    from autorad.encoders.embed import cache_paths
    from autorad.encoders.registry import get_entry

    ds = ingest("phantom", tmp_path / "ds", None, DataConfig(source="phantom", phantom_n=24))
    cfg = load_config("offline", [*TINY, "train.n_seeds=2", "train.jobs=1"])
    real, seen = autorad.core.tasks.run_tasks, []

    def check_then_run(fn, tasks, **kw):
        if fn.__name__ == "train_single_task":  # (the extraction and embedding stages run tasks too)
            seen.append((cache_paths(ds, get_entry("tiny-vit-2d"), None)[0].is_file(),
                         (ds.path / "radiomics.parquet").is_file()))
        return real(fn, tasks, **kw)

    monkeypatch.setattr(autorad.core.tasks, "run_tasks", check_then_run)
    train(ds.path, cfg, tmp_path / "run")
    assert seen == [(True, True)]
