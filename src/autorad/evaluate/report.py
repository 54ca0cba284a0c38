"""The self-contained HTML report of a run: ``run_dir/report.html`` plus its figures under ``run_dir/figures/``.

The page is the Jinja2 template ``templates/report.html.j2`` (style: ``templates/report.css``) filled with the
data this module prepares; autoescaping escapes every value except the few cells built as ``Markup`` here.

The page embeds its PNG figures as base64 data URIs (it can be mailed or archived alone) and needs no network.
Every string that comes from the run (config text, names, paths, notes) is HTML-escaped. No per-nodule table is
printed: the report shows aggregate numbers only.
"""

from __future__ import annotations

import base64
import importlib.metadata
import platform
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from autorad import CLASS_NAMES, __version__
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_text
from autorad.evaluate import plots

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
# the reliability diagrams before / after temperature scaling, drawn by autorad.train.calibration beside the rest
CALIBRATION_FIGURES: dict[str, str] = {"calibration_before": "reliability_uncalibrated.png",
                                       "calibration_after": "reliability_calibrated.png"}
CALIBRATION_CAPTIONS: dict[str, str] = {
    "calibration_before": "Before: the model's own probabilities.",
    "calibration_after": "After: probabilities scaled by the temperature (in cross-validation: each fold by the "
                         "temperature fitted on the other folds).",
}
CALIBRATION_ROWS: tuple[tuple[str, str], ...] = (
    ("ece", "ECE (15 bins)"), ("nll", "Negative log-likelihood"), ("brier", "Brier score"),
    ("accuracy", "Accuracy"), ("macro_auc", "Macro AUC"),
)
# Distributions whose versions the report lists (first installed name of each tuple wins).
VERSIONED: tuple[tuple[str, ...], ...] = (
    ("torch",), ("transformers",), ("pyradiomics-bhklab", "pyradiomics"), ("scikit-learn",), ("numpy",),
    ("pandas",), ("matplotlib",), ("SimpleITK",), ("pydicom",), ("scikit-image",), ("ray",),
)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "Accuracy", "3-class, argmax"),
    ("balanced_accuracy", "Balanced accuracy", "mean recall"),
    ("macro_auc", "Macro AUC", "one-vs-rest"),
    ("macro_f1", "Macro F1", ""),
    ("per_class.unsure.f1", "Unsure F1", "hardest class"),
    ("ece", "ECE", "15 bins, lower is better"),
)
FOLD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "n"), ("accuracy", "Accuracy"), ("balanced_accuracy", "Bal. acc."), ("macro_auc", "Macro AUC"),
    ("macro_f1", "Macro F1"), ("per_class.benign.f1", "F1 benign"), ("per_class.unsure.f1", "F1 unsure"),
    ("per_class.malignant.f1", "F1 malignant"), ("ece", "ECE"),
)
NOT_AVAILABLE = Markup("<span class='muted'>n/a</span>")
BINARY_TITLES: dict[str, str] = {
    "benign_vs_malignant": "Benign vs malignant (unsure dropped)",
    "unsure_as_benign": "Unsure counted as benign",
    "unsure_as_malignant": "Unsure counted as malignant",
}


def write_report(run_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame,
                 meta: dict[str, Any]) -> Path:
    """Write ``run_dir/report.html`` (figures embedded, also saved in ``run_dir/figures/``); return its path.

    ``metrics`` is :func:`autorad.evaluate.metrics.compute_metrics`'s output for ``predictions``. ``meta`` may
    hold ``name``, ``config_yaml``, ``encoders`` (list of ``{name, kind, weights: "real"|"random", source}``),
    ``data`` (``{source, path, label_rule, min_readers, n_nodules, class_counts}``), ``run_time_s``,
    ``model_kind``, ``warnings`` (list of strings), ``evaluated_run`` (an evaluation of a trained run:
    ``metrics["training_overlap"]`` says whether it is external), ``date`` and ``versions`` (extra
    ``{package: version}``); missing items are shown as "not recorded". Encoders without real weights and
    phantom (simulated) data get a warning banner.
    """
    run_dir = Path(run_dir)
    if "pooled" not in metrics:
        raise InputError("write_report needs the output of compute_metrics (no 'pooled' block)")
    fig_dir = run_dir / FIGURES_DIR
    figures = _figures(fig_dir, metrics, predictions)
    page = render_html(metrics, meta, figures, run_name=str(meta.get("name") or run_dir.name))
    out = run_dir / REPORT_NAME
    atomic_write_text(out, page)
    return out


def render_html(metrics: dict[str, Any], meta: dict[str, Any], figures: dict[str, tuple[str, bytes]],
                run_name: str) -> str:
    """The report page as a string (``templates/report.html.j2``); ``figures`` maps a key to (caption, PNG)."""
    from importlib.resources import files

    date = str(meta.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    data = meta.get("data") or {}
    not_real = [e for e in (meta.get("encoders") or []) if str(e.get("weights", "")).lower() != "real"]
    context = {
        "run_name": run_name, "model_kind": meta.get("model_kind"), "date": date, "version": __version__,
        "run_time": _duration(meta.get("run_time_s")), "n": metrics["n"],
        "phantom": str(data.get("source", "")).lower() == "phantom",
        "random_encoders": ", ".join(f"{e.get('name', '?')} ({e.get('weights', 'unknown')})" for e in not_real),
        "evaluated_run": meta.get("evaluated_run"), "evaluation": evaluation_banner(metrics),
        "headline": _headline(metrics), "data_rows": _data_rows(meta.get("data"), metrics),
        "per_class": _per_class(metrics), "folds": _folds(metrics), "binary": _binary(metrics),
        "selection": _selection(metrics.get("selection")), "calibration": _calibration(metrics.get("calibration")),
        "figures": {k: {"caption": caption, "data": base64.b64encode(png).decode("ascii")}
                    for k, (caption, png) in figures.items()},
        "warnings": meta.get("warnings") or [], "notes": _notes(metrics), "encoders": _encoders(meta.get("encoders")),
        "config_yaml": meta.get("config_yaml") or "# config not recorded",
        "versions": {**software_versions(), **{str(k): str(v) for k, v in (meta.get("versions") or {}).items()}},
        "definitions": metrics.get("definitions") or {},
        "css": Markup(files("autorad.evaluate").joinpath("templates", "report.css").read_text(encoding="utf-8")),
    }
    return _template().render(**context)


def overlap_note(overlap: dict[str, Any] | None) -> str | None:
    """Why an evaluation is not external (``metrics.json["training_overlap"]``), or None when it is: no patient
    or series of the evaluated dataset was in the model's training data. ``None`` overlap: not recorded."""
    if overlap is None:
        return ("training overlap unknown: the model records no training set (it was sealed before autorad "
                "recorded one), so this may not be an external evaluation")
    n, m = int(overlap.get("patients") or 0), int(overlap.get("nodules") or 0)
    if n == 0 and m == 0:
        return None
    return (f"not an external evaluation: {n} of the {overlap.get('n_patients', '?')} patients were in training "
            f"({m} of the {overlap.get('n_nodules', '?')} nodules share a patient or series with the training data)")


def evaluation_banner(metrics: dict[str, Any]) -> dict[str, str]:
    """Title, text and style of an evaluation report's banner: external only when the overlap is known to be 0."""
    note = overlap_note(metrics.get("training_overlap"))
    if note is None:
        return {"title": "External evaluation.", "text": "no patient or series of this dataset was in its training "
                "data", "cls": "info"}
    if metrics.get("training_overlap") is None:
        return {"title": "Evaluation.", "text": note, "cls": "info"}
    return {"title": "NOT AN EXTERNAL EVALUATION.", "text": note.removeprefix("not an external evaluation: ") +
            "; these numbers overstate performance on new patients", "cls": "danger"}


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("autorad.evaluate", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template("report.html.j2")


# ----------------------------------------------------------------------------------------------- sections


def _figures(fig_dir: Path, metrics: dict[str, Any], predictions: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
    """Draw every figure into ``fig_dir`` and return {key: (caption, PNG bytes)}."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[str, Path]] = {
        "confusion": ("Confusion matrix pooled over folds: counts and row-normalised (rows: reader label).",
                      plots.plot_confusion_matrix(metrics["pooled"]["confusion_matrix"],
                                                  fig_dir / "confusion_matrix.png")),
        "roc": ("One-vs-rest ROC curves, pooled out-of-fold predictions.",
                plots.plot_roc(predictions, fig_dir / "roc.png")),
        "reliability": ("Reliability of the top-class probability; bars: accuracy per confidence bin.",
                        plots.plot_reliability(predictions, fig_dir / "reliability.png")),
    }
    if metrics.get("calibration"):  # drawn by autorad.train.calibration; shown when they are there
        made.update({key: (CALIBRATION_CAPTIONS[key], fig_dir / name) for key, name in CALIBRATION_FIGURES.items()
                     if (fig_dir / name).is_file()})
    if metrics.get("per_fold"):
        made["folds"] = ("Accuracy and balanced accuracy of each cross-validation fold.",
                         plots.plot_fold_accuracy(metrics, fig_dir / "fold_accuracy.png"))
    return {k: (caption, path.read_bytes()) for k, (caption, path) in made.items()}


def _headline(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    pooled = _flat(metrics["pooled"])
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    return [{"title": title, "value": _f(pooled.get(key)), "hint": hint,
             "folds": Markup(f"{_f(mean.get(key))} ± {_f(std.get(key))}") if key in mean else None}
            for key, title, hint in HEADLINE]


def _data_rows(data: dict[str, Any] | None, metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    if not data:
        return []
    counts = data.get("class_counts") or {}
    count_text = ", ".join(f"{c}: {counts[c]}" for c in CLASS_NAMES if c in counts) or "not recorded"
    source = str(data.get("source", "not recorded"))
    if source.lower() == "phantom":
        source += " (simulated data, not patient CT)"
    return [("Source", source), ("Path", data.get("path") or "—"),
            ("Label rule", f"{data.get('label_rule', 'not recorded')} of reader malignancy ratings; at least "
                           f"{data.get('min_readers', '?')} readers"),
            ("Nodules in dataset", data.get("n_nodules", "not recorded")), ("Class counts", count_text),
            ("Nodules evaluated", metrics["n"])]


def _per_class(metrics: dict[str, Any]) -> dict[str, Any]:
    pc = metrics["pooled"]["per_class"]
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    head = ["Class", "Support", "Precision", "Recall", "F1", "AUC (OvR)"] + (["F1 folds", "AUC folds"] if mean else [])
    rows = []
    for c in CLASS_NAMES:
        m = pc[c]
        dot = Markup("<span class='dot' style='background:{}'></span>{}").format(plots.CLASS_COLOURS[c], c)
        row = [dot, str(m["support"]), _f(m["precision"]), _f(m["recall"]), _f(m["f1"]), _f(m["auc"])]
        if mean:
            row += [_pm(mean, std, f"per_class.{c}.f1"), _pm(mean, std, f"per_class.{c}.auc")]
        rows.append(row)
    return {"head": head, "rows": rows}


def _folds(metrics: dict[str, Any]) -> dict[str, Any] | None:
    per_fold = metrics.get("per_fold") or {}
    if not per_fold:
        return None
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    rows: list[list[Any]] = []
    for fold in sorted(per_fold, key=int):
        flat = _flat(per_fold[fold])
        rows.append([fold] + [_f(flat.get(k), int_ok=True) for k, _ in FOLD_COLUMNS])
    rows.append([Markup("<strong>mean ± std</strong>")] + [_pm(mean, std, k) for k, _ in FOLD_COLUMNS])
    pooled = _flat(metrics["pooled"])
    rows.append([Markup("<strong>pooled</strong>")] + [_f(pooled.get(k), int_ok=True) for k, _ in FOLD_COLUMNS])
    return {"head": ["Fold"] + [title for _, title in FOLD_COLUMNS], "rows": rows}


def _selection(sel: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``train.select`` table: per seed and fold, each candidate's inner score, the winner in bold."""
    if not sel:
        return None
    seeds = any(r.get("seed") is not None for r in sel["rows"])
    head = (["Seed"] if seeds else []) + ["Fold"] + list(sel["candidates"])
    rows = []
    for r in sel["rows"]:
        cells = [Markup(f"<strong>{_f(s)}</strong>") if i == r["winner"] else _f(s) for i, s in enumerate(r["scores"])]
        rows.append(([r["seed"]] if seeds else []) + [r["fold"]] + cells)
    inner = sel.get("inner") or {}
    how = f"one inner patient-level split ({inner.get('fraction')} validates)" if inner.get("folds") == 1 \
        else f"inner {inner.get('folds')}-fold cross-validation"
    note = (f"Each candidate was trained inside the fold's training part and scored by {sel['metric']} "
            f"({sel['better']} is better) on {how}; the bold one was refitted on the whole training part. The test "
            f"fold played no part. Outer folds won: "
            + ", ".join(f"{c} {n}" for c, n in zip(sel["candidates"], sel["outer_fold_wins"], strict=True)) + ".")
    return {"head": head, "rows": rows, "note": note}


def _calibration(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """The temperature-scaling table: each score before and after, the temperature and how it was fitted."""
    if not block:
        return None
    in_cv = "cv" in block
    scores = block.get("cv") or block.get("evaluation") or {}
    before, after = scores.get("before") or {}, scores.get("after") or {}
    rows = [[title, _f(before.get(k)), _f(after.get(k))] for k, title in CALIBRATION_ROWS]
    if in_cv:
        per_fold = ", ".join(f"{t:.3f}" for t in block.get("per_fold_temperature") or [])
        note = (f"Temperature scaling: probabilities softmax(log p / T) with T = {block['temperature']:.3f}, fitted "
                f"on all {block.get('n')} out-of-fold predictions; the final model's probabilities are scaled by it. "
                f"The 'after' column is an honest estimate: each fold scaled by a temperature fitted on the other "
                f"folds only ({per_fold}). {block.get('note', '')}")
    else:
        note = block.get("note", "")
    return {"head": ["Score (pooled)", "before", "after"], "rows": rows, "note": note}


def _binary(metrics: dict[str, Any]) -> dict[str, Any]:
    binary = metrics["pooled"]["binary"]
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    head = ["View (positive = malignant)", "n (pos / neg)", "AUC", "Accuracy", "Sensitivity", "Specificity"]
    rows = []
    for view, title in BINARY_TITLES.items():
        b = binary[view]
        row = [title, f"{b['n']} ({b['n_positive']} / {b['n_negative']})", _f(b["auc"]), _f(b["accuracy"]),
               _f(b["sensitivity"]), _f(b["specificity"])]
        rows.append(row + ([_pm(mean, std, f"binary.{view}.auc")] if mean else []))
    return {"head": head + (["AUC folds"] if mean else []), "rows": rows}


def _notes(metrics: dict[str, Any]) -> list[str]:
    notes = [f"pooled: {n}" for n in metrics["pooled"].get("notes", [])]
    for fold in sorted(metrics.get("per_fold") or {}, key=int):
        notes += [f"fold {fold}: {n}" for n in metrics["per_fold"][fold].get("notes", [])]
    return notes + list(metrics.get("notes") or [])


def _encoders(encoders: list[dict[str, Any]] | None) -> list[list[Any]] | None:
    if encoders is None:
        return None
    rows = []
    for e in encoders:
        weights = str(e.get("weights", "unknown"))
        badge = Markup("<span class='badge {}'>{}</span>").format("ok" if weights.lower() == "real" else "bad",
                                                                   weights)
        rows.append([e.get("name", "?"), e.get("kind", "?"), badge, e.get("source", "—")])
    return rows


def software_versions() -> dict[str, str]:
    """Versions of Python, autorad and the libraries a run depends on ("not installed" when absent)."""
    out = {"python": platform.python_version(), "autorad": __version__}
    for names in VERSIONED:
        version = "not installed"
        for name in names:
            try:
                version = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[names[0].removesuffix("-bhklab")] = version
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _flat(block: dict[str, Any]) -> dict[str, Any]:
    from autorad.evaluate.metrics import flatten_scalars

    return flatten_scalars(block)


def _f(value: Any, int_ok: bool = False) -> str:
    if value is None:
        return NOT_AVAILABLE
    if int_ok and isinstance(value, int):
        return str(value)
    return f"{float(value):.3f}"


def _pm(mean: dict[str, Any], std: dict[str, Any], key: str) -> str:
    m, s = mean.get(key), std.get(key)
    if m is None:
        return NOT_AVAILABLE
    if key == "n":
        return f"{m:.1f}"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "not recorded"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(int(round(s)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"
