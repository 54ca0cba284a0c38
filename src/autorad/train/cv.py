"""One seed's training run: patient-level K-fold cross-validation using the dataset's folds, then a final model.

:func:`train_single` reads as its stages: features -> :func:`cross_validate` -> :func:`fit_final` ->
:func:`write_run_report`. Each stage writes into the :class:`~autorad.train.run.Run` folder (see there for the
layout) and can run alone. A rerun with the same config resumes: finished folds are loaded, an interrupted fold
continues from its last epoch. A folder holding a run of another config is refused unless ``overwrite`` (which
empties it first); a folder autorad did not make is never used (:func:`autorad.core.outputs.prepare_output_dir`).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES, __version__
from autorad.config import ExperimentConfig, dump_config
from autorad.core.devices import resolve_device
from autorad.core.errors import InputError
from autorad.core.outputs import prepare_output_dir, read_marker
from autorad.data.dataset import Dataset
from autorad.train.features import build_features, check_encoders
from autorad.train.fitting import check_trainable, fit_key, fit_model, model_settings, prediction_frame
from autorad.train.kinds import get_kind
from autorad.train.run import Run
from autorad.train.table import FeatureTable

log = logging.getLogger(__name__)

__all__ = ["cross_validate", "fit_final", "train_single", "write_run_report"]


def encoder_info(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Which encoders the model used and whether their weights are real (for run.json and the report)."""
    from autorad.encoders.registry import get_entry

    kind = get_kind(cfg.model.kind)
    roles = [("vision", cfg.model.vision_encoder, cfg.model.vision_weights)] if kind.needs_image else []
    if kind.needs_text:
        roles.append(("text", cfg.model.text_encoder, cfg.model.text_weights))
    infos = []
    for role, name, weights in roles:
        e = get_entry(name)
        random = bool(getattr(e, "random_weights", False))
        infos.append({"role": role, "name": name, "kind": str(getattr(e, "kind", "")),
                      "weights": "random" if random else "real", "source": weights or str(getattr(e, "source", ""))})
    return infos


def check_resumable(run: Run, cfg: ExperimentConfig, overwrite: bool) -> None:
    """Refuse to resume into a run folder whose config differs from ``cfg`` (unless ``overwrite``)."""
    import yaml

    if overwrite or read_marker(run.path) is None or not run.config_file.is_file():
        return
    try:
        old = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        old = None
    new = cfg.model_dump(mode="json")
    if not isinstance(old, dict) or model_settings(old) != model_settings(new):
        raise InputError(f"--out {run.path} holds a run of another config; pass --overwrite to replace it, "
                         f"or choose another folder")


def _checkpoint_meta(cfg: ExperimentConfig, ds: Dataset, table: FeatureTable) -> dict[str, Any]:
    """What every saved model of this run records besides its tensors."""
    return {"autorad_version": __version__, "config": cfg.model_dump(mode="json"),
            "class_names": list(CLASS_NAMES), "radiomics_names": table.radiomics_names,
            "dataset": {"source": ds.info.get("source"), "labels": ds.info.get("labels"),
                        "crop": ds.info.get("crop")}}


def folds_as_tasks(cfg: ExperimentConfig) -> bool:
    """Whether the folds train as tasks: with ``train.jobs`` > 1 or the Ray executor; not under ``train.select``,
    which runs its inner trainings as tasks. (A run that is itself a task, a seed or a sweep value, is scheduled
    with ``jobs`` 1 on the local executor, :func:`autorad.train.entry.as_task_config`: tasks never start tasks.)"""
    if cfg.train.select is not None:
        return False
    return cfg.train.executor == "ray" or cfg.train.jobs > 1


def fit_fold(run: Run, ds: Dataset, table: FeatureTable, cfg: ExperimentConfig, k: int) -> pd.DataFrame:
    """Train the model of fold ``k`` on the other folds, save it and its predictions of fold ``k``; return them."""
    tr, te = table.subset(table.folds != k), table.subset(table.folds == k)
    tk = time.time()
    chosen = cfg
    if cfg.train.select is not None:  # nested: only the training rows choose (autorad.train.select)
        from autorad.train.select import select_config

        chosen = select_config(run, ds, table, np.flatnonzero(table.folds != k), cfg, k)
    model = fit_model(chosen, tr, run.state_dir(k), k)
    pred = prediction_frame(te, model.predict_proba(te))
    history = model.history.as_dict() if model.history is not None else None  # inner validation, if any
    run.save_model(k, model, {**_checkpoint_meta(cfg, ds, table), "config": chosen.model_dump(mode="json"),
                              "fingerprint": fit_key(cfg, ds, "fold", k), "fold": k, "history": history})
    run.write_predictions(pred, k)
    shutil.rmtree(run.state_dir(k), ignore_errors=True)
    acc = float((pred["pred"] == pred["label"]).mean())
    log.info("fold %d: train %d, test %d, accuracy %.3f (%.1f s)", k, len(tr), len(te), acc, time.time() - tk)
    return pred


def fit_fold_task(task: tuple[str, str, str, int]) -> int:
    """One fold as a task (process pool or Ray; plain values in): the worker reads the dataset's cached features,
    which the parent computed, trains and saves the fold into the run folder, and returns the fold."""
    import json

    from autorad.train.resolve import config_from_dict

    dataset, cfg_json, run_path, k = task
    ds, cfg, run = Dataset(dataset), config_from_dict(json.loads(cfg_json)), Run(run_path)
    with run.logging_to_file():
        fit_fold(run, ds, build_features(ds, cfg), cfg, k)
    return k


def cross_validate(run: Run, ds: Dataset, table: FeatureTable, cfg: ExperimentConfig) -> pd.DataFrame:
    """Stage: train one model per fold on the other folds, predict its fold; write and return every prediction.

    Folds already done are loaded. The others train in turn, or as :func:`fit_fold_task` tasks
    (:func:`folds_as_tasks`); a fold's model depends only on its seed and fold, so both ways give the same run.
    """
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line

    folds = sorted(set(table.folds.tolist()))
    todo = []
    for k in folds:
        if run.fold_predictions_file(k).is_file() and run.model_done(k, fit_key(cfg, ds, "fold", k)):
            log.info("fold %d: already done, loaded", k)
        else:
            todo.append(k)
    if folds_as_tasks(cfg) and len(todo) > 1:
        import json

        from autorad.core.tasks import run_tasks

        log.info("%d folds as tasks (%s, jobs %d)", len(todo), cfg.train.executor, cfg.train.jobs)
        cfg_json = json.dumps(cfg.model_dump(mode="json"))
        list(run_tasks(fit_fold_task, [(str(ds.path), cfg_json, str(run.path), k) for k in todo],
                       jobs=cfg.train.jobs, executor=cfg.train.executor, address=cfg.train.ray_address))
    else:
        for k in todo:
            fit_fold(run, ds, table, cfg, k)
    predictions = pd.concat([run.read_predictions(k) for k in folds], ignore_index=True)
    predictions = predictions.sort_values(["fold", "nodule_id"], kind="stable").reset_index(drop=True)
    run.write_predictions(predictions)
    metrics = compute_metrics(predictions)
    run.write_metrics(metrics)
    log.info("cross-validation: %s", metrics_summary_line(metrics))
    return predictions


def fit_final(run: Run, ds: Dataset, table: FeatureTable, cfg: ExperimentConfig) -> None:
    """Stage: train the final model on every nodule (unless an identical one is already there)."""
    fp = fit_key(cfg, ds, "final")
    if run.model_done(None, fp):
        log.info("final model: already done")
        return
    log.info("final model on all %d nodules", len(table))
    chosen = cfg
    if cfg.train.select is not None:
        from autorad.train.select import select_config

        chosen = select_config(run, ds, table, np.arange(len(table)), cfg, None)
    model = fit_model(chosen, table, run.state_dir(None), -1)
    run.save_model(None, model, {**_checkpoint_meta(cfg, ds, table), "config": chosen.model_dump(mode="json"),
                                 "fingerprint": fp, "fold": None})
    shutil.rmtree(run.state_dir(None), ignore_errors=True)


def write_run_report(run: Run, cfg: ExperimentConfig, ds: Dataset, warnings: list[str], run_time: float,
                     extra: dict[str, Any] | None = None) -> None:
    """Stage: run.json and the HTML report from the run's predictions and metrics."""
    from autorad.evaluate.report import write_report

    meta = {**run_metadata(cfg, ds, warnings, run_time), **(extra or {})}
    run_id = run.read_info().get("run_id")  # a rerun keeps the run's identity (autorad.train.record)
    run.write_info({**meta, "run_id": run_id} if run_id else meta)
    write_report(run.path, run.read_metrics(), run.read_predictions(), meta)


def train_single(dataset: str | Path, cfg: ExperimentConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Cross-validate ``cfg`` (one seed) on ``dataset``, train the final model, write metrics and the report into
    ``out`` (:func:`autorad.train.entry.train` is the entry for any config).

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
    if cfg.train.n_seeds != 1:
        raise ValueError("train_single trains one seed; autorad.train.entry.train runs train.n_seeds > 1")
    t0 = time.time()
    resolve_device(cfg.train.device)  # a missing GPU is reported before any long computation
    run = Run(out)
    prepare_output_dir(run.path, kind="run", inputs=(dataset,), overwrite=overwrite, resume=True, create=False)
    check_resumable(run, cfg, overwrite)
    ds = Dataset(dataset)
    log.info("%s: model %s on %s (%d nodules)", cfg.name, cfg.model.kind, ds.path, len(ds))
    check_encoders(ds, cfg)  # missing weights: one error now, not after the radiomics
    table = build_features(ds, cfg)
    warnings = check_trainable(table, f"dataset {ds.path}")
    # only once the data is known to be trainable: no half-written run
    prepare_output_dir(run.path, kind="run", inputs=(dataset,), overwrite=overwrite, resume=not overwrite)
    with run.logging_to_file():
        run.write_config(cfg)
        for w in warnings:
            log.warning(w)
        cross_validate(run, ds, table, cfg)
        if cfg.train.calibration != "none":  # from the out-of-fold predictions only: before the final model
            from autorad.train.calibration import calibrate_run

            calibrate_run(run, report=False)
        if cfg.train.final_model:
            fit_final(run, ds, table, cfg)
        if cfg.train.select is not None:
            from autorad.train.select import attach_selection_summary

            attach_selection_summary(run, cfg)
        write_run_report(run, cfg, ds, warnings, time.time() - t0)
        if cfg.train.final_model:  # metrics.json is final: seal it, the run id and the training set into the model
            from autorad.train.record import attach_run_record

            attach_run_record(run, ds)
    return run.path


def train_single_task(task: tuple[str, str, str]) -> str:
    """One seed's whole training run as a task (of ``train.n_seeds``; process pool or Ray): dataset path, config
    JSON and output folder in, the run folder out. The features must be cached already."""
    import json

    from autorad.train.resolve import config_from_dict

    dataset, cfg_json, out = task
    return str(train_single(dataset, config_from_dict(json.loads(cfg_json)), out))


def run_metadata(cfg: ExperimentConfig, ds: Dataset, warnings: list[str], run_time: float) -> dict[str, Any]:
    """What the report and ``compare`` show about a run."""
    return {
        "name": cfg.name, "model_kind": cfg.model.kind, "autorad_version": __version__,
        "config_yaml": dump_config(cfg), "encoders": encoder_info(cfg),
        "data": {"source": ds.info.get("source"), "path": ds.path.name,
                 "label_rule": ds.info.get("labels", {}).get("rule"),
                 "min_readers": ds.info.get("labels", {}).get("min_readers"), "n_nodules": len(ds),
                 "class_counts": ds.class_counts, "n_folds": int(ds.manifest["fold"].nunique())},
        "run_time_s": round(run_time, 1), "warnings": warnings,
    }
