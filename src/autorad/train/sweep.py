"""``autorad sweep``: one config, one parameter, several values (e.g. the context-length sweep of the paper's
Table 2, or radiomic-class subsets), each trained under the same folds, then compared side by side.

A sweep reports each value's cross-validated result: choosing a value from its table chooses on the test folds.
To choose a setting, use ``train.select`` (nested validation inside the training folds, autorad.train.select)."""

from __future__ import annotations

import re
from pathlib import Path

from autorad.config import load_config
from autorad.errors import ConfigError
from autorad.outputs import prepare_output_dir


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:80] or "value"


def sweep(dataset: str | Path, config: str | Path, param: str, values: list[str], out: str | Path,
          overrides: list[str] | None = None, overwrite: bool = False) -> str:
    """Train ``config`` once per value of ``param`` (values parsed as YAML) and return the comparison table.

    ``out`` is new or empty, an earlier sweep (resumed), or with ``overwrite`` a folder autorad wrote.
    """
    from autorad.evaluate.compare import compare
    from autorad.train.cv import train

    if not values:
        raise ConfigError("sweep needs at least one value")
    out = Path(out)
    configs = []
    for value in values:  # every config is validated before anything is written
        cfg = load_config(config, [*(overrides or []), f"{param}={value}"])
        cfg.name = f"{cfg.name} {param}={value}"
        configs.append((value, cfg))
    config_path = Path(config) if Path(config).exists() else None
    prepare_output_dir(out, kind="sweep", inputs=(dataset, config_path), overwrite=overwrite, resume=not overwrite)
    runs = [train(dataset, cfg, out / _slug(f"{param}={value}")) for value, cfg in configs]
    return compare(runs, out=out / "compare", overwrite=True)
