"""The self-contained HTML report of a run: ``run_dir/report.html`` plus its figures under ``run_dir/figures/``.

The page embeds its PNG figures as base64 data URIs (it can be mailed or archived alone) and needs no network.
Every string that comes from the run (config text, names, paths, notes) is HTML-escaped. No per-nodule table is
printed: the report shows aggregate numbers only.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from autorad import CLASS_NAMES, __version__
from autorad.errors import InputError
from autorad.evaluate import plots
from autorad.io import atomic_write_text

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
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
    ``model_kind``, ``warnings`` (list of strings), ``evaluated_run`` (external evaluation), ``date`` and
    ``versions`` (extra ``{package: version}``); missing items are shown as
    "not recorded". Encoders without real weights and phantom (simulated) data get a warning banner.
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
    """The report page as a string; ``figures`` maps a key to (caption, PNG bytes)."""
    date = str(meta.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    parts = [
        f"<header><h1>AutoRad-Lung report: {_e(run_name)}</h1>",
        f"<p class='sub'>{_e(_model_line(meta))}generated {_e(date)} · autorad {_e(__version__)} · "
        f"run time {_e(_duration(meta.get('run_time_s')))}</p></header>",
        *_banners(meta),
        _evaluation_note(meta),
        _headline(metrics),
        _data_section(meta.get("data"), metrics),
        _per_class_section(metrics),
        _figure_block(figures, "confusion", "Confusion matrix"),
        "<div class='two'>" + _figure_block(figures, "roc", "ROC curves")
        + _figure_block(figures, "reliability", "Calibration") + "</div>",
        _fold_section(metrics, figures),
        _binary_section(metrics),
        _warnings_section(meta.get("warnings")),
        _notes_section(metrics),
        _encoder_section(meta.get("encoders")),
        _config_section(meta.get("config_yaml")),
        _software_section(meta.get("versions")),
        _definitions_section(metrics),
    ]
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>AutoRad-Lung report: {_e(run_name)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


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
    if metrics.get("per_fold"):
        made["folds"] = ("Accuracy and balanced accuracy of each cross-validation fold.",
                         plots.plot_fold_accuracy(metrics, fig_dir / "fold_accuracy.png"))
    return {k: (caption, path.read_bytes()) for k, (caption, path) in made.items()}


def _banners(meta: dict[str, Any]) -> list[str]:
    out = []
    data = meta.get("data") or {}
    if str(data.get("source", "")).lower() == "phantom":
        out.append("<div class='banner danger'><strong>SIMULATED DATA.</strong> This run used the phantom "
                   "generator, not patient CT. Its numbers say nothing about performance on real nodules.</div>")
    not_real = [e for e in (meta.get("encoders") or []) if str(e.get("weights", "")).lower() != "real"]
    if not_real:
        names = ", ".join(f"{e.get('name', '?')} ({e.get('weights', 'unknown')})" for e in not_real)
        out.append(f"<div class='banner danger'><strong>RANDOM ENCODER WEIGHTS.</strong> Encoder(s) "
                   f"{_e(names)} did not run with real pretrained weights, so these results do not represent "
                   f"the method. Rerun with the real weights for any reported number.</div>")
    return out


def _evaluation_note(meta: dict[str, Any]) -> str:
    run = meta.get("evaluated_run")
    if not run:
        return ""
    return (f"<div class='banner info'><strong>External evaluation.</strong> The final model of run "
            f"{_e(run)} applied to this dataset; \"folds\" below are the dataset's fold labels, not held-out "
            f"training folds.</div>")


def _warnings_section(warnings: list[str] | None) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f"<section><h2>Run warnings</h2><ul class='notes warn'>{items}</ul></section>"


def _headline(metrics: dict[str, Any]) -> str:
    pooled = _flat(metrics["pooled"])
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    cards = []
    for key, title, hint in HEADLINE:
        folds = (f"<div class='folds'>folds {_f(mean.get(key))} ± {_f(std.get(key))}</div>"
                 if key in mean else "<div class='folds'>no folds</div>")
        cards.append(f"<div class='card'><div class='label'>{_e(title)}</div>"
                     f"<div class='value'>{_f(pooled.get(key))}</div>{folds}"
                     f"<div class='hint'>{_e(hint)}</div></div>")
    return (f"<section><h2>Headline (pooled out-of-fold predictions, n = {metrics['n']})</h2>"
            f"<div class='cards'>{''.join(cards)}</div></section>")


def _data_section(data: dict[str, Any] | None, metrics: dict[str, Any]) -> str:
    if not data:
        return "<section><h2>Data</h2><p class='muted'>Data source not recorded.</p></section>"
    counts = data.get("class_counts") or {}
    count_text = ", ".join(f"{c}: {counts[c]}" for c in CLASS_NAMES if c in counts) or "not recorded"
    source = str(data.get("source", "not recorded"))
    if source.lower() == "phantom":
        source += " (simulated data, not patient CT)"
    rows = [("Source", source), ("Path", data.get("path") or "—"),
            ("Label rule", f"{data.get('label_rule', 'not recorded')} of reader malignancy ratings; at least "
                           f"{data.get('min_readers', '?')} readers"),
            ("Nodules in dataset", data.get("n_nodules", "not recorded")), ("Class counts", count_text),
            ("Nodules evaluated", metrics["n"])]
    return "<section><h2>Data</h2>" + _kv_table(rows) + "</section>"


def _per_class_section(metrics: dict[str, Any]) -> str:
    pc = metrics["pooled"]["per_class"]
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    has_folds = bool(mean)
    head = ["Class", "Support", "Precision", "Recall", "F1", "AUC (OvR)"]
    if has_folds:
        head += ["F1 folds", "AUC folds"]
    rows = []
    for c in CLASS_NAMES:
        m = pc[c]
        row = [f"<span class='dot' style='background:{plots.CLASS_COLOURS[c]}'></span>{_e(c)}",
               str(m["support"]), _f(m["precision"]), _f(m["recall"]), _f(m["f1"]), _f(m["auc"])]
        if has_folds:
            row += [_pm(mean, std, f"per_class.{c}.f1"), _pm(mean, std, f"per_class.{c}.auc")]
        rows.append(row)
    return "<section><h2>Per class</h2>" + _table(head, rows) + "</section>"


def _fold_section(metrics: dict[str, Any], figures: dict[str, tuple[str, bytes]]) -> str:
    per_fold = metrics.get("per_fold") or {}
    if not per_fold:
        return ("<section><h2>Per fold</h2><p class='muted'>No per-fold metrics (a single evaluation set)."
                "</p></section>")
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    head = ["Fold"] + [title for _, title in FOLD_COLUMNS]
    rows = []
    for fold in sorted(per_fold, key=int):
        flat = _flat(per_fold[fold])
        rows.append([_e(fold)] + [_f(flat.get(k), int_ok=True) for k, _ in FOLD_COLUMNS])
    rows.append(["<strong>mean ± std</strong>"] + [_pm(mean, std, k) for k, _ in FOLD_COLUMNS])
    pooled = _flat(metrics["pooled"])
    rows.append(["<strong>pooled</strong>"] + [_f(pooled.get(k), int_ok=True) for k, _ in FOLD_COLUMNS])
    return ("<section><h2>Per fold</h2><p class='muted'>Each fold's nodules were held out (patient-level "
            "cross-validation) unless this is an external evaluation (see the top of the page).</p>"
            + _table(head, rows, last_rows=2) + _figure_block(figures, "folds", None, narrow=True) + "</section>")


def _binary_section(metrics: dict[str, Any]) -> str:
    binary = metrics["pooled"]["binary"]
    mean, std = metrics.get("fold_mean") or {}, metrics.get("fold_std") or {}
    head = ["View (positive = malignant)", "n (pos / neg)", "AUC", "Accuracy", "Sensitivity", "Specificity"]
    if mean:
        head.append("AUC folds")
    rows = []
    for view, title in BINARY_TITLES.items():
        b = binary[view]
        row = [_e(title), f"{b['n']} ({b['n_positive']} / {b['n_negative']})", _f(b["auc"]),
               _f(b["accuracy"]), _f(b["sensitivity"]), _f(b["specificity"])]
        if mean:
            row.append(_pm(mean, std, f"binary.{view}.auc"))
        rows.append(row)
    return ("<section><h2>Binary views</h2><p class='muted'>Threshold 0.5 on the view's malignancy score.</p>"
            + _table(head, rows) + "</section>")


def _notes_section(metrics: dict[str, Any]) -> str:
    notes = [f"pooled: {n}" for n in metrics["pooled"].get("notes", [])]
    for fold in sorted(metrics.get("per_fold") or {}, key=int):
        notes += [f"fold {fold}: {n}" for n in metrics["per_fold"][fold].get("notes", [])]
    notes += list(metrics.get("notes") or [])
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f"<section><h2>Undefined or partial metrics</h2><ul class='notes'>{items}</ul></section>"


def _encoder_section(encoders: list[dict[str, Any]] | None) -> str:
    if encoders is None:
        return "<section><h2>Encoders</h2><p class='muted'>Encoders not recorded.</p></section>"
    if not encoders:
        return "<section><h2>Encoders</h2><p class='muted'>No pretrained encoder (radiomics-only model).</p></section>"
    rows = []
    for e in encoders:
        weights = str(e.get("weights", "unknown"))
        cls = "ok" if weights.lower() == "real" else "bad"
        rows.append([_e(e.get("name", "?")), _e(e.get("kind", "?")),
                     f"<span class='badge {cls}'>{_e(weights)}</span>", _e(e.get("source", "—"))])
    table = _table(["Name", "Kind", "Weights", "Source"], rows, cls="text")
    return f"<section><h2>Encoders</h2>{table}</section>"


def _config_section(config_yaml: str | None) -> str:
    text = config_yaml if config_yaml else "# config not recorded"
    return f"<section><h2>Config</h2><pre>{_e(text)}</pre></section>"


def _software_section(extra: dict[str, str] | None) -> str:
    versions = software_versions()
    versions.update({str(k): str(v) for k, v in (extra or {}).items()})
    chips = "".join(f"<span class='chip'><b>{_e(k)}</b> {_e(v)}</span>" for k, v in versions.items())
    return f"<section><h2>Software</h2><div class='chips'>{chips}</div></section>"


def _definitions_section(metrics: dict[str, Any]) -> str:
    defs = metrics.get("definitions") or {}
    if not defs:
        return ""
    items = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in defs.items())
    return f"<footer><h2>Definitions</h2><ul class='defs'>{items}</ul></footer>"


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


def _figure_block(figures: dict[str, tuple[str, bytes]], key: str, title: str | None, narrow: bool = False) -> str:
    if key not in figures:
        return ""
    caption, png = figures[key]
    data = base64.b64encode(png).decode("ascii")
    heading = f"<h2>{_e(title)}</h2>" if title else ""
    cls = " class='narrow'" if narrow else ""
    return (f"<section class='figure'>{heading}<figure{cls}><img src='data:image/png;base64,{data}' "
            f"alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure></section>")


def _table(head: list[str], rows: list[list[str]], last_rows: int = 0, cls: str = "num") -> str:
    """An HTML table; ``head`` is escaped here, row cells must already be escaped."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        row_cls = " class='summary'" if last_rows and i >= len(rows) - last_rows else ""
        body.append(f"<tr{row_cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table class='{cls}'><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(rows: list[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table class='{cls}'><tbody>{body}</tbody></table>"


def _flat(block: dict[str, Any]) -> dict[str, Any]:
    from autorad.evaluate.metrics import flatten_scalars

    return flatten_scalars(block)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _f(value: Any, int_ok: bool = False) -> str:
    if value is None:
        return "<span class='muted'>n/a</span>"
    if int_ok and isinstance(value, int):
        return str(value)
    return f"{float(value):.3f}"


def _pm(mean: dict[str, Any], std: dict[str, Any], key: str) -> str:
    m, s = mean.get(key), std.get(key)
    if m is None:
        return "<span class='muted'>n/a</span>"
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


def _model_line(meta: dict[str, Any]) -> str:
    kind = meta.get("model_kind")
    return f"model {kind} · " if kind else ""


CSS = """
:root { --ink:#1d2433; --muted:#667085; --line:#d9dee7; --accent:#0072B2; --bad:#b42318; --badbg:#fef3f2;
        --ok:#067647; --okbg:#ecfdf3; }
* { box-sizing: border-box; }
body { margin:0; background:#f4f6f9; color:var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 48px; background:#fff; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.sub { margin: 0 0 18px; color: var(--muted); }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
.banner { padding: 12px 16px; border-radius: 8px; margin: 10px 0; font-size: 15px; }
.banner.danger { background: var(--badbg); border: 2px solid var(--bad); color: var(--bad); }
.banner.info { background: #eff8ff; border: 1px solid var(--accent); color: #175cd3; }
ul.warn li { color: #b54708; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; background: #fafbfc; }
.card .label { font-size: 13px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 30px; font-weight: 700; color: var(--accent); }
.card .folds { font-size: 13px; }
.card .hint { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.text th, table.text td { text-align: left; }
thead th { background: #f0f3f7; font-weight: 600; }
tr.summary td { background: #f7f9fb; font-weight: 600; }
table.kv th { width: 220px; text-align: left; font-weight: 600; color: var(--muted); }
table.kv td { text-align: left; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; }
.chip { border: 1px solid var(--line); border-radius: 14px; padding: 3px 12px; font-size: 13px; background: #fafbfc; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 8px; }
.badge { padding: 2px 8px; border-radius: 10px; font-weight: 600; font-size: 13px; }
.badge.ok { background: var(--okbg); color: var(--ok); }
.badge.bad { background: var(--badbg); color: var(--bad); }
.muted { color: var(--muted); }
figure { margin: 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figure.narrow img { max-width: 760px; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 8px; padding: 12px; font-size: 13px;
      overflow-x: auto; max-height: 480px; }
ul.notes, ul.defs { font-size: 14px; }
footer { margin-top: 24px; color: var(--muted); }
@media print { pre { max-height: none; } main { padding: 0; } body { background: #fff; } }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(3, 1fr); } .two { grid-template-columns: 1fr; } }
"""
