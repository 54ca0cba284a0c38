"""``autorad evaluate``: apply a run's final model to another dataset, with the same metrics layout."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from autorad.data.dataset import Dataset
from autorad.errors import InputError
from autorad.io import atomic_dir
from autorad.outputs import prepare_output_dir, write_marker
from autorad.train.cv import prediction_frame, write_run_report
from autorad.train.features import build_features
from autorad.train.run import Run

log = logging.getLogger(__name__)


def evaluate(run: str | Path, data: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Predict every nodule of dataset ``data`` with ``run``'s final model; write metrics, predictions, report.

    ``out`` is a new or empty folder (or, with ``overwrite``, an earlier evaluation); it may not be, contain or
    lie inside the run or the dataset, so a run's own files are never touched.
    """
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line

    t0 = time.time()
    trained = Run(run)
    model, meta = trained.load_model()
    cfg = trained.model_config(meta)
    ds = Dataset(data)
    table = build_features(ds, cfg)
    if table.radiomics_names is not None and table.radiomics_names != meta.get("radiomics_names"):
        raise InputError(f"radiomic features of {ds.path} differ from those the model was trained on")
    predictions = prediction_frame(table, model.predict_proba(table))
    metrics = compute_metrics(predictions)
    log.info("evaluation of %s on %s: %s", trained.path.name, ds.path.name, metrics_summary_line(metrics))
    prepare_output_dir(out, kind="evaluation", inputs=(run, data), overwrite=overwrite, create=False)  # again
    with atomic_dir(Path(out)) as tmp:  # all or nothing: a failure (disk full...) leaves no half evaluation
        write_marker(tmp, "evaluation")
        evaluated = Run(tmp)
        evaluated.write_predictions(predictions)
        evaluated.write_metrics(metrics)
        write_run_report(evaluated, cfg, ds, [], time.time() - t0, extra={"evaluated_run": trained.path.name})
    return Path(out)
