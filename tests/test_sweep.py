"""``autorad sweep``: one run per value under the same folds, and a comparison table."""

from __future__ import annotations

import json

import pytest

from autorad.core.errors import ConfigError
from autorad.train.sweep import sweep

pytestmark = pytest.mark.shared_data


def test_radiomic_class_subsets(small_maxslice_dataset, tmp_path):
    table = sweep(small_maxslice_dataset, "radiomics_logreg", "radiomics.classes",
                  ["[shape2D]", "[texture]"], tmp_path / "sw")
    runs = sorted(p for p in (tmp_path / "sw").iterdir() if p.is_dir())
    assert len(runs) == 2 and (tmp_path / "sw" / "compare.md").is_file()
    assert "shape2D" in table and "texture" in table
    n_features = []
    for run in runs:
        meta = json.loads((run / "final" / "model" / "model.json").read_text())
        n_features.append(len(meta["radiomics_names"]))
        folds = json.loads((run / "metrics.json").read_text())["per_fold"].keys()
        assert len(folds) == 5
    assert n_features[0] != n_features[1] and min(n_features) > 0


def test_context_length_values_reach_the_model(small_maxslice_dataset, tmp_path):
    sweep(small_maxslice_dataset, "offline", "model.n_ctx", ["1", "3"], tmp_path / "sw",
          overrides=["model.kind=coop", "model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text",
                     "train.epochs=1", "train.final_model=false"])
    for n in (1, 3):
        meta = json.loads((tmp_path / "sw" / f"model.n_ctx={n}" / "folds" / "0" / "model" / "model.json").read_text())
        assert meta["config"]["model"]["n_ctx"] == n


def test_sweep_rejects_bad_values(small_maxslice_dataset, tmp_path):
    with pytest.raises(ConfigError):
        sweep(small_maxslice_dataset, "radiomics_logreg", "model.n_ctx", ["zero"], tmp_path / "sw")
    with pytest.raises(ConfigError):
        sweep(small_maxslice_dataset, "radiomics_logreg", "model.n_ctx", [], tmp_path / "sw")


def test_sweep_values_train_as_tasks(small_maxslice_dataset, tmp_path):
    """train.jobs 2: the values train in 2 worker processes, each the run a sweep in turn gives."""
    over = ["model.kind=coop", "model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "train.epochs=1",
            "train.final_model=false"]
    sweep(small_maxslice_dataset, "offline", "model.n_ctx", ["1", "3"], tmp_path / "a", overrides=over)
    sweep(small_maxslice_dataset, "offline", "model.n_ctx", ["1", "3"], tmp_path / "b",
          overrides=[*over, "train.jobs=2"])
    for n in (1, 3):
        a, b = (json.loads((tmp_path / s / f"model.n_ctx={n}" / "metrics.json").read_text())["pooled"]
                for s in "ab")
        assert a["accuracy"] == b["accuracy"] and a["macro_auc"] == pytest.approx(b["macro_auc"], abs=1e-6)
    assert (tmp_path / "b" / "compare.md").is_file()
