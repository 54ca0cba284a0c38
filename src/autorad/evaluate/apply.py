"""``autorad evaluate``: apply a run's final model to another dataset, with the same metrics layout."""

from __future__ import annotations

import time
from pathlib import Path

from autorad.config import config_from_dict
from autorad.data.dataset import Dataset
from autorad.errors import InputError
from autorad.io import atomic_dir, write_json, write_parquet
from autorad.outputs import prepare_output_dir, write_marker
from autorad.train.cv import load_model, log, prediction_frame, run_metadata
from autorad.train.features import build_features


def evaluate(run: str | Path, data: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Predict every nodule of dataset ``data`` with ``run``'s final model; write metrics, predictions, report.

    ``out`` is a new or empty folder (or, with ``overwrite``, an earlier evaluation); it may not be, contain or
    lie inside the run or the dataset, so a run's own files are never touched.
    """
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line
    from autorad.evaluate.report import write_report

    t0 = time.time()
    run = Path(run)
    final = run / "final" / "model"
    if not final.is_dir():
        raise InputError(f"{run} has no final model (train with train.final_model: true)")
    model, meta = load_model(final)
    cfg = config_from_dict(meta["config"], source=str(final / "model.json"))
    ds = Dataset(data)
    table = build_features(ds, cfg)
    if table.radiomics_names is not None and table.radiomics_names != meta.get("radiomics_names"):
        raise InputError(f"radiomic features of {ds.path} differ from those the model was trained on")
    predictions = prediction_frame(table, model.predict_proba(table))
    metrics = compute_metrics(predictions)
    log(f"evaluation of {run.name} on {ds.path.name}: {metrics_summary_line(metrics)}")
    info = run_metadata(cfg, ds, [], time.time() - t0)
    info["evaluated_run"] = run.name
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)  # again
    with atomic_dir(Path(out)) as tmp:  # all or nothing: a failure (disk full...) leaves no half evaluation
        write_marker(tmp, "evaluation")
        write_parquet(predictions, tmp / "predictions.parquet")
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "run.json", info)
        write_report(tmp, metrics, predictions, info)
    return Path(out)
