"""Fitting one model: the rule of what a trained model depends on (:func:`fit_key`), the trainability check, the
patient-level inner splits, the prediction table, and :func:`fit_model` itself. Every orchestration above it
(cross-validation, seeds, selection, sweeps) fits through these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.config import POST_TRAINING_KEYS, ExperimentConfig
from autorad.core.errors import InputError
from autorad.core.io import hash_json
from autorad.data.dataset import Dataset
from autorad.data.folds import assign_folds
from autorad.train.kinds import make_model
from autorad.train.kinds.base import Model
from autorad.train.table import FeatureTable

# how a training is scheduled (where and how many at once), not what it learns
SCHEDULING_KEYS = ("executor", "jobs", "ray_address")


def model_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dump without what changes no trained model: ``name``, ``out_dir``, the scheduling keys of
    ``train`` (:data:`SCHEDULING_KEYS`) and its :data:`~autorad.config.POST_TRAINING_KEYS` (e.g. a temperature
    fitted afterwards on the out-of-fold predictions), so switching those keeps every model."""
    out = {k: v for k, v in raw.items() if k not in ("name", "out_dir")}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in (*SCHEDULING_KEYS, *POST_TRAINING_KEYS)}
    return out


def fit_key(cfg: ExperimentConfig, ds: Dataset, *where: Any) -> str:
    """The one key of a trained model (an outer fold's, the final model's, an inner selection fit's): what it
    learned from (:func:`model_settings` of ``cfg``, the dataset's fingerprint) and ``where`` (e.g. ``"fold", 2``;
    an inner fit adds its rows), never how or where it was scheduled."""
    return hash_json([model_settings(cfg.model_dump(mode="json")), ds.fingerprint, list(where)])


def check_trainable(table: FeatureTable, where: str) -> list[str]:
    """Refuse a dataset with fewer than two classes; return warnings for folds that miss a class."""
    present = sorted(set(table.y.tolist()))
    if len(present) < 2:
        only = CLASS_NAMES[present[0]] if present else "none"
        raise InputError(f"{where} has only one class ({only}); training needs at least two")
    warnings = []
    for k in sorted(set(table.folds.tolist())):
        for part, rows in (("test", table.folds == k), ("training", table.folds != k)):
            missing = [c for i, c in enumerate(CLASS_NAMES) if not np.any(table.y[rows] == i)]
            if missing:
                warnings.append(f"fold {k}: no {', '.join(missing)} nodule in its {part} part")
    return warnings


def prediction_frame(table: FeatureTable, proba: np.ndarray) -> pd.DataFrame:
    """Predictions in the layout metrics, reports and compare read."""
    df = pd.DataFrame({"nodule_id": table.nodule_ids, "patient_id": table.patient_ids,
                       "fold": table.folds.astype(np.int64), "label": [CLASS_NAMES[i] for i in table.y]})
    for i, c in enumerate(CLASS_NAMES):
        df[f"prob_{c}"] = proba[:, i]
    df["pred"] = [CLASS_NAMES[i] for i in proba.argmax(axis=1)]
    if table.radiomics_status is not None:
        df["radiomics_status"] = table.radiomics_status
    return df


def inner_folds(train: FeatureTable, n: int, seed: int) -> np.ndarray:
    """Patient-level, label-stratified inner folds (0..n-1) of the training rows (never touches the test fold);
    the one rule behind ``train.val_fraction`` and ``train.select``."""
    return assign_folds(train.patient_ids, [CLASS_NAMES[i] for i in train.y], n, seed)


def split_folds(fraction: float) -> int:
    """How many inner folds a single validation split of ``fraction`` is cut from (inner fold 0 validates)."""
    return max(2, round(1 / fraction))


def validation_split(train: FeatureTable, fraction: float, seed: int) -> tuple[FeatureTable, FeatureTable]:
    """A patient-level, label-stratified split of the training rows (never touches the test fold)."""
    inner = inner_folds(train, split_folds(fraction), seed + 7)
    return train.subset(inner != 0), train.subset(inner == 0)


def fit_model(cfg: ExperimentConfig, train: FeatureTable, state_dir: Path | None, fold: int) -> Model:
    """A fresh ``cfg.model`` fitted on ``train`` as fold ``fold`` (-1: the final model), keeping the best epoch on a
    patient-level validation split when ``train.val_fraction`` > 0."""
    val = None
    if cfg.train.val_fraction > 0:
        train, val = validation_split(train, cfg.train.val_fraction, cfg.train.seed + fold)
    model = make_model(cfg.model)
    model.fit(train, cfg.train, val=val, state_dir=state_dir, fold=fold)
    return model
