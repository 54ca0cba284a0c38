"""A trained run: the folder ``autorad train`` writes, as one object (the counterpart of :class:`Dataset`).

Run folder::

    config.yaml              the full config (defaults included)
    run.json                 what ran: model, encoders (real or random weights), data, versions, time, warnings
    log.txt                  the run's log messages (every rerun appends)
    folds/<k>/model/         the fold's model (safetensors + JSON); folds/<k>/predictions.parquet
    folds/<k>/state/         epoch checkpoint while a prompt learner trains (removed when the fold is done)
    folds/<k>/selection.json with train.select: every candidate's inner score and the winner (autorad.train.select)
    folds/<k>/selection/     its finished inner trainings' validation predictions (resume)
    predictions.parquet      every out-of-fold prediction
    metrics.json             pooled and per-fold metrics
    final/model/             the model trained on all nodules (used by evaluate and predict)
    final/state/             its epoch checkpoint while it trains
    final/selection.json     with train.select: the final model's selection on all nodules (and final/selection/)
    seeds/<s>/               with train.n_seeds > 1: each seed's complete run (autorad.train.seeds)
    report.html, figures/    the report

``evaluate`` writes the same layout (without folds/ and final/) for a model applied to another dataset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from autorad.config import ExperimentConfig, ModelConfig, dump_config
from autorad.core.errors import CheckpointError, InputError
from autorad.core.io import atomic_write_text, write_json, write_parquet
from autorad.train.checkpoint import META_FILE, checkpoint_exists, load_checkpoint, save_checkpoint
from autorad.train.resolve import config_from_dict

if TYPE_CHECKING:
    from autorad.train.kinds.base import Model


def save_model(directory: Path, model: Model, meta: dict[str, Any]) -> None:
    """Write a fitted model's checkpoint with the run's metadata."""
    tensors, model_meta = model.to_tensors()
    save_checkpoint(directory, tensors, {**meta, "model_state": model_meta})


def load_model(directory: Path) -> tuple[Model, dict[str, Any]]:
    """Load a model saved by :func:`save_model` (strict; refuses corrupt or mismatched checkpoints).

    Args:
        directory: a model folder (``final/model`` or ``folds/<k>/model`` of a run).

    Returns:
        ``(model, meta)``: the fitted model and its checkpoint metadata (config, radiomics names, versions).
    """
    from autorad.train.kinds import model_from_tensors

    tensors, meta = load_checkpoint(directory)
    try:
        mcfg = ModelConfig.model_validate(meta["config"]["model"])
        state = meta["model_state"]
    except Exception as err:
        raise CheckpointError(f"{directory}: checkpoint metadata is incomplete ({err})") from None
    return model_from_tensors(mcfg, tensors, state), meta


class Run:
    """The folder of one trained (or evaluated) run; every path inside it is spelled here and only here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.info_file = self.path / "run.json"
        self.log_file = self.path / "log.txt"
        self.predictions_file = self.path / "predictions.parquet"
        self.metrics_file = self.path / "metrics.json"
        self.report_file = self.path / "report.html"

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------ layout
    def fold_dir(self, fold: int) -> Path:
        return self.path / "folds" / str(fold)

    def fold_predictions_file(self, fold: int) -> Path:
        return self.fold_dir(fold) / "predictions.parquet"

    def model_dir(self, fold: int | None = None) -> Path:
        """``folds/<fold>/model`` or, for ``fold=None``, the final model's ``final/model``."""
        return (self.path / "final" if fold is None else self.fold_dir(fold)) / "model"

    def state_dir(self, fold: int | None = None) -> Path:
        """Where a fold's (or the final model's) epoch checkpoint lives while it trains."""
        return (self.path / "final" if fold is None else self.fold_dir(fold)) / "state"

    def selection_file(self, fold: int | None = None) -> Path:
        """The nested-selection record of a fold, or of the final model for ``fold=None``."""
        return (self.path / "final" if fold is None else self.fold_dir(fold)) / "selection.json"

    def selection_dir(self, fold: int | None = None) -> Path:
        """Where a fold's (or the final model's) finished inner trainings are kept while it selects."""
        return (self.path / "final" if fold is None else self.fold_dir(fold)) / "selection"

    def seed_dir(self, seed: int | str) -> Path:
        """One seed's complete run inside a multi-seed run."""
        return self.path / "seeds" / str(seed)

    # ------------------------------------------------------------------------------------------ models
    def model_done(self, fold: int | None, fingerprint: str) -> bool:
        """Whether the fold's (final) model is a complete checkpoint written for this exact config and dataset."""
        d = self.model_dir(fold)
        return checkpoint_exists(d) and json.loads((d / META_FILE).read_text()).get("fingerprint") == fingerprint

    def save_model(self, fold: int | None, model: Model, meta: dict[str, Any]) -> None:
        save_model(self.model_dir(fold), model, meta)

    def load_model(self, fold: int | None = None) -> tuple[Model, dict[str, Any]]:
        """The fold's model, or the final model for ``fold=None``, with its checkpoint metadata."""
        d = self.model_dir(fold)
        if fold is None and not d.is_dir():
            raise InputError(f"{self.path} is not a trained run with a final model ({self._why_no_final_model()})")
        return load_model(d)

    def _why_no_final_model(self) -> str:
        """Why final/model is missing, in words that say what to do: a run meant to have one was interrupted
        (rerun the same command: it resumes), a run configured without one needs another training."""
        from autorad.core.safe_yaml import load_yaml_file

        try:
            train = (load_yaml_file(self.config_file) or {}).get("train") or {}
        except Exception:  # no readable config.yaml: not a run autorad finished writing
            return "no final/model folder and no readable config.yaml"
        if train.get("final_model", True) is False:
            return "it was trained with train.final_model: false; train again with train.final_model: true"
        return ("its final model was not written: the training was interrupted; rerun the same autorad train "
                "(or autorad run) command to resume it")

    def model_config(self, meta: dict[str, Any]) -> ExperimentConfig:
        """The experiment config a model was trained with (from its checkpoint metadata)."""
        return config_from_dict(meta["config"], source=str(self.model_dir() / META_FILE))

    # ------------------------------------------------------------------------------------------ records
    def write_config(self, cfg: ExperimentConfig) -> None:
        atomic_write_text(self.config_file, dump_config(cfg))

    def write_predictions(self, predictions: pd.DataFrame, fold: int | None = None) -> None:
        write_parquet(predictions, self.predictions_file if fold is None else self.fold_predictions_file(fold))

    def read_predictions(self, fold: int | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.predictions_file if fold is None else self.fold_predictions_file(fold))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_file, metrics)

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_file.read_text())

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.info_file, info)

    def read_info(self) -> dict[str, Any]:
        return json.loads(self.info_file.read_text()) if self.info_file.is_file() else {}

    @contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Copy autorad's log messages (INFO and above) into ``log.txt`` while the block runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger("autorad")
        handler = logging.FileHandler(self.log_file, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        old_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            handler.close()
