"""``autorad sweep``: one config, one parameter, several values (e.g. the context-length sweep of the paper's
Table 2, or radiomic-class subsets), each trained under the same folds, then compared side by side."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from autorad.config import load_config
from autorad.errors import ConfigError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:80] or "value"


def sweep(dataset: str | Path, config: str | Path, param: str, values: list[str], out: str | Path,
          overrides: list[str] | None = None) -> str:
    """Train ``config`` once per value of ``param`` (values parsed as YAML) and return the comparison table."""
    from autorad.evaluate.compare import compare
    from autorad.train.cv import train

    if not values:
        raise ConfigError("sweep needs at least one value")
    out = Path(out)
    runs = []
    for value in values:
        yaml.safe_load(value)  # validate early
        cfg = load_config(config, [*(overrides or []), f"{param}={value}"])
        cfg.name = f"{cfg.name} {param}={value}"
        runs.append(train(dataset, cfg, out / _slug(f"{param}={value}")))
    return compare(runs, out=out / "compare")
