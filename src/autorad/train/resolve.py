"""Configs as users and commands load them: the schema (:mod:`autorad.config`) and then the model kinds' rules.

The config schema knows nothing of the model kinds (it sits below them); this module, above both, adds what only
the registry (:mod:`autorad.train.kinds`) can say: that ``model.kind`` is registered, that ``model.image_tuning``
is only set for a kind that tunes image layers, and that every ``train.select.grid`` key is one the kind reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autorad.config import NOT_SELECTABLE, TRAIN_RUN_KEYS, ExperimentConfig, parse_config, read_config
from autorad.core.errors import ConfigError
from autorad.train.kinds import get_kind, kind_names, tunable_keys

__all__ = ["check_kind_rules", "config_from_dict", "load_config"]


def check_kind_rules(cfg: ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """``cfg`` when the model kinds accept it; else a :class:`ConfigError` naming ``source`` and the key."""
    m = cfg.model
    if m.kind not in kind_names():
        raise ConfigError(f"{source}: model.kind: unknown model kind {m.kind!r}; choose one of "
                          f"{', '.join(kind_names())}")
    if m.image_tuning != "none" and "model.image_tuning" not in get_kind(m.kind).hyperparameters:
        raise ConfigError(f"{source}: model.image_tuning is for the prompt learners; model kind {m.kind} has no "
                          "image layers to tune (set model.image_tuning: none)")
    grid = cfg.train.select.grid if cfg.train.select is not None else {}
    tunable = tunable_keys(m)
    for key in grid:
        if key in tunable:
            continue
        learned = key.startswith(("model.", "train.")) and key.split(".")[1] not in TRAIN_RUN_KEYS
        why = f"model.kind {m.kind}{' with fusion gbm' if m.fusion == 'gbm' else ''} does not use it" if learned \
            else NOT_SELECTABLE
        raise ConfigError(f"{source}: train.select.grid: key '{key}' cannot be selected: {why} (selectable: "
                          f"{', '.join(sorted(tunable)) or 'none'})")
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a plain dict as an :class:`ExperimentConfig`: the schema, then the model kinds' rules."""
    return check_kind_rules(parse_config(raw, source), source)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate a YAML experiment config (None: all defaults), then apply ``overrides``.

    A bare name (``autorad_lung``) refers to a config shipped with the package (``autorad/configs/*.yaml``).

    Args:
        path: a YAML file, a shipped config's name (``autorad configs list``) or None.
        overrides: ``section.key=value`` strings (values parsed as YAML), as ``--set`` gives them.

    Returns:
        The validated :class:`ExperimentConfig`; a :class:`ConfigError` names an unknown key (with the close
        ones), a bad value, or a setting the model kind does not accept.
    """
    return check_kind_rules(read_config(path, overrides), str(path or "defaults"))
