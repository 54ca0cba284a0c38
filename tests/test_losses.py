"""Training objective levers: soft reader targets, ordinal penalty, attribute auxiliary head; reader targets."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autorad.config import TrainConfig
from autorad.prompts.metanet import MetaNet
from autorad.train.loop import TrainInputs, predict_logits, train_learner
from autorad.train.losses import Objective
from autorad.train.targets import ATTRIBUTE_NAMES, reader_attributes, reader_distribution


def test_default_objective_is_plain_cross_entropy():
    logits, y = torch.randn(10, 3), torch.arange(10) % 3
    obj = Objective(TrainConfig(), None)
    assert torch.equal(obj(logits, y, torch.rand(10, 3)), F.cross_entropy(logits, y))
    w = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(Objective(TrainConfig(), w)(logits, y), F.cross_entropy(logits, y, weight=w))


def test_soft_targets_are_minimised_at_the_reader_distribution():
    q = torch.tensor([[0.25, 0.5, 0.25], [0.0, 0.25, 0.75]])
    y = torch.tensor([1, 2])
    obj = Objective(TrainConfig(soft_targets=1.0), None)
    logits = q.clamp(min=1e-6).log().requires_grad_(True)
    obj(logits, y, q).backward()
    assert logits.grad.abs().max() < 1e-4
    hard = torch.log(F.one_hot(y, 3).float() * 0.98 + 0.01)
    assert obj(q.clamp(min=1e-6).log(), y, q) < obj(hard, y, q)


def test_ordinal_penalty_prefers_the_neighbouring_class():
    y = torch.tensor([0])
    to_unsure = torch.tensor([[0.0, 2.0, 0.0]])
    to_malignant = torch.tensor([[0.0, 0.0, 2.0]])
    plain = Objective(TrainConfig(), None)
    ordinal = Objective(TrainConfig(ordinal_weight=1.0), None)
    assert torch.isclose(plain(to_unsure, y), plain(to_malignant, y))
    assert ordinal(to_unsure, y) < ordinal(to_malignant, y)


class _Learner(nn.Module):
    """Just enough of a prompt learner for the loop and the attribute head: projection, MetaNet, text dim."""

    def __init__(self, d=8, r=5):
        super().__init__()
        self.text_encoder = types.SimpleNamespace(dim=6)
        self.projection = nn.Linear(d, 6, bias=False)
        self.metanet = MetaNet(r, 3, hidden=4)
        self.head = nn.Linear(6 + 3, 3)

    def forward(self, image, radiomics):
        return self.head(torch.cat([self.projection(image), self.metanet(radiomics)], dim=-1))

    def learnable_state_dict(self):
        return dict(self.state_dict())

    def load_learnable_state_dict(self, sd):
        self.load_state_dict(sd, strict=True)


def _data(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    img = torch.randn(n, 8, generator=g)
    img[:, :3] += F.one_hot(y, 3).float() * 2
    rad = torch.randn(n, 5, generator=g)
    attrs = torch.randn(n, 8, generator=g) + y[:, None].float()
    attrs[0, 2] = float("nan")  # a missing attribute is masked, not a NaN loss
    soft = F.one_hot(y, 3).float() * 0.7 + 0.1
    return TrainInputs(img, rad, y, soft, attrs)


def test_all_levers_train_resume_exactly_and_leave_no_attribute_in_the_model(tmp_path):
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.05, soft_targets=0.5, ordinal_weight=0.5, aux_attributes=1.0)
    torch.manual_seed(0)
    full = _Learner()
    h = train_learner(full, _data(), cfg, tmp_path / "full", "fp", fold=0)
    assert np.isfinite(h.train_loss).all() and h.train_loss[-1] < h.train_loss[0]
    assert (predict_logits(full, _data(seed=1)).argmax(1) == _data(seed=1).y).float().mean() > 0.8
    assert set(full.learnable_state_dict()) == set(_Learner().learnable_state_dict())  # no attribute head kept
    assert not full.projection._forward_hooks and not full.metanet.relu._forward_hooks  # hooks removed

    class StopError(RuntimeError):
        pass

    def stop(epoch, loss):
        if epoch == 2:
            raise StopError

    torch.manual_seed(0)
    with pytest.raises(StopError):
        train_learner(_Learner(), _data(), cfg, tmp_path / "part", "fp", fold=0, on_epoch=stop)
    torch.manual_seed(5)
    resumed = _Learner()
    train_learner(resumed, _data(), cfg, tmp_path / "part", "fp", fold=0)
    for k, v in full.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


def test_reader_targets_from_the_manifest():
    cols = {f"reader{r + 1}_{a}": [0, 0] for r in range(4) for a in (*ATTRIBUTE_NAMES, "malignancy")}
    m = pd.DataFrame(cols)
    for r, v in enumerate([2, 3, 3, 5]):
        m.loc[0, f"reader{r + 1}_malignancy"] = v
        m.loc[0, f"reader{r + 1}_subtlety"] = r + 1
    m.loc[1, "reader1_malignancy"] = 4
    np.testing.assert_allclose(reader_distribution(m), [[0.25, 0.5, 0.25], [0, 0, 1]])
    a = reader_attributes(m)
    assert a.shape == (2, 8) and a[0, 0] == 2.5 and np.isnan(a[1, 0])
    assert reader_distribution(m.drop(columns="reader4_malignancy")) is None
