"""``autorad train``: the one entry that trains any config on a dataset into a run folder.

One seed (``train.n_seeds`` 1) is :func:`autorad.train.cv.train_single`; several seeds under the same folds are
:func:`autorad.train.seeds.train_seeds`, whose seeds are single-seed runs. Nothing below this module calls it back:
the orchestration is a tree (entry -> seeds -> cv -> fitting), not a recursion.
"""

from __future__ import annotations

from pathlib import Path

from autorad.config import ExperimentConfig
from autorad.core.devices import resolve_device
from autorad.train.cv import train_single
from autorad.train.run import load_model
from autorad.train.seeds import train_seeds

__all__ = ["as_task_config", "load_model", "train", "train_task"]


def train(dataset: str | Path, cfg: ExperimentConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Cross-validate ``cfg`` on ``dataset``, train the final model, write metrics and the report into ``out``.

    ``out`` must be new or empty, an earlier run of the same config (resumed), or with ``overwrite`` any run
    folder autorad wrote (emptied first). Checked before any work.

    Args:
        dataset: the dataset folder (written by :func:`autorad.data.ingest.ingest`).
        cfg: the experiment config (:func:`autorad.train.resolve.load_config`).
        out: the run folder.
        overwrite: let ``out`` replace an earlier autorad run.

    Returns:
        The run folder's path.
    """
    resolve_device(cfg.train.device)  # a missing GPU is reported before any long computation
    if cfg.train.n_seeds > 1:
        return train_seeds(dataset, cfg, out, overwrite)
    return train_single(dataset, cfg, out, overwrite)


def as_task_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as a run that is itself one task of a batch (a value of a sweep): scheduled in its worker alone
    (``jobs`` 1, local), so tasks never start tasks. What it learns is unchanged (scheduling is no part of
    :func:`autorad.train.fitting.fit_key`)."""
    one = cfg.model_copy(deep=True)
    one.train.executor, one.train.jobs, one.train.ray_address = "local", 1, None
    return one


def train_task(task: tuple[str, str, str]) -> str:
    """One whole training run of any config as a task (a value of a sweep; process pool or Ray): dataset path,
    config JSON and output folder in, the run folder out. The features must be cached already."""
    import json

    from autorad.train.resolve import config_from_dict

    dataset, cfg_json, out = task
    return str(train(dataset, as_task_config(config_from_dict(json.loads(cfg_json))), out))
