"""Calibrated probabilities by temperature scaling, fitted on a run's out-of-fold predictions (no retraining).

Temperature scaling (Guo et al., 2017) replaces the three probabilities ``p`` of a nodule by
``softmax(log p / T)``: one positive number ``T`` for the whole model. ``T > 1`` softens over-confident
probabilities, ``T < 1`` sharpens timid ones; the argmax, hence accuracy and the confusion matrix, never changes.
``T`` minimises the negative log-likelihood (:func:`autorad.evaluate.metrics.log_loss`) of the labels; it is
fitted here by a bounded one-dimensional search over ``log T`` (:func:`scipy.optimize.minimize_scalar`), a few
lines by hand because scikit-learn's ``CalibratedClassifierCV`` offers sigmoid and isotonic calibration, one
class against the rest, but no multiclass temperature.

It works on what a finished run already holds, its out-of-fold predictions (``predictions.parquet``):

* **the final temperature** is fitted on *all* out-of-fold predictions, as ``CalibratedClassifierCV(ensemble=False)``
  fits its calibrator on ``cross_val_predict`` output; the final model's probabilities are scaled by it
  (:class:`autorad.apps.predictor.Predictor`, ``autorad evaluate``);
* **the honest estimate** of what calibration does: for each outer fold ``k``, ``T_k`` is fitted on the
  out-of-fold predictions of the *other* folds only and applied to fold ``k``; the metrics before and after are
  pooled over the folds. Caveat: the other folds' out-of-fold probabilities were made by fold models that had
  fold ``k``'s nodules in their training part, so ``T_k`` is not wholly blind to fold ``k`` (one number learnt
  from a few hundred predictions: a small optimism, not a leak of labels into fold ``k``'s own predictions).

:func:`calibrate_run` writes ``metrics.json["calibration"]`` and the reliability diagrams before and after; it is
the stage ``train.calibration: temperature`` runs after cross-validation, and ``autorad calibrate RUN``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.evaluate.metrics import PROB_COLUMNS, brier_score, compute_metrics, log_loss, prediction_arrays
from autorad.train.run import Run

log = logging.getLogger(__name__)

METHOD = "temperature"
T_BOUNDS = (0.05, 20.0)  # the search range of T (log-spaced); a fit at a bound means the data ask for more
PROB_FLOOR = 1e-12  # probabilities are clipped here before the log (as log_loss clips them)
SCORES = ("ece", "nll", "brier", "accuracy", "macro_auc")
CAVEAT = ("Per-fold temperatures are fitted on the other folds' out-of-fold predictions, which came from fold "
          "models that saw this fold's nodules in training: a slightly optimistic estimate.")


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` of each row of ``proba`` (N, 3); the argmax of every row is unchanged."""
    t = _checked_temperature(temperature)
    z = np.log(np.clip(np.asarray(proba, dtype=np.float64), PROB_FLOOR, None)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature in :data:`T_BOUNDS` that minimises the mean NLL of labels ``y`` (N,) under
    ``softmax(log proba / T)``, ``proba`` (N, 3)."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != len(CLASS_NAMES) or len(p) != len(y) or len(y) == 0:
        raise InputError(f"temperature fit needs (N, {len(CLASS_NAMES)}) probabilities and N labels, N > 0; got "
                         f"{p.shape} and {y.shape}")
    lo, hi = (math.log(b) for b in T_BOUNDS)
    res = minimize_scalar(lambda log_t: log_loss(apply_temperature(p, math.exp(log_t)), y),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def with_probabilities(pred: pd.DataFrame, proba: np.ndarray) -> pd.DataFrame:
    """A copy of a predictions table with other probabilities (and ``pred`` their argmax)."""
    out = pred.copy()
    out[list(PROB_COLUMNS)] = proba
    out["pred"] = [CLASS_NAMES[i] for i in np.asarray(proba).argmax(axis=1)]
    return out


def nested_calibrated(oof: pd.DataFrame) -> tuple[pd.DataFrame, list[float]]:
    """Each outer fold's predictions scaled by the temperature fitted on the other folds' only; and those
    temperatures, in sorted fold order."""
    df, y, raw = prediction_arrays(oof)
    folds = sorted(int(f) for f in df["fold"].unique()) if "fold" in df.columns else []
    if len(folds) < 2:
        raise InputError("calibration needs out-of-fold predictions of at least 2 folds (column 'fold')")
    after = raw.copy()
    temps = []
    for k in folds:
        test = (df["fold"] == k).to_numpy()
        t_k = fit_temperature(raw[~test], y[~test])
        after[test] = apply_temperature(raw[test], t_k)
        temps.append(t_k)
    return with_probabilities(df, after), temps


def calibration_scores(pred: pd.DataFrame) -> dict[str, float | None]:
    """Pooled ECE, NLL, Brier score, accuracy and macro AUC of a predictions table."""
    pooled = compute_metrics(pred, by_fold=False)["pooled"]
    _, y, proba = prediction_arrays(pred)
    values = {"ece": pooled["ece"], "nll": log_loss(proba, y), "brier": brier_score(proba, y),
              "accuracy": pooled["accuracy"], "macro_auc": pooled["macro_auc"]}
    return {k: None if v is None else round(float(v), 6) for k, v in values.items()}


def calibrate_predictions(oof: pd.DataFrame) -> dict[str, Any]:
    """The calibration block of a run from its out-of-fold predictions (see the module docstring)."""
    return _calibration(oof)[0]


def _calibration(oof: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """The calibration block and the nested-scaled predictions it scores (for the figures)."""
    df, y, raw = prediction_arrays(oof)
    nested, temps = nested_calibrated(df)
    block = {"method": METHOD, "temperature": round(fit_temperature(raw, y), 6),
             "per_fold_temperature": [round(t, 6) for t in temps], "n": len(df),
             "cv": {"before": calibration_scores(df), "after": calibration_scores(nested)}, "note": CAVEAT}
    return block, nested


def calibrate_run(run: Run | str | Path, report: bool = True) -> dict[str, Any]:
    """Fit the temperature of a finished run folder and write ``metrics.json["calibration"]`` (atomically) and the
    reliability diagrams before / after (``figures/``); with ``report`` also redraw ``report.html`` when there is
    one. Idempotent (the out-of-fold predictions are never changed); returns the block."""
    from autorad.core.outputs import read_marker

    run = run if isinstance(run, Run) else Run(run)
    marker = read_marker(run.path)
    if not run.path.is_dir() or marker is None or marker.get("kind") != "run":
        raise InputError(f"RUN {run.path} is not a run folder written by autorad train")
    if not run.predictions_file.is_file() or not run.metrics_file.is_file():
        raise InputError(f"RUN {run.path} has no out-of-fold predictions yet (predictions.parquet, metrics.json): "
                         "finish its cross-validation first")
    oof = run.read_predictions()
    block, nested = _calibration(oof)
    metrics = run.read_metrics()
    metrics["calibration"] = block
    run.write_metrics(metrics)
    write_calibration_figures(run.path, oof, nested, block["cv"])
    log.info("calibration: %s", summary_line(block))
    _reseal(run)
    if report and run.report_file.is_file():
        from autorad.evaluate.report import write_report

        write_report(run.path, metrics, oof, run.read_info())
    return block


def _reseal(run: Run) -> None:
    """A final model that carries a sealed run record gets it again with the new metrics (the temperature is part of
    what it shows and applies); a model without one is left as it is."""
    from autorad.train.checkpoint import load_meta
    from autorad.train.record import RECORD_KEY, attach_run_record

    if run.model_dir().is_dir() and RECORD_KEY in load_meta(run.model_dir()):  # the sidecar tells; tensors unread
        attach_run_record(run)


def write_calibration_figures(folder: Path, before: pd.DataFrame, after: pd.DataFrame,
                              scores: dict[str, dict[str, Any]]) -> None:
    """The reliability diagrams of ``before`` and ``after`` under ``folder/figures/`` (names from the report),
    titled with their ECE from ``scores`` (a block's ``cv`` or ``evaluation``: ``{"before": ..., "after": ...}``)."""
    from autorad.evaluate import plots
    from autorad.evaluate.report import CALIBRATION_FIGURES, FIGURES_DIR

    fig_dir = Path(folder) / FIGURES_DIR
    for key, frame, what, when in (("calibration_before", before, "uncalibrated", "before"),
                                   ("calibration_after", after, "temperature-scaled", "after")):
        plots.plot_reliability(frame, fig_dir / CALIBRATION_FIGURES[key],
                               title=f"{what}: ECE {scores[when]['ece']:.3f}")


def run_temperature(run: Run, meta: dict[str, Any] | None = None) -> float | None:
    """The temperature a run's final model applies, or None when it has none: from the run record sealed into the
    model (``meta``: its checkpoint metadata) when it has one, else ``metrics.json["calibration"]``."""
    from autorad.train.record import RECORD_KEY

    record = (meta or {}).get(RECORD_KEY)
    if isinstance(record, dict):
        block = (record.get("summary") or {}).get("calibration")
    elif run.metrics_file.is_file():
        block = run.read_metrics().get("calibration")
    else:
        return None
    if not isinstance(block, dict) or block.get("method") != METHOD:
        return None
    try:
        return _checked_temperature(block.get("temperature"))
    except InputError:
        raise InputError(f"{run.metrics_file}: calibration temperature {block.get('temperature')!r} is not a "
                         "positive number; rerun autorad calibrate") from None


def evaluation_calibration(raw: pd.DataFrame, temperature: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A run's temperature applied to another dataset's predictions: the scaled table and the block with the
    scores before and after (for ``autorad evaluate``)."""
    _, _, proba = prediction_arrays(raw)
    scaled = with_probabilities(raw, apply_temperature(proba, temperature))
    return scaled, {"method": METHOD, "temperature": round(float(temperature), 6), "n": len(raw),
                    "evaluation": {"before": calibration_scores(raw), "after": calibration_scores(scaled)},
                    "note": "The evaluated run's temperature (fitted on its own out-of-fold predictions) applied "
                            "to this dataset; the headline numbers are those of the scaled probabilities."}


def summary_line(block: dict[str, Any]) -> str:
    """``temperature 1.83; ECE 0.175 -> 0.041 (nested CV)``: the one line ``autorad calibrate`` prints."""
    scores = block.get("cv") or block.get("evaluation") or {}
    where = "nested CV" if "cv" in block else "this dataset"
    before, after = (scores.get(k, {}).get("ece") for k in ("before", "after"))
    fmt = "{:.3f}".format
    return (f"temperature {block['temperature']:.3f}; ECE {fmt(before) if before is not None else 'n/a'} -> "
            f"{fmt(after) if after is not None else 'n/a'} ({where})")


def _checked_temperature(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise InputError(f"temperature must be a positive finite number, got {t!r}")
    return float(t)
