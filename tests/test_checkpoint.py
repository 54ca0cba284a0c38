"""safetensors + JSON checkpoints refuse corruption, missing keys, extra keys and wrong shapes."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autorad.errors import CheckpointError
from autorad.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    save_checkpoint(tmp_path, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4)}, {"x": 1})
    return tmp_path


def test_round_trip(ckpt):
    t, meta = load_checkpoint(ckpt)
    assert meta["x"] == 1 and t["a"].shape == (2, 3) and np.array_equal(t["b"], np.ones(4))


def test_missing_key_is_named(ckpt):
    t = load_file(ckpt / "model.safetensors")
    del t["b"]
    save_file(t, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing key.*b"):
        load_checkpoint(ckpt)


def test_extra_key_is_named(ckpt):
    t = load_file(ckpt / "model.safetensors")
    t["c"] = np.zeros(1)
    save_file(t, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected key.*c"):
        load_checkpoint(ckpt)


def test_wrong_shape_is_named(ckpt):
    t = load_file(ckpt / "model.safetensors")
    t["a"] = np.zeros((3, 2), np.float32)
    save_file(t, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="key a has shape"):
        load_checkpoint(ckpt)


def test_flipped_bytes_are_refused(ckpt):
    raw = bytearray((ckpt / "model.safetensors").read_bytes())
    raw[-3] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt)


def test_garbage_header_is_refused(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


def test_absent_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none")


def test_scalar_tensor_keeps_its_shape(tmp_path):
    save_checkpoint(tmp_path, {"s": np.array(4.6, np.float32)}, {})
    t, _ = load_checkpoint(tmp_path)
    assert t["s"].shape == ()
