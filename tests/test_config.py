"""Typed configs: shipped configs validate, unknown keys and wrong types are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorad.config import load_config
from autorad.errors import ConfigError

SHIPPED = sorted((Path(__file__).parents[1] / "src" / "autorad" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.model.class_names == ["benign", "unsure", "malignant"]


def test_paper_defaults():
    cfg = load_config("autorad_lung")
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay, cfg.model.n_ctx) == (1e-4, 0.9, 5e-7, 50)
    assert cfg.model.vision_encoder == "aimv2-large-patch14-224" and cfg.model.kind == "autorad"


def test_extends_and_overrides():
    cfg = load_config("coop", ["train.epochs=3", "model.n_ctx=4"])
    assert cfg.model.kind == "coop" and cfg.model.text_encoder == "minilm-l6-text"
    assert cfg.train.epochs == 3 and cfg.model.n_ctx == 4


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'train.epochz'"):
        load_config(p)


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(p)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_bad_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["epochs"])
