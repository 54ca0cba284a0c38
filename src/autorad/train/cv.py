"""``autorad train``: patient-level K-fold cross-validation using the dataset's folds, then a final model.

Run folder::

    config.yaml              the full config (defaults included)
    run.json                 what ran: model, encoders (real or random weights), data, versions, time, warnings
    folds/<k>/model.*        the fold's model (safetensors + JSON); folds/<k>/predictions.parquet
    folds/<k>/state/         epoch checkpoint while a prompt learner trains (removed when the fold is done)
    predictions.parquet      every out-of-fold prediction
    metrics.json             pooled and per-fold metrics
    final/model.*            the model trained on all nodules (used by evaluate and predict)
    report.html, figures/    the report

A rerun with the same config resumes: finished folds are loaded, an interrupted fold continues from its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES, __version__
from autorad.config import ExperimentConfig, dump_config
from autorad.data.dataset import Dataset
from autorad.data.folds import assign_folds
from autorad.errors import InputError
from autorad.io import atomic_write_text, write_json, write_parquet
from autorad.train.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from autorad.train.features import FeatureTable, build_features
from autorad.train.kinds import get_kind, make_model, model_from_tensors
from autorad.train.kinds.base import Model


def log(msg: str) -> None:
    """Progress messages go to stderr so stdout stays machine-readable."""
    print(f"[autorad] {msg}", file=sys.stderr, flush=True)


def _fingerprint(cfg: ExperimentConfig, ds: Dataset, extra: Any) -> str:
    relevant = cfg.model_dump(mode="json", exclude={"name", "out_dir"})
    return hashlib.sha256(json.dumps([relevant, ds.fingerprint, extra], sort_keys=True).encode()).hexdigest()


def _finished(model_dir: Path, fingerprint: str) -> bool:
    """Whether ``model_dir`` holds a complete checkpoint written for this exact config and dataset."""
    return checkpoint_exists(model_dir) and \
        json.loads((model_dir / "model.json").read_text()).get("fingerprint") == fingerprint


def check_trainable(table: FeatureTable, where: str) -> list[str]:
    """Refuse a dataset with fewer than two classes; return warnings for folds that miss a class."""
    present = sorted(set(table.y.tolist()))
    if len(present) < 2:
        only = CLASS_NAMES[present[0]] if present else "none"
        raise InputError(f"{where} has only one class ({only}); training needs at least two")
    warnings = []
    for k in sorted(set(table.folds.tolist())):
        for part, rows in (("test", table.folds == k), ("training", table.folds != k)):
            missing = [CLASS_NAMES[c] for c in range(3) if not np.any(table.y[rows] == c)]
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


def validation_split(train: FeatureTable, fraction: float, seed: int) -> tuple[FeatureTable, FeatureTable]:
    """A patient-level, label-stratified split of the training rows (never touches the test fold)."""
    k = max(2, round(1 / fraction))
    inner = assign_folds(train.patient_ids, [CLASS_NAMES[i] for i in train.y], k, seed + 7)
    return train.subset(inner != 0), train.subset(inner == 0)


def save_model(directory: Path, model: Model, meta: dict[str, Any]) -> None:
    """Write a fitted model's checkpoint with the run's metadata."""
    tensors, model_meta = model.to_tensors()
    save_checkpoint(directory, tensors, {**meta, "model_state": model_meta})


def load_model(directory: Path) -> tuple[Model, dict[str, Any]]:
    """Load a model saved by :func:`save_model` (strict; refuses corrupt or mismatched checkpoints)."""
    from autorad.config import ModelConfig
    from autorad.errors import CheckpointError

    tensors, meta = load_checkpoint(directory)
    try:
        mcfg = ModelConfig.model_validate(meta["config"]["model"])
        state = meta["model_state"]
    except Exception as err:
        raise CheckpointError(f"{directory}: checkpoint metadata is incomplete ({err})") from None
    return model_from_tensors(mcfg, tensors, state), meta


def _fit_one(cfg: ExperimentConfig, train: FeatureTable, state_dir: Path, fold: int) -> Model:
    val = None
    if cfg.train.val_fraction > 0:
        train, val = validation_split(train, cfg.train.val_fraction, cfg.train.seed + fold)
    model = make_model(cfg.model)
    model.fit(train, cfg.train, val=val, state_dir=state_dir, fold=fold)
    return model


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


def train(dataset: str | Path, cfg: ExperimentConfig, out: str | Path) -> Path:
    """Cross-validate ``cfg`` on ``dataset``, train the final model, write metrics and the report into ``out``."""
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line
    from autorad.evaluate.report import write_report

    t0 = time.time()
    out = Path(out)
    ds = Dataset(dataset)
    log(f"{cfg.name}: model {cfg.model.kind} on {ds.path} ({len(ds)} nodules)")
    table = build_features(ds, cfg)
    warnings = check_trainable(table, f"dataset {ds.path}")
    out.mkdir(parents=True, exist_ok=True)  # only once the data is known to be trainable: no half-written run
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    for w in warnings:
        log(f"warning: {w}")
    base_meta = {"autorad_version": __version__, "config": cfg.model_dump(mode="json"),
                 "class_names": list(CLASS_NAMES), "radiomics_names": table.radiomics_names,
                 "dataset": {"source": ds.info.get("source"), "labels": ds.info.get("labels"),
                             "crop": ds.info.get("crop")}}
    parts = []
    folds = sorted(set(table.folds.tolist()))
    for k in folds:
        fold_dir = out / "folds" / str(k)
        fp = _fingerprint(cfg, ds, ["fold", k])
        pred_file = fold_dir / "predictions.parquet"
        if pred_file.is_file() and _finished(fold_dir / "model", fp):
            log(f"fold {k}: already done, loaded")
            parts.append(pd.read_parquet(pred_file))
            continue
        tr, te = table.subset(table.folds != k), table.subset(table.folds == k)
        tk = time.time()
        model = _fit_one(cfg, tr, fold_dir / "state", k)
        pred = prediction_frame(te, model.predict_proba(te))
        save_model(fold_dir / "model", model, {**base_meta, "fingerprint": fp, "fold": k})
        write_parquet(pred, pred_file)
        shutil.rmtree(fold_dir / "state", ignore_errors=True)
        parts.append(pred)
        acc = float((pred["pred"] == pred["label"]).mean())
        log(f"fold {k}: train {len(tr)}, test {len(te)}, accuracy {acc:.3f} ({time.time() - tk:.1f} s)")
    predictions = pd.concat(parts, ignore_index=True).sort_values(["fold", "nodule_id"], kind="stable")
    predictions = predictions.reset_index(drop=True)
    write_parquet(predictions, out / "predictions.parquet")
    metrics = compute_metrics(predictions)
    write_json(out / "metrics.json", metrics)
    log(f"cross-validation: {metrics_summary_line(metrics)}")

    if cfg.train.final_model:
        fp = _fingerprint(cfg, ds, ["final"])
        final_dir = out / "final" / "model"
        if not _finished(final_dir, fp):
            log("final model on all nodules")
            model = _fit_one(cfg, table, out / "final" / "state", -1)
            save_model(final_dir, model, {**base_meta, "fingerprint": fp, "fold": None})
            shutil.rmtree(out / "final" / "state", ignore_errors=True)

    run_time = time.time() - t0
    meta = run_metadata(cfg, ds, warnings, run_time)
    write_json(out / "run.json", meta)
    write_report(out, metrics, predictions, meta)
    return out


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
