"""Kill -9 during training, then rerun: the same bytes as an uninterrupted run; two runs with one seed: the same
``metrics.json`` bytes (CPU). Kill-and-rerun of radiomics and embedding are tested beside their modules
(tests/test_radiomics_real.py, tests/test_encoders_embed.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robustness.conftest import TINY_PROMPT

TRAIN = ["--config", "coop", *TINY_PROMPT, "--set", "train.epochs=5", "--set", "train.final_model=false"]
ENV = {**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _train(ds: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autorad", "train", str(ds), *TRAIN, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.fixture(scope="module")
def runs(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two uninterrupted runs and one killed (SIGKILL in fold 1's epochs) then rerun, started together."""
    from autorad.encoders.embed import embed_dataset

    embed_dataset(small_dataset, "tiny-vit-2d")  # the cache is shared by the three runs below
    t = tmp_path_factory.mktemp("resume")
    a, c, b = _train(small_dataset, t / "a"), _train(small_dataset, t / "c"), _train(small_dataset, t / "b")
    state = t / "b" / "folds" / "1" / "state" / "model.json"
    deadline = time.time() + 240
    while not state.is_file() and b.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed_mid_fold = b.poll() is None and state.is_file()
    b.kill() if b.poll() is None else None
    b.wait()
    fold1_done = (t / "b" / "folds" / "1" / "predictions.parquet").is_file()
    outs = {k: p.communicate(timeout=300) + (p.returncode,) for k, p in (("a", a), ("c", c))}
    rerun = subprocess.run([sys.executable, "-m", "autorad", "train", str(small_dataset), *TRAIN, "--out",
                            str(t / "b")], capture_output=True, text=True, env=ENV, timeout=300)
    return {"dir": t, "ds": small_dataset, "outs": outs, "killed_mid_fold": killed_mid_fold,
            "fold1_done_at_kill": fold1_done, "kill_rc": b.returncode, "rerun": rerun}


def test_kill9_during_training_then_rerun_equals_uninterrupted(runs):
    """SIGKILL while fold 1 trains, rerun: metrics.json and predictions.parquet are byte-identical to an
    uninterrupted run's; fold 0 is loaded, not retrained; no nodule is missing or duplicated."""
    t = runs["dir"]
    assert runs["killed_mid_fold"] and not runs["fold1_done_at_kill"] and runs["kill_rc"] == -signal.SIGKILL
    assert runs["outs"]["a"][2] == 0, runs["outs"]["a"][1]
    assert runs["rerun"].returncode == 0, runs["rerun"].stderr
    assert "fold 0: already done, loaded" in runs["rerun"].stderr
    assert (t / "b" / "metrics.json").read_bytes() == (t / "a" / "metrics.json").read_bytes()
    assert (t / "b" / "predictions.parquet").read_bytes() == (t / "a" / "predictions.parquet").read_bytes()
    pred = pd.read_parquet(t / "b" / "predictions.parquet")
    manifest = pd.read_parquet(runs["ds"] / "manifest.parquet")
    assert pred["nodule_id"].is_unique
    assert sorted(pred["nodule_id"]) == sorted(manifest["nodule_id"])
    assert not (t / "b" / "folds" / "1" / "state").exists(), "the epoch checkpoint is removed once the fold is done"
    assert not [p for p in (t / "b").rglob("*") if ".tmp-" in p.name]


def test_same_seed_gives_identical_metrics_bytes(runs):
    """Two runs of one config and seed on the CPU: byte-identical metrics.json and predictions.parquet."""
    t = runs["dir"]
    assert runs["outs"]["c"][2] == 0, runs["outs"]["c"][1]
    assert (t / "a" / "metrics.json").read_bytes() == (t / "c" / "metrics.json").read_bytes()
    assert (t / "a" / "predictions.parquet").read_bytes() == (t / "c" / "predictions.parquet").read_bytes()


def test_torn_epoch_checkpoint_restarts_the_fold(tmp_path):
    """A kill between the two files of an epoch checkpoint (new tensors, old JSON): the rerun does not fail on
    the checksum; it starts the fold over and ends with the uninterrupted run's weights."""
    import torch
    from torch import nn

    from autorad.config import TrainConfig
    from autorad.train.checkpoint import TENSOR_FILE
    from autorad.train.loop import TrainInputs, train_learner

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = nn.Linear(4, 3)

        def forward(self, image, radiomics):
            return self.lin(image)

        def learnable_state_dict(self):
            return dict(self.state_dict())

        def load_learnable_state_dict(self, sd):
            self.load_state_dict(sd, strict=True)

    g = torch.Generator().manual_seed(0)
    data = TrainInputs(torch.randn(30, 4, generator=g), None, torch.arange(30) % 3)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05)
    full = Head()
    train_learner(full, data, cfg, tmp_path / "full", "fp", fold=0)
    torn = tmp_path / "torn"
    train_learner(Head(), data, TrainConfig(epochs=2, batch_size=8, lr=0.05), torn, "fp", fold=0)
    (torn / TENSOR_FILE).write_bytes((tmp_path / "full" / TENSOR_FILE).read_bytes())  # JSON still of epoch 1
    again = Head()
    history = train_learner(again, data, cfg, torn, "fp", fold=0)
    assert len(history.train_loss) == 4
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
