"""safetensors + JSON checkpoints refuse corruption, missing keys, extra keys and wrong shapes."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autorad.core.errors import CheckpointError
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


def _edit_meta(ckpt, change, reseal: bool):
    import json

    from autorad.train.checkpoint import seal_meta

    meta = json.loads((ckpt / "model.json").read_text())
    change(meta)
    (ckpt / "model.json").write_text(json.dumps(seal_meta(meta) if reseal else meta))


def test_edited_sidecar_is_refused(ckpt):
    _edit_meta(ckpt, lambda m: m.update(x=2), reseal=False)
    with pytest.raises(CheckpointError, match="changed after it was written"):
        load_checkpoint(ckpt)


def test_removed_version_is_refused(ckpt):
    _edit_meta(ckpt, lambda m: m.pop("autorad_version"), reseal=False)
    with pytest.raises(CheckpointError, match="changed after it was written"):
        load_checkpoint(ckpt)


def test_other_format_is_refused(ckpt):
    _edit_meta(ckpt, lambda m: m.update(format_version=3), reseal=True)
    with pytest.raises(CheckpointError, match="checkpoint format 3.*reads format 2"):
        load_checkpoint(ckpt)
    _edit_meta(ckpt, lambda m: (m.pop("format_version"), m.pop("meta_sha256")), reseal=False)
    with pytest.raises(CheckpointError, match="checkpoint format 1"):
        load_checkpoint(ckpt)


def test_other_version_warns_with_both_versions(ckpt, caplog):
    from autorad import __version__

    _edit_meta(ckpt, lambda m: m.update(autorad_version="9.9.9"), reseal=True)
    with caplog.at_level("WARNING"):
        _, meta = load_checkpoint(ckpt)
    assert meta["autorad_version"] == "9.9.9"
    assert "autorad 9.9.9" in caplog.text and f"autorad {__version__}" in caplog.text
