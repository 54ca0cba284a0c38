"""The SGD loop: learns a separable problem, resumes exactly from an epoch checkpoint, keeps the best val epoch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from autorad.config import TrainConfig
from autorad.train.loop import TrainInputs, lr_schedule, predict_logits, train_learner


class TinyLearner(nn.Module):
    """A linear head with the prompt-learner state interface (test double for the loop only)."""

    def __init__(self, d: int):
        super().__init__()
        self.head = nn.Linear(d, 3)

    def forward(self, image, radiomics):
        return self.head(image)

    def learnable_state_dict(self):
        return {k: v for k, v in self.state_dict().items()}

    def load_learnable_state_dict(self, sd):
        self.load_state_dict(sd, strict=True)


class CrashError(RuntimeError):
    pass


def _data(n=120, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, d, generator=g) * 0.5
    x[:, :3] += nn.functional.one_hot(y, 3).float() * 2
    return TrainInputs(x, None, y)


def test_learns_and_schedule():
    torch.manual_seed(0)
    m = TinyLearner(8)
    cfg = TrainConfig(epochs=15, batch_size=16, lr=0.1)
    h = train_learner(m, _data(), cfg, None, "fp", fold=0)
    assert h.train_loss[-1] < h.train_loss[0] * 0.5
    acc = (predict_logits(m, _data(seed=1)).argmax(1) == _data(seed=1).y).float().mean()
    assert acc > 0.9
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule, lrs = lr_schedule(opt, 100, 10), []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    f = lrs.__getitem__
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and abs(f(100)) < 1e-9 and 0.4 < f(55) < 0.6


def test_resume_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.05)
    torch.manual_seed(0)
    full = TinyLearner(8)
    train_learner(full, _data(), cfg, tmp_path / "full", "fp", fold=1)

    torch.manual_seed(0)
    part = TinyLearner(8)

    def crash(epoch, loss):
        if epoch == 2:
            raise CrashError

    with pytest.raises(CrashError):
        train_learner(part, _data(), cfg, tmp_path / "part", "fp", fold=1, on_epoch=crash)
    # the interrupted run stopped after writing nothing for epoch 2; a fresh process resumes from epoch 1
    torch.manual_seed(123)  # a different init: it must be overwritten by the checkpoint
    resumed = TinyLearner(8)
    h = train_learner(resumed, _data(), cfg, tmp_path / "part", "fp", fold=1)
    assert len(h.train_loss) == 6
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_fingerprint_change_restarts(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    m = TinyLearner(8)
    train_learner(m, _data(), cfg, tmp_path / "s", "a", fold=0)
    h = train_learner(TinyLearner(8), _data(), cfg, tmp_path / "s", "b", fold=0)
    assert len(h.train_loss) == 2
    shutil.rmtree(tmp_path / "s")


def test_best_validation_epoch_is_kept():
    torch.manual_seed(0)
    m = TinyLearner(8)
    cfg = TrainConfig(epochs=8, batch_size=16, lr=0.1)
    h = train_learner(m, _data(), cfg, None, "fp", fold=0, val=_data(60, seed=3))
    assert 0 <= h.best_epoch < 8 and len(h.val_loss) == 8
    vl = torch.nn.functional.cross_entropy(predict_logits(m, _data(60, seed=3)), _data(60, seed=3).y)
    assert np.isclose(float(vl), min(h.val_loss), atol=1e-5)


def test_epoch_state_holds_torch_state_dicts_and_an_older_one_starts_over(tmp_path):
    """The epoch checkpoint keeps ``optimizer.state_dict()`` and ``scheduler.state_dict()`` (no hand-kept momentum
    buffers, no schedule replay); an epoch state without them (older autorad) restarts the fold from epoch 0."""
    from autorad.train.checkpoint import load_checkpoint, save_checkpoint, split_prefix

    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    train_learner(TinyLearner(8), _data(), cfg, tmp_path / "s", "fp", fold=0)
    tensors, meta = load_checkpoint(tmp_path / "s")
    steps = -(-120 // 16)
    assert meta["scheduler"]["last_epoch"] == 3 * steps  # stepped once per batch of every epoch
    momentum = split_prefix(tensors, "optimizer")
    assert momentum and all(k.endswith(".momentum_buffer") for k in momentum)
    assert [g["params"] for g in meta["optimizer"]["param_groups"]] == [sorted(int(k.split(".")[0])
                                                                           for k in momentum)]
    old_meta = {k: v for k, v in meta.items() if k not in ("optimizer", "scheduler", "meta_sha256", "format_version",
                                                           "autorad_version", "tensors")}
    save_checkpoint(tmp_path / "s", {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}, old_meta)
    epochs_seen = []
    train_learner(TinyLearner(8), _data(), cfg, tmp_path / "s", "fp", fold=0,
                  on_epoch=lambda epoch, loss: epochs_seen.append(epoch))
    assert epochs_seen == [0, 1, 2]
