"""``autorad sweep``: one config, one parameter, several values (e.g. the context-length sweep of the paper's
Table 2, or radiomic-class subsets), each trained under the same folds, then compared side by side.

A sweep reports each value's cross-validated result: choosing a value from its table chooses on the test folds.
To choose a setting, use ``train.select`` (nested validation inside the training folds, autorad.train.select).

The values' trainings are independent: with ``train.jobs`` > 1 (or ``train.executor: ray``) in the swept config
they run as tasks, after the radiomics and embeddings every value needs were computed here, once."""

from __future__ import annotations

import re
from pathlib import Path

from autorad.core.errors import ConfigError
from autorad.core.outputs import prepare_output_dir
from autorad.train.resolve import load_config


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:80] or "value"


def _train_as_tasks(dataset: str | Path, configs: list, outs: list[Path], jobs: int, executor: str,
                    address: str | None) -> None:
    """Train every config into its folder as a task, after the features they read (:func:`prepare_features`)."""
    import json

    from autorad.core.tasks import run_tasks
    from autorad.data.dataset import Dataset
    from autorad.train.entry import train_task
    from autorad.train.features import prepare_features

    ds = Dataset(dataset)
    prepare_features(ds, configs)
    tasks = [(str(ds.path), json.dumps(cfg.model_dump(mode="json")), str(o)) for cfg, o in zip(configs, outs,
                                                                                               strict=True)]
    list(run_tasks(train_task, tasks, jobs=jobs, executor=executor, address=address))


def sweep(dataset: str | Path, config: str | Path, param: str, values: list[str], out: str | Path,
          overrides: list[str] | None = None, overwrite: bool = False) -> str:
    """Train ``config`` once per value of ``param`` (values parsed as YAML) and return the comparison table.

    ``out`` is new or empty, an earlier sweep (resumed), or with ``overwrite`` a folder autorad wrote.

    Args:
        dataset: the dataset folder.
        config: a YAML file or a shipped config's name.
        param: the dotted key to vary (``model.n_ctx``).
        values: its values, as YAML strings.
        out: the sweep folder (one run per value, compare.md and compare.csv).
        overrides: ``section.key=value`` strings for every run.
        overwrite: let ``out`` replace an earlier autorad sweep.

    Returns:
        The comparison table (Markdown).
    """
    from autorad.evaluate.compare import compare
    from autorad.train.entry import train

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
    outs = [out / _slug(f"{param}={value}") for value, _ in configs]
    first = configs[0][1].train
    if len(configs) > 1 and (first.jobs > 1 or first.executor == "ray"):
        _train_as_tasks(dataset, [cfg for _, cfg in configs], outs, first.jobs, first.executor, first.ray_address)
        runs = outs
    else:
        runs = [train(dataset, cfg, o) for (_, cfg), o in zip(configs, outs, strict=True)]
    return compare(runs, out=out / "compare", overwrite=True)
