"""Classification metrics for benign / unsure / malignant predictions, pooled and per cross-validation fold.

Input is a predictions table with columns ``label``, ``pred`` (class names), ``prob_benign``, ``prob_unsure``,
``prob_malignant`` and, for per-fold numbers, ``fold``. Output is a plain JSON-able dict (floats rounded to
6 decimals, undefined values ``None``) so that ``metrics.json`` is byte-stable between identical runs.

Definitions (also written into the output under ``"definitions"``):

* ``macro_auc``: mean of the one-vs-rest ROC AUCs (score = that class's probability) over the classes whose
  AUC is defined (the class and at least one other class are present). Same as scikit-learn's
  ``roc_auc_score(multi_class="ovr", average="macro")`` when all three classes are present.
* ``macro_f1``: mean F1 over classes present in the labels or the predictions (scikit-learn's default).
* ``balanced_accuracy``: mean recall over classes present in the labels.
* ``binary.*``: malignant is the positive class; decision = score >= 0.5.
  ``benign_vs_malignant`` drops unsure nodules, score = p_malignant / (p_benign + p_malignant);
  ``unsure_as_benign`` score = p_malignant; ``unsure_as_malignant`` score = p_unsure + p_malignant.
* ``ece``: expected calibration error of the top-class confidence max_k p_k with 15 equal-width bins on [0, 1]
  (bin i holds confidences in (i/15, (i+1)/15], 0 goes to the first bin); a prediction is correct when the
  top-probability class (argmax, ties to the first class in benign, unsure, malignant order) equals the label.
  ECE = sum_b (n_b / n) |accuracy_b - mean confidence_b| (Guo et al., 2017).
* ``fold_mean`` / ``fold_std``: mean and sample standard deviation (ddof=1) over the folds where the value is
  defined; ``None`` with fewer than 1 (mean) or 2 (std) defined folds.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from autorad import CLASS_NAMES
from autorad.core.errors import InputError

PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c}" for c in CLASS_NAMES)
REQUIRED_COLUMNS: tuple[str, ...] = ("label", "pred", *PROB_COLUMNS)
ECE_BINS = 15
DECIMALS = 6
PROB_SUM_TOL = 1e-3
BINARY_VIEWS: tuple[str, ...] = ("benign_vs_malignant", "unsure_as_benign", "unsure_as_malignant")

DEFINITIONS: dict[str, str] = {
    "macro_auc": "mean one-vs-rest ROC AUC over classes whose AUC is defined",
    "macro_f1": "mean F1 over classes present in labels or predictions",
    "balanced_accuracy": "mean recall over classes present in labels",
    "binary": "positive = malignant, decision score >= 0.5; benign_vs_malignant drops unsure and uses "
              "p_m/(p_b+p_m); unsure_as_benign uses p_m; unsure_as_malignant uses p_u+p_m",
    "ece": f"expected calibration error of top-class confidence, {ECE_BINS} equal-width bins on [0,1], "
           "correct = argmax class equals label",
    "fold_std": "sample standard deviation (ddof=1) over folds where the value is defined",
}


def compute_metrics(pred: pd.DataFrame, by_fold: bool = True) -> dict[str, Any]:
    """Metrics of a predictions table: pooled over all rows and, if ``by_fold``, per fold with mean / std.

    Returns ``{"n", "pooled", "per_fold", "fold_mean", "fold_std", "class_names", "definitions", "notes"}``;
    ``per_fold`` / ``fold_mean`` / ``fold_std`` are empty when ``by_fold`` is False. Raises
    :class:`~autorad.core.errors.InputError` for an empty table, missing columns, unknown class names or invalid
    probabilities. Undefined values (e.g. AUC of a class absent from a fold) are ``None`` and explained in
    the ``notes`` list of the affected block.

    Args:
        pred: predictions table: ``label``, ``prob_<class>`` columns (and ``fold`` for per-fold metrics).
        by_fold: also compute per-fold metrics with their mean and std.

    Returns:
        The metrics dict described above.
    """
    df = _validated(pred, need_fold=by_fold)
    out: dict[str, Any] = {
        "n": len(df),
        "class_names": list(CLASS_NAMES),
        "pooled": _block_metrics(df),
        "per_fold": {},
        "fold_mean": {},
        "fold_std": {},
        "definitions": dict(DEFINITIONS),
        "notes": [],
    }
    if by_fold:
        folds = sorted(int(f) for f in df["fold"].unique())
        raw = {str(f): _block_metrics(df[df["fold"] == f], rounded=False) for f in folds}
        out["per_fold"] = {f: _rounded(m) for f, m in raw.items()}
        mean, std, notes = _fold_summary(raw)  # from unrounded values
        out["fold_mean"], out["fold_std"], out["notes"] = mean, std, notes
    return out


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-12): the cross-entropy that
    inner validation minimises (fusion weight, nested selection)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of sum_k (p_k - [y = k])^2 (0 is perfect, 2 the worst)."""
    onehot = np.eye(proba.shape[1])[y]
    return float(np.mean(np.sum((np.asarray(proba, dtype=np.float64) - onehot) ** 2, axis=1)))


def metrics_summary_line(metrics: dict[str, Any]) -> str:
    """One line with the headline numbers: n, accuracy, macro AUC and unsure F1 (pooled, fold mean ± std)."""
    pooled = metrics["pooled"]
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}

    def part(label: str, key: str, value: float | None) -> str:
        text = f"{label} {_fmt(value)}"
        if key in mean:
            text += f" (folds {_fmt(mean[key])} ± {_fmt(std.get(key))})"
        return text

    return ", ".join([
        f"n={metrics['n']}",
        part("accuracy", "accuracy", pooled["accuracy"]),
        part("macro AUC", "macro_auc", pooled["macro_auc"]),
        part("unsure F1", "per_class.unsure.f1", pooled["per_class"]["unsure"]["f1"]),
    ])


def prediction_arrays(pred: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A predictions table validated as :func:`compute_metrics` validates it (index reset), its labels as class
    indices (N,) and its probabilities (N, 3) in ``CLASS_NAMES`` order."""
    df = _validated(pred, need_fold=False)
    return df, _label_index(df["label"]), df[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)


def top_class_confidence(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidence (max probability) and whether that class equals the label, per row."""
    _, y, probs = prediction_arrays(df)
    return probs.max(axis=1), probs.argmax(axis=1) == y


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Per-bin counts, mean confidence and accuracy (NaN for empty bins) and the ECE.

    Equal-width bins on [0, 1]; bin i holds confidences in (i/n_bins, (i+1)/n_bins], 0 joins the first bin.
    Hand-written (a few lines of numpy) because scikit-learn's ``calibration_curve`` is for binary problems
    and does not return the ECE.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        raise InputError("cannot compute calibration of zero predictions")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        accuracy = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / confidence.size)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy, "ece": ece}


# ----------------------------------------------------------------------------------------------- internals


def _validated(pred: pd.DataFrame, need_fold: bool) -> pd.DataFrame:
    if not isinstance(pred, pd.DataFrame):
        raise InputError(f"predictions must be a pandas DataFrame, got {type(pred).__name__}")
    need = list(REQUIRED_COLUMNS) + (["fold"] if need_fold else [])
    missing = [c for c in need if c not in pred.columns]
    if missing:
        raise InputError(f"predictions table lacks column(s) {', '.join(missing)}")
    if len(pred) == 0:
        raise InputError("predictions table is empty (n=0): no metrics can be computed")
    df = pred.reset_index(drop=True)
    for col in ("label", "pred"):
        values = df[col].astype(str)
        bad = sorted(set(values) - set(CLASS_NAMES))
        if bad or df[col].isna().any():
            shown = bad[:5] if bad else ["<missing>"]
            raise InputError(f"predictions column '{col}' has value(s) {shown} outside {list(CLASS_NAMES)}")
    probs = df[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all():
        raise InputError("predictions have missing or non-finite probabilities")
    if (probs < -PROB_SUM_TOL).any() or (probs > 1 + PROB_SUM_TOL).any():
        raise InputError("predictions have probabilities outside [0, 1]")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > PROB_SUM_TOL:
        raise InputError(f"class probabilities must sum to 1 per row (worst row is off by {worst:.3g})")
    if need_fold:
        if df["fold"].isna().any():
            raise InputError("predictions column 'fold' has missing values")
        try:
            df["fold"] = df["fold"].astype(np.int64)
        except (TypeError, ValueError):
            raise InputError("predictions column 'fold' must hold integer fold numbers") from None
    return df


def _label_index(labels: pd.Series) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(CLASS_NAMES)}
    return labels.astype(str).map(lookup).to_numpy(dtype=np.int64)


def _block_metrics(df: pd.DataFrame, rounded: bool = True) -> dict[str, Any]:
    """All metrics of one set of rows (the pooled set or one fold), rounded for JSON unless told not to."""
    notes: list[str] = []
    y_true = df["label"].astype(str).to_numpy()
    y_pred = df["pred"].astype(str).to_numpy()
    probs = df[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    present = [c for c in CLASS_NAMES if (y_true == c).any()]
    absent = [c for c in CLASS_NAMES if c not in present]
    if absent:
        notes.append(f"class(es) {', '.join(absent)} absent from the labels: recall and AUC undefined")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        prec, rec, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=list(CLASS_NAMES), zero_division=np.nan)
    per_class: dict[str, dict[str, Any]] = {}
    aucs: list[float] = []
    for k, c in enumerate(CLASS_NAMES):
        auc = _auc((y_true == c).astype(int), probs[:, k])
        if auc is not None:
            aucs.append(auc)
        elif c in present:
            notes.append(f"AUC of {c} undefined: all nodules are {c}")
        if math.isnan(prec[k]) and c in present:
            notes.append(f"precision of {c} undefined: no nodule predicted {c}")
        per_class[c] = {"precision": _num(prec[k]), "recall": _num(rec[k]), "f1": _num(f1[k]),
                        "auc": _num(auc), "support": int(support[k])}
    if 0 < len(aucs) < len(CLASS_NAMES):
        notes.append(f"macro_auc averages {len(aucs)} of {len(CLASS_NAMES)} classes")
    f1_defined = [v for v in f1 if not math.isnan(v)]
    recalls = [rec[k] for k, c in enumerate(CLASS_NAMES) if c in present]
    confidence, correct = top_class_confidence(df)
    block = {
        "n": len(df),
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": float(np.mean(recalls)),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_f1": float(np.mean(f1_defined)) if f1_defined else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(CLASS_NAMES)).astype(int).tolist(),
        "binary": {view: _binary_view(df, view) for view in BINARY_VIEWS},
        "ece": reliability_bins(confidence, correct)["ece"],
        "notes": notes,
    }
    return _rounded(block) if rounded else block


def _binary_view(df: pd.DataFrame, view: str) -> dict[str, Any]:
    """Malignant-positive two-class metrics of one way of handling the unsure class."""
    label = df["label"].astype(str).to_numpy()
    p_b, p_u, p_m = (df[c].to_numpy(dtype=np.float64) for c in PROB_COLUMNS)
    if view == "benign_vs_malignant":
        keep = label != "unsure"
        denom = p_b[keep] + p_m[keep]
        # Both probabilities zero (p_unsure == 1): no preference between benign and malignant -> 0.5.
        score = np.divide(p_m[keep], denom, out=np.full(denom.shape, 0.5), where=denom > 0)
        positive = label[keep] == "malignant"
    elif view == "unsure_as_benign":
        score, positive = p_m, label == "malignant"
    elif view == "unsure_as_malignant":
        score, positive = p_u + p_m, label != "benign"
    else:  # pragma: no cover - internal
        raise ValueError(view)
    n, n_pos = int(positive.size), int(positive.sum())
    n_neg = n - n_pos
    decided = score >= 0.5
    tp = int((decided & positive).sum())
    tn = int((~decided & ~positive).sum())
    return {
        "n": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "auc": _auc(positive.astype(int), score),
        "accuracy": (tp + tn) / n if n else None,
        "sensitivity": tp / n_pos if n_pos else None,
        "specificity": tn / n_neg if n_neg else None,
    }


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Binary ROC AUC, or None when only one class is present (undefined)."""
    if y.size == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, score))


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _rounded(obj: Any) -> Any:
    """Round every float to DECIMALS places and map NaN to None, recursively (stable JSON)."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return None if not math.isfinite(v) else round(v, DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    return obj


def flatten_scalars(block: dict[str, Any], prefix: str = "") -> dict[str, float | int | None]:
    """Scalar leaves of a metrics block as ``{"per_class.unsure.f1": value, ...}`` (lists, notes skipped)."""
    flat: dict[str, float | int | None] = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, prefix=f"{name}."))
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            flat[name] = value
    return flat


def _fold_summary(per_fold: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    flats = [flatten_scalars(m) for m in per_fold.values()]
    keys = list(flats[0].keys())
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    notes: list[str] = []
    for key in keys:
        values = np.array([f[key] for f in flats if f.get(key) is not None], dtype=np.float64)
        mean[key] = float(values.mean()) if values.size else None
        std[key] = float(values.std(ddof=1)) if values.size >= 2 else None
        if values.size < len(flats):
            notes.append(f"fold mean of {key} uses {values.size} of {len(flats)} folds (undefined in others)")
    if len(flats) < 2:
        notes.append("only one fold: fold standard deviations are undefined")
    return _rounded(mean), _rounded(std), notes


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
