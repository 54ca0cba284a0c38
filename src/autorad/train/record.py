"""The run record sealed into a final model: its cross-validated metrics, its identity and what it trained on.

``final/model/model.json`` carries ``run_record`` (covered by the checkpoint's ``meta_sha256``, see
:mod:`autorad.train.checkpoint`), written by :func:`attach_run_record` once the run's metrics are final::

    run_id          random id of the run, also written into run.json ("run_id")
    summary         n, n_folds, pooled, fold_mean, fold_std: what predict, serve and the reports show
    metrics         the whole metrics.json as it was at sealing (calibration, seeds, selection included);
                    None when it is larger than MAX_METRICS_BYTES (the summary and the checksum remain)
    metrics_sha256  SHA-256 of metrics.json's content (key-sorted JSON, so re-indenting it changes nothing)
    training_set    every nodule the final model trained on: its dataset's fingerprint, the counts, and the
                    SHA-256 of each patient id and series UID as the dataset stores them

What is displayed is then what was sealed: :func:`read_run_record` gives the sealed summary and a warning when
metrics.json disagrees with it (edited, or from another run) or when the model's run id is not the one in
run.json (a ``final/model`` copied from another run). A model sealed before this record existed still loads; its
metrics come from metrics.json and are marked unsealed.

Why unsalted SHA-256 of the ids: the dataset already holds public LIDC ids (``LIDC-IDRI-NNNN``), TCIA UIDs or
keyed pseudonyms (:mod:`autorad.core.pseudonym`), none of which a hash has to hide; hashing only avoids storing the
values a second time. The same stored value hashes the same way on every machine, so the overlap of a dataset or
a CT series with the training set (:func:`dataset_overlap`, :func:`case_overlap_warnings`) is a set lookup. Keyed
pseudonyms of another installation (another key) do not match: overlap of non-public ids is found only on the
machine (key) that ingested the training data.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from autorad.core.errors import CheckpointError, InputError
from autorad.core.io import hash_json, json_roundtrip
from autorad.data.dataset import Dataset
from autorad.train.checkpoint import load_checkpoint, reseal_meta
from autorad.train.run import Run

RECORD_KEY = "run_record"
RECORD_VERSION = 1
MAX_METRICS_BYTES = 1_000_000
HASH_RULE = "sha256 of the value as the dataset stores it (UTF-8, no salt)"
SUMMARY_KEYS = ("n", "pooled", "fold_mean", "fold_std", "calibration")
UNSEALED_WARNING = ("the cross-validated metrics shown come from metrics.json, which this model's seal does not "
                    "cover (a run sealed before autorad recorded them in the model): they are unverified")


def id_hash(value: str) -> str:
    """SHA-256 (hex) of a stored patient id or series UID (see the module docstring for why without salt)."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def _hashes(values: Any) -> list[str]:
    return sorted({id_hash(v) for v in (str(x) for x in values) if v and v != "nan"})


def metrics_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """What is displayed of a run's metrics: n, the number of folds, pooled metrics, fold mean and std, and the
    calibration block (its temperature is what the model's probabilities are scaled by) when there is one."""
    out = {k: metrics.get(k) for k in SUMMARY_KEYS if k != "calibration" or metrics.get(k) is not None}
    out["n_folds"] = len(metrics.get("per_fold") or {})
    return json_roundtrip(out)


def training_set(ds: Dataset) -> dict[str, Any]:
    """The training-set record of a dataset: counts and the hashed patient ids and series UIDs."""
    m = ds.manifest
    return {"dataset_fingerprint": ds.fingerprint, "n_nodules": len(m), "n_patients": int(m["patient_id"].nunique()),
            "hash": HASH_RULE, "patients": _hashes(m["patient_id"]), "series": _hashes(m["series_uid"])}


# ------------------------------------------------------------------------------------------------ writing


def find_training_dataset(run: Run, meta: dict[str, Any]) -> Dataset:
    """The dataset a finished run trained on, from the run folder alone: ``RUN/dataset``, the folder beside the run
    named in run.json (``autorad run`` and the usual layout), or the config's ``data.path``; checked against the
    run's out-of-fold predictions (the same nodules and patients)."""
    info = run.read_info()
    named = str((info.get("data") or {}).get("path") or "")
    cfg_path = str(((meta.get("config") or {}).get("data") or {}).get("path") or "")
    candidates = [run.path / "dataset"] + ([run.path.parent / named] if named else []) + \
        ([Path(cfg_path)] if cfg_path else [])
    for c in candidates:
        if (c / "manifest.parquet").is_file() and (c / "dataset.json").is_file():
            ds = Dataset(c)
            if _same_nodules(run, ds):
                return ds
    raise InputError(f"{run.path}: cannot find the dataset this run trained on (looked in RUN/dataset, beside the "
                     f"run and at the config's data.path); pass it as dataset=")


def _same_nodules(run: Run, ds: Dataset) -> bool:
    """Whether ``ds`` holds exactly the nodules (and their patients) of the run's out-of-fold predictions."""
    if not run.predictions_file.is_file():
        raise InputError(f"{run.path}: no predictions.parquet (did cross-validation finish?)")
    pred = pd.read_parquet(run.predictions_file, columns=["nodule_id", "patient_id"])
    ours = set(zip(pred["nodule_id"].astype(str), pred["patient_id"].astype(str), strict=True))
    theirs = set(zip(ds.manifest["nodule_id"].astype(str), ds.manifest["patient_id"].astype(str), strict=True))
    return ours == theirs


def attach_run_record(run: Run | str | Path, dataset: Dataset | str | Path | None = None) -> dict[str, Any]:
    """Seal the run's record (see the module docstring) into ``final/model``; return the record.

    Call it when metrics.json is final (after cross-validation, the final model and anything that adds to
    metrics.json). Works on a finished run trained before records existed: the dataset is found from the run
    folder (:func:`find_training_dataset`) unless given, and must hold exactly the run's cross-validated
    nodules. Idempotent: a second call with nothing changed rewrites nothing. The run id is the one in run.json,
    else the one already sealed, else a new one (then written into run.json). Refused
    (:class:`~autorad.core.errors.CheckpointError`) when the model was sealed by another run (another run id, or
    another training set).
    """
    run = run if isinstance(run, Run) else Run(run)
    model_dir = run.model_dir()
    try:
        _, meta = load_checkpoint(model_dir)
    except CheckpointError:
        if not model_dir.is_dir():
            raise InputError(f"{run.path} has no final model (final/model) to seal a record into") from None
        raise
    if not run.metrics_file.is_file():
        raise InputError(f"{run.path}: no metrics.json to seal (did cross-validation finish?)")
    metrics = json.loads(run.metrics_file.read_text(encoding="utf-8"))
    old = meta.get(RECORD_KEY) or {}
    if dataset is None and old.get("training_set"):
        trained = old["training_set"]  # resealing (new metrics, e.g. a calibration): the training set stays
    else:
        if dataset is None:
            ds = find_training_dataset(run, meta)
        else:
            ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
            if not _same_nodules(run, ds):
                raise InputError(f"dataset {ds.path.name} does not hold the nodules {run.path.name} was trained on")
        trained = training_set(ds)
        if old and (old.get("training_set") or {}).get("patients") != trained["patients"]:
            raise CheckpointError(f"{model_dir} records another training set than {ds.path.name}; not resealing it")
    info = run.read_info()
    run_id = str(info.get("run_id") or old.get("run_id") or uuid.uuid4().hex)
    if old and old.get("run_id") != run_id:
        raise CheckpointError(f"{model_dir} was sealed by another run (run id {old.get('run_id')}, this run.json "
                              f"says {run_id}); not resealing it")
    body = json_roundtrip(metrics)
    small = len(json.dumps(body)) <= MAX_METRICS_BYTES
    record = {"record_version": RECORD_VERSION, "run_id": run_id, "summary": metrics_summary(body),
              "metrics": body if small else None, "metrics_sha256": hash_json(body), "training_set": trained}
    if old != record:
        reseal_meta(model_dir, {**meta, RECORD_KEY: record})  # the model first: a crash leaves run.json to redo
    if info.get("run_id") != run_id:
        run.write_info({**info, "run_id": run_id})
    return record


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class RecordCheck:
    """What a run's sealed record says, and the warnings about the files beside the model."""

    summary: dict[str, Any] | None  # metrics_summary layout; None when no metrics at all
    sealed: bool
    warnings: list[str] = field(default_factory=list)


def read_run_record(run: Run, meta: dict[str, Any]) -> RecordCheck:
    """The metrics to show for a loaded final model (``meta``: its checkpoint metadata) and what disagrees.

    Sealed record: its summary, with a warning when metrics.json differs from the sealed content or run.json names
    another run id. No record: metrics.json's summary, unsealed, with a warning.
    """
    record = meta.get(RECORD_KEY)
    on_disk = _read_json(run.metrics_file)
    if not isinstance(record, dict):
        if not isinstance(on_disk, dict):
            return RecordCheck(None, False, [] if on_disk is None else ["metrics.json is unreadable"])
        return RecordCheck(metrics_summary(on_disk), False, [UNSEALED_WARNING])
    warnings = []
    if on_disk is not None and (on_disk is UNREADABLE or
                                hash_json(json_roundtrip(on_disk)) != record.get("metrics_sha256")):
        warnings.append("metrics.json beside this model differs from the metrics sealed into the model (edited, or "
                        "from another run): the sealed cross-validated metrics are shown, not metrics.json")
    info = _read_json(run.info_file)
    if isinstance(info, dict) and info.get("run_id") != record.get("run_id"):
        warnings.append("this final/model was sealed by another run than the one whose folder holds it (run ids "
                        "differ): the files beside it (metrics.json, report.html) describe another model; its "
                        "own sealed cross-validated metrics are shown")
    return RecordCheck(record.get("summary"), True, warnings)


def sealed_metrics(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The whole metrics.json sealed into a model (None without a record or when it was too large)."""
    record = meta.get(RECORD_KEY)
    return record.get("metrics") if isinstance(record, dict) else None


UNREADABLE = object()  # a file that exists but is not JSON


def _read_json(path: Path) -> Any:
    """A JSON file's content, None when it is absent, :data:`UNREADABLE` when it cannot be read as JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return UNREADABLE


# ------------------------------------------------------------------------------------------------ overlap


def _trained(meta: dict[str, Any]) -> dict[str, Any] | None:
    record = meta.get(RECORD_KEY)
    ts = record.get("training_set") if isinstance(record, dict) else None
    return ts if isinstance(ts, dict) else None


def dataset_overlap(meta: dict[str, Any], ds: Dataset) -> dict[str, Any] | None:
    """How much of ``ds`` the model (``meta``: its checkpoint metadata) trained on; None when it records no
    training set. ``patients``: distinct patients of ``ds`` that were in training; ``series``: likewise series;
    ``nodules``: nodules of ``ds`` whose patient or series was in training."""
    ts = _trained(meta)
    if ts is None:
        return None
    m = ds.manifest
    patients, series = set(ts.get("patients") or []), set(ts.get("series") or [])
    p_hit = m["patient_id"].astype(str).map(id_hash).isin(patients)
    s_hit = m["series_uid"].astype(str).map(id_hash).isin(series)
    return {"patients": int(m.loc[p_hit, "patient_id"].nunique()), "series": int(m.loc[s_hit, "series_uid"].nunique()),
            "nodules": int((p_hit | s_hit).sum()), "n_patients": int(m["patient_id"].nunique()),
            "n_nodules": len(m)}


def case_overlap_warnings(meta: dict[str, Any], patient_id: str | None, series_uid: str | None) -> list[str]:
    """A warning when a CT's series or patient (pseudonymised as ingest does) was in the model's training set."""
    ts = _trained(meta)
    if ts is None:
        return []
    series = bool(series_uid) and id_hash(str(series_uid)) in set(ts.get("series") or [])
    patient = bool(patient_id) and id_hash(str(patient_id)) in set(ts.get("patients") or [])
    if not (series or patient):
        return []
    what = "this series" if series else "this patient (another series)"
    return [f"{what} was in the model's training data: the prediction is not an independent test of the model, "
            f"and its probabilities are likely too confident"]
