"""Dihedral views (model.views): one view function for dataset embedding and the predictor, one random view per
nodule and epoch in training, probabilities averaged over the views at prediction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import autorad.encoders as encoders
from autorad.data.dataset import Dataset
from autorad.encoders.embed import cache_paths, embed_dataset, read_embeddings
from autorad.encoders.registry import get_entry
from autorad.encoders.views import MAX_VIEWS, view, views_of
from autorad.train.features import build_features
from autorad.train.loop import TrainInputs, predict_logits
from autorad.train.resolve import load_config

torch.set_num_threads(1)
PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]
TINY = ["model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=2",
        "train.lr=0.01"]


def test_the_eight_views_are_the_dihedral_group():
    img = np.arange(12, dtype=np.int16).reshape(3, 4)
    vs = [view(img, k) for k in range(MAX_VIEWS)]
    assert vs[0] is img
    assert len({v.tobytes() + bytes(v.shape) for v in vs}) == MAX_VIEWS  # all different
    assert np.array_equal(view(view(img, 1), 3), img)  # a quarter turn undone by three more
    assert np.array_equal(view(view(img, 4), 4), img)  # a mirror undone by itself
    vol = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(view(vol, 1)[1], view(vol[1], 1))  # a volume turns in the axial plane
    assert views_of([img, img + 1], 2)[1].tolist() == (img + 1).tolist()  # view-major order
    with pytest.raises(ValueError):
        view(img, 8)


@pytest.mark.shared_data
def test_view_embeddings_are_cached_apart_and_view0_keeps_its_key(small_maxslice_dataset):
    ds = Dataset(small_maxslice_dataset)
    entry = get_entry("tiny-vit-2d")
    assert cache_paths(ds, entry, None)[0] == cache_paths(ds, entry, None, view=0)[0]
    assert cache_paths(ds, entry, None, view=3)[0] != cache_paths(ds, entry, None)[0]
    embed_dataset(ds, "tiny-vit-2d", view=3)
    ids, emb = read_embeddings(ds, "tiny-vit-2d", view=3)
    crop = np.asarray(ds.arrays(ids[0])["crop_hu"])
    direct = encoders.load_encoder("tiny-vit-2d").embed([view(crop, 3)])
    assert np.allclose(emb[0], direct[0], atol=1e-5)
    embed_dataset(ds, "tiny-vit-2d")
    assert not np.allclose(emb[0], read_embeddings(ds, "tiny-vit-2d")[1][0])  # view 3 is not the crop itself


def test_prediction_averages_the_views_and_training_draws_them():
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(4, 3)

        def forward(self, img, rad):
            return self.w(img)

    torch.manual_seed(0)
    learner = Lin()
    image = torch.randn(5, 3, 4)
    data = TrainInputs(image, None, torch.zeros(5, dtype=torch.long))
    got = torch.softmax(predict_logits(learner, data), 1)
    with torch.no_grad():
        want = torch.stack([torch.softmax(learner.w(image[:, v]), 1) for v in range(3)]).mean(0)
    assert torch.allclose(got, want, atol=1e-6)
    img, _, _ = data.batch(np.array([0, 4]), views=np.array([2, 1]))
    assert torch.equal(img, torch.stack([image[0, 2], image[4, 1]]))


@pytest.mark.shared_data
@pytest.mark.parametrize("kind", ["autorad_image", "linear_probe"])
def test_a_views_run_predicts_the_mean_over_views(kind, small_maxslice_dataset, tmp_path):
    from autorad.train.entry import train
    from autorad.train.run import load_model

    ds = Dataset(small_maxslice_dataset)
    cfg = load_config("offline", [f"model.kind={kind}", *TINY, "model.views=4"])
    run = train(ds.path, cfg, tmp_path / "run")
    pred = pd.read_parquet(run / "predictions.parquet")
    assert len(pred) == len(ds) and np.allclose(pred[PROBS].sum(axis=1), 1)
    table = build_features(ds, cfg)
    assert table.image.shape[:2] == (len(ds), 4)
    model, _ = load_model(run / "final" / "model")
    per_view = [model.predict_proba(replace(table, image=table.image[:, v])) for v in range(4)]
    assert np.allclose(model.predict_proba(table), np.mean(per_view, 0), atol=1e-5)
    assert not np.allclose(per_view[0], per_view[1])  # the views really differ


def test_views_off_keeps_the_config_dump_of_before():
    """A config without views writes the config.yaml (and run fingerprint) it wrote before the option existed."""
    assert "views" not in load_config("offline_cpu").model_dump(mode="json")["model"]
    assert load_config("offline_cpu", ["model.views=8"]).model_dump(mode="json")["model"]["views"] == 8
