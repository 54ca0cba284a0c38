"""Late fusion of a prompt learner with the radiomics GBM: fixed weight, weight chosen on the inner split, reload."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autorad.core.errors import ConfigError
from autorad.data.dataset import Dataset
from autorad.train.entry import train
from autorad.train.features import build_features
from autorad.train.kinds.fusion import WEIGHT_GRID, FusedModel
from autorad.train.resolve import load_config
from autorad.train.run import load_model

pytestmark = pytest.mark.shared_data

TINY = ["model.kind=coop", "model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2",
        "train.epochs=2", "train.lr=0.01", "model.gbm_max_iter=20", "model.fusion=gbm", "train.final_model=false"]
PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]


@pytest.mark.parametrize("weight", ["0.25", "auto"])
def test_fused_predictions_are_the_weighted_mean(weight, small_maxslice_dataset, tmp_path):
    ds = Dataset(small_maxslice_dataset)
    cfg = load_config("offline", [*TINY, f"model.fusion_weight={weight}", "train.val_fraction=0.25"])
    run = train(ds.path, cfg, tmp_path / "run")
    model, _ = load_model(run / "folds" / "0" / "model")
    assert isinstance(model, FusedModel) and model.weight in WEIGHT_GRID
    if weight != "auto":
        assert model.weight == 0.25
    table = build_features(ds, cfg)
    fold0 = table.subset(table.folds == 0)
    expect = (1 - model.weight) * model.base.predict_proba(fold0) + model.weight * model.gbm.predict_proba(fold0)
    pred = pd.read_parquet(run / "predictions.parquet").set_index("nodule_id").loc[fold0.nodule_ids]
    assert np.allclose(pred[PROBS].to_numpy(), expect, atol=1e-6)


def test_auto_weight_needs_an_inner_split(small_maxslice_dataset, tmp_path):
    cfg = load_config("offline", [*TINY, "model.fusion_weight=auto"])
    with pytest.raises(ConfigError, match="val_fraction"):
        train(small_maxslice_dataset, cfg, tmp_path / "run")
