"""The registry of model kinds: every kind declares its features; a new kind is one module plus one config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import toy_kind  # registers "toy_centroid" on import, as any kind module does

from autorad.core.errors import ConfigError
from autorad.train.entry import train
from autorad.train.features import build_features
from autorad.train.kinds import get_kind, kind_names, make_model, register_kind
from autorad.train.kinds.base import Model
from autorad.train.resolve import load_config
from autorad.train.run import load_model

TOY_CONFIG = Path(__file__).parent / "kinds" / "toy_centroid.yaml"
BUILT_IN = {"coop", "cocoop", "autorad", "autorad_image", "linear_probe", "radiomics_logreg", "radiomics_gbm"}


def test_every_kind_is_registered_and_declares_its_features() -> None:
    assert BUILT_IN | {"toy_centroid"} <= set(kind_names())
    for name in kind_names():
        kind = get_kind(name)
        assert issubclass(kind, Model) and kind.kind == name
        assert kind.needs_image or kind.needs_radiomics, name
        assert not kind.needs_text or kind.needs_image, name  # a text encoder is only used against an image
    assert get_kind("autorad").needs_radiomics and not get_kind("coop").needs_radiomics
    assert get_kind("linear_probe").needs_image and not get_kind("linear_probe").needs_text


def test_config_validation_reads_the_registry() -> None:
    assert load_config(TOY_CONFIG).model.kind == "toy_centroid"
    with pytest.raises(ConfigError, match="unknown model kind.*toy_centroid"):
        load_config(None, ["model.kind=no_such_kind"])


def test_a_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_kind("radiomics_gbm")(type("Other", (toy_kind.ToyCentroid,), {}))
    assert get_kind("radiomics_gbm").__name__ == "RadiomicsGBM"


@pytest.mark.shared_data
def test_toy_kind_cross_validates_end_to_end(small_maxslice_dataset, tmp_path) -> None:
    cfg = load_config(TOY_CONFIG)
    run = train(small_maxslice_dataset, cfg, tmp_path / "run")
    pred = pd.read_parquet(run / "predictions.parquet")
    table = build_features(small_maxslice_dataset, cfg)
    assert sorted(pred["nodule_id"]) == sorted(table.nodule_ids.tolist())
    assert table.image is None and table.radiomics is not None  # only the features the kind declared
    assert json.loads((run / "run.json").read_text())["model_kind"] == "toy_centroid"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pooled"]["accuracy"] > 0.4  # better than guessing on real nodules
    model, _ = load_model(run / "folds" / "0" / "model")
    fold0 = table.subset(table.folds == 0)
    saved = pred[pred["fold"] == 0].set_index("nodule_id").loc[fold0.nodule_ids]
    assert np.allclose(model.predict_proba(fold0), saved[["prob_benign", "prob_unsure", "prob_malignant"]], atol=1e-9)
    fresh = make_model(cfg.model)
    fresh.fit(table.subset(table.folds != 0), cfg.train)
    assert np.allclose(fresh.predict_proba(fold0), model.predict_proba(fold0))
