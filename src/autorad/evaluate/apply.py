"""``autorad evaluate``: apply a run's final model to another dataset, with the same metrics layout."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from autorad.core.errors import InputError
from autorad.core.io import atomic_dir
from autorad.core.outputs import prepare_output_dir, replaceable_dir, write_marker
from autorad.data.dataset import Dataset
from autorad.pretrained import resolve_run
from autorad.train.calibration import evaluation_calibration, run_temperature, summary_line, write_calibration_figures
from autorad.train.cv import write_run_report
from autorad.train.features import build_features
from autorad.train.fitting import prediction_frame
from autorad.train.record import dataset_overlap
from autorad.train.run import Run

log = logging.getLogger(__name__)


def evaluate(run: str | Path, data: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Predict every nodule of dataset ``data`` with ``run``'s final model; write metrics, predictions, report.

    ``out`` is a new or empty folder (or, with ``overwrite``, an earlier evaluation); it may not be, contain or
    lie inside the run or the dataset, so a run's own files are never touched. ``run`` may be a built-in
    model's name (``"lidc"``, :func:`autorad.pretrained.resolve_run`).

    Args:
        run: a run folder or a built-in model's name.
        data: the dataset folder to evaluate on.
        out: the evaluation folder to write (metrics.json, predictions.parquet, report.html).
        overwrite: let ``out`` replace an earlier autorad evaluation.

    Returns:
        ``out``.
    """
    run = resolve_run(run)
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line

    t0 = time.time()
    trained = Run(run)
    model, meta = trained.load_model()
    cfg = trained.model_config(meta)
    ds = Dataset(data)
    table = build_features(ds, cfg, training=False)
    if table.radiomics_names is not None and table.radiomics_names != meta.get("radiomics_names"):
        raise InputError(f"radiomic features of {ds.path} differ from those the model was trained on")
    predictions = raw = prediction_frame(table, model.predict_proba(table))
    temperature, calibration = run_temperature(trained, meta), None
    if temperature is not None:  # the run's final model is calibrated: its scaled probabilities are the answer
        predictions, calibration = evaluation_calibration(raw, temperature)
    metrics = compute_metrics(predictions)
    if calibration is not None:
        metrics["calibration"] = calibration
        log.info("calibration: %s", summary_line(calibration))
    metrics["training_overlap"] = dataset_overlap(meta, ds)  # None: the model records no training set
    log.info("evaluation of %s on %s: %s", trained.path.name, ds.path.name, metrics_summary_line(metrics))
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)  # again
    # all or nothing: a failure (disk full...) leaves no half evaluation
    with atomic_dir(Path(out), replace=replaceable_dir(overwrite)) as tmp:
        write_marker(tmp, "evaluation")
        evaluated = Run(tmp)
        evaluated.write_predictions(predictions)
        evaluated.write_metrics(metrics)
        if calibration is not None:
            write_calibration_figures(tmp, raw, predictions, calibration["evaluation"])
        write_run_report(evaluated, cfg, ds, [], time.time() - t0, extra={"evaluated_run": trained.path.name})
    return Path(out)


def evaluation_summary(out: str | Path) -> str:
    """What ``autorad evaluate`` prints: the headline metrics and whether this is an external evaluation."""
    from autorad.evaluate.metrics import metrics_summary_line
    from autorad.evaluate.report import overlap_note

    metrics = Run(out).read_metrics()
    note = overlap_note(metrics.get("training_overlap"))
    external = "external evaluation: no patient or series of this dataset was in training"
    return f"{metrics_summary_line(metrics)}\n{note or external}"


def out_of_fold(run: str | Path, data: str | Path, mask_variant: str | None = None) -> pd.DataFrame:
    """Each fold model of a cross-validated ``run`` applied to its own test fold of ``data``.

    ``mask_variant`` (e.g. ``grow1``): with the radiomics of every mask so changed (the dataset's cached table for
    that variant, extracted when missing) in place of the consensus radiomics.

    ``data`` holds the same nodules and folds as the run's dataset, with other inputs (e.g. each mask grown by one
    pixel and the radiomics extracted again): this measures how the cross-validated result moves with those
    inputs, without any model seeing its test nodules. A run trained with several seeds is averaged over its
    seeds (the seed ensemble). Returns the predictions table (metrics via :func:`compute_metrics`).
    """
    from autorad.train.seeds import average_predictions

    run = Path(run)
    seed_runs = sorted((run / "seeds").iterdir()) if (run / "seeds").is_dir() else [run]
    ds = Dataset(data)
    frames = []
    for seed_path in seed_runs:
        trained, parts, table = Run(seed_path), [], None
        folds = sorted(int(p.name) for p in (seed_path / "folds").iterdir()) if (seed_path / "folds").is_dir() else []
        for k in folds:
            model, meta = trained.load_model(k)
            if table is None:
                table = build_features(ds, trained.model_config(meta), training=False,
                                       mask_variant=mask_variant)
            test = table.subset(table.folds == k)
            if not len(test):
                raise InputError(f"{ds.path} has no nodule in fold {k} of {run}")
            parts.append(prediction_frame(test, model.predict_proba(test)))
        if not parts:
            raise InputError(f"{seed_path} has no fold models")
        frames.append(pd.concat(parts, ignore_index=True))
    pred = average_predictions(frames) if len(frames) > 1 else frames[0]
    if not np.isfinite(pred.filter(like="prob_").to_numpy()).all():
        raise InputError(f"{run}: non-finite probabilities on {ds.path}")
    return pred.sort_values(["fold", "nodule_id"], kind="stable").reset_index(drop=True)
