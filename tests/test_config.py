"""Typed configs: shipped configs validate, unknown keys and wrong types are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorad.core.errors import ConfigError
from autorad.train.resolve import load_config

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


BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, c in zip(["", *"abcdefg"], "abcdefgh", strict=True)) + "name: [" + ", ".join(["*h"] * 9) + "]\n"


def test_yaml_bomb_is_refused_quickly(tmp_path):
    """Nested aliases (9^9 values once expanded, under 400 bytes): refused from the node graph, short error."""
    import time

    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    assert p.stat().st_size < 400
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than") as err:
        load_config(p)
    assert time.perf_counter() - t0 < 1.0 and len(str(err.value)) < 200


def test_many_aliases_refused(tmp_path):
    p = tmp_path / "aliases.yaml"
    p.write_text("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n")
    with pytest.raises(ConfigError, match="more than 100 YAML aliases"):
        load_config(p)


def test_duplicate_keys_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("train:\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(ConfigError, match="duplicate key 'epochs' \\(line 3\\)"):
        load_config(p)


def test_merge_keys_still_allowed(tmp_path):
    p = tmp_path / "merge.yaml"
    p.write_text("base: &b {epochs: 3, lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 4\n")
    from autorad.config import load_raw_config

    assert load_raw_config(p)["train"] == {"epochs": 4, "lr": 0.1}


def test_oversized_and_deep_files_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 50000 + "]" * 50000 + "\n")
    with pytest.raises(ConfigError, match="deeply|not valid"):
        load_config(deep)


def test_error_quotes_a_short_excerpt():
    with pytest.raises(ConfigError) as err:
        load_config("radiomics_logreg", ["name=[" + ",".join(["123456789"] * 2000) + "]"])
    assert "Input should be a valid string" in str(err.value) and len(str(err.value)) < 300


def test_the_fast_default_is_the_shipped_combination_with_one_seed():
    """`autorad_quality_fast` (the main job's fast default) differs from `autorad_quality` only in its seeds."""
    fast, full = load_config("autorad_quality_fast"), load_config("autorad_quality")
    assert fast.train.n_seeds == 1 and not fast.train.seed_ensemble and full.train.n_seeds == 3
    assert fast.model == full.model and fast.radiomics == full.radiomics and fast.data == full.data
    same = ("seed", "epochs", "lr", "batch_size", "soft_targets", "ordinal_weight")
    assert all(getattr(fast.train, k) == getattr(full.train, k) for k in same)
