"""Publication-style figures of a run's predictions, written as deterministic PNG files.

Figures are drawn on plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas (no pyplot,
no display, and the process-wide matplotlib backend is left alone), at :data:`DPI` dpi, in the Okabe-Ito
colour-blind-safe palette, with line styles that also tell the classes apart in greyscale. PNGs are saved
without the ``Software`` metadata entry, so equal inputs give byte-identical files across runs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import roc_curve

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_bytes
from autorad.evaluate.metrics import ECE_BINS, PROB_COLUMNS, reliability_bins, top_class_confidence

DPI = 160
# Okabe & Ito (2008) colour-blind-safe palette.
CLASS_COLOURS: dict[str, str] = {"benign": "#0072B2", "unsure": "#E69F00", "malignant": "#D55E00"}
CLASS_LINESTYLES: dict[str, str] = {"benign": "-", "unsure": "--", "malignant": "-."}
GREY = "#555555"
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "autorad",
}


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to deterministic PNG bytes (no Software / date metadata), without pyplot."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight",
                facecolor="white")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> bytes:
    """Render ``fig`` to PNG bytes, write them atomically and return them."""
    data = figure_png(fig)
    atomic_write_bytes(Path(path), data)
    return data


def plot_confusion_matrix(cm: Sequence[Sequence[int]], path: str | Path, title: str | None = None) -> Path:
    """Confusion matrix as counts (left) and row-normalised (right); rows true, columns predicted."""
    counts = np.asarray(cm, dtype=np.int64)
    if counts.shape != (len(CLASS_NAMES), len(CLASS_NAMES)):
        raise InputError(f"confusion matrix must be 3x3 (benign, unsure, malignant), got {counts.shape}")
    row_sum = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(row_sum > 0, counts / np.maximum(row_sum, 1), np.nan)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10.0, 4.4))
        axes = fig.subplots(1, 2)
        panels = [(counts.astype(float), "Counts", lambda v: f"{int(v)}", counts.max() or 1),
                  (norm, "Row-normalised (recall on diagonal)", lambda v: f"{v:.2f}", 1.0)]
        for ax, (values, name, fmt, vmax) in zip(axes, panels, strict=True):
            im = ax.imshow(np.nan_to_num(values), cmap="Blues", vmin=0, vmax=vmax)
            for i in range(len(CLASS_NAMES)):
                for j in range(len(CLASS_NAMES)):
                    v = values[i, j]
                    text = "–" if np.isnan(v) else fmt(v)
                    dark = not np.isnan(v) and v > 0.55 * vmax
                    ax.text(j, i, text, ha="center", va="center", fontsize=12,
                            color="white" if dark else "black", fontweight="bold" if i == j else "normal")
            ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
            ax.set_yticks(range(len(CLASS_NAMES)), [f"{c}\n(n={int(s)})" for c, s in zip(
                CLASS_NAMES, row_sum[:, 0], strict=True)])
            ax.set_xlabel("Predicted class")
            ax.set_ylabel("True class (reader consensus)")
            ax.set_title(name)
            for side in ("top", "right"):
                ax.spines[side].set_visible(True)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, path)
    return Path(path)


def plot_roc(pred: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """One-vs-rest ROC curve per class with its AUC in the legend (a class absent or alone is listed n/a)."""
    labels = pred["label"].astype(str).to_numpy()
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.6, 5.2))
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color=GREY, lw=1, ls=":", label="chance (AUC 0.50)")
        for c, col in zip(CLASS_NAMES, PROB_COLUMNS, strict=True):
            y = labels == c
            if y.all() or not y.any():
                ax.plot([], [], color=CLASS_COLOURS[c], ls=CLASS_LINESTYLES[c],
                        label=f"{c} vs rest: AUC n/a (n={int(y.sum())})")
                continue
            fpr, tpr, _ = roc_curve(y.astype(int), pred[col].to_numpy(dtype=np.float64))
            auc = float(area_under_curve(fpr, tpr))
            ax.plot(fpr, tpr, color=CLASS_COLOURS[c], ls=CLASS_LINESTYLES[c], lw=2.2,
                    label=f"{c} vs rest: AUC {auc:.3f} (n={int(y.sum())})")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("False positive rate (1 − specificity)")
        ax.set_ylabel("True positive rate (sensitivity)")
        ax.set_title(title or "One-vs-rest ROC (pooled over folds)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", frameon=True)
        fig.tight_layout()
        save_figure(fig, path)
    return Path(path)


def plot_reliability(pred: pd.DataFrame, path: str | Path, n_bins: int = ECE_BINS,
                     title: str | None = None) -> Path:
    """Reliability diagram of the top-class confidence (accuracy per bin vs confidence) with the ECE."""
    confidence, correct = top_class_confidence(pred)
    bins = reliability_bins(confidence, correct, n_bins=n_bins)
    edges = bins["edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    filled = bins["count"] > 0
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.6, 6.4))
        ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax.plot([0, 1], [0, 1], color=GREY, lw=1, ls=":", label="perfect calibration")
        ax.bar(centres[filled], bins["accuracy"][filled], width=width, color="#0072B2", edgecolor="white",
               label="accuracy in bin")
        gap_lo = np.minimum(bins["accuracy"], bins["confidence"])[filled]
        gap_hi = np.maximum(bins["accuracy"], bins["confidence"])[filled]
        ax.bar(centres[filled], gap_hi - gap_lo, bottom=gap_lo, width=width, color="#D55E00", alpha=0.35,
               edgecolor="#D55E00", hatch="//", label="gap to mean confidence")
        ax.set_ylim(0, 1.01)
        ax.set_ylabel("Accuracy of top class")
        ax.set_title(title or f"Reliability diagram — ECE {bins['ece']:.3f} ({n_bins} bins)")
        ax.legend(loc="upper left")
        ax.grid(True, alpha=0.3)
        hist.bar(centres, bins["count"], width=width, color=GREY, edgecolor="white")
        hist.axvline(1 / len(CLASS_NAMES), color=GREY, ls=":", lw=1)
        hist.set_xlim(0, 1)
        hist.set_xlabel("Top-class confidence (max probability)")
        hist.set_ylabel("Nodules")
        fig.tight_layout()
        save_figure(fig, path)
    return Path(path)


def plot_fold_accuracy(metrics: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Accuracy and balanced accuracy of each fold as grouped bars, with the fold mean and chance level."""
    per_fold = metrics.get("per_fold") or {}
    if not per_fold:
        raise InputError("no per-fold metrics to plot (computed with by_fold=False?)")
    folds = sorted(per_fold, key=int)
    acc = np.array([_nan(per_fold[f]["accuracy"]) for f in folds])
    bal = np.array([_nan(per_fold[f]["balanced_accuracy"]) for f in folds])
    x = np.arange(len(folds))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(5.6, 1.1 * len(folds) + 2.5), 4.4))
        ax = fig.subplots()
        w = 0.38
        for offset, values, name, colour, hatch in ((-w / 2, acc, "accuracy", "#0072B2", ""),
                                                    (w / 2, bal, "balanced accuracy", "#009E73", "..")):
            bars = ax.bar(x + offset, values, width=w, color=colour, hatch=hatch, edgecolor="white",
                          label=name)
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=9)
            ax.axhline(np.nanmean(values), color=colour, lw=1.2, ls="--", zorder=0,
                       label=f"mean {name} {np.nanmean(values):.2f}")
        ax.axhline(1 / len(CLASS_NAMES), color=GREY, lw=1, ls=":", label="chance (balanced, 1/3)")
        ax.set_xticks(x, [f"fold {f}\n(n={per_fold[f]['n']})" for f in folds])
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("Score")
        ax.set_title(title or "Per-fold accuracy")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        save_figure(fig, path)
    return Path(path)


def _nan(v: float | None) -> float:
    return np.nan if v is None else float(v)
