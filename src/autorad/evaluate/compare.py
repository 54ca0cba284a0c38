"""``autorad compare``: side-by-side metrics of several runs as a Markdown table (and optionally Markdown + CSV).

Each run folder must hold ``metrics.json`` (written by ``autorad train`` / ``autorad evaluate``); ``run.json``,
when present, gives the run's ``name`` and ``model_kind`` (else the folder name is used). An evaluation's
``training_overlap`` (:mod:`autorad.train.record`) adds a "training overlap" column: a row evaluated on patients
its model trained on is marked NOT EXTERNAL, named in a note and never bold.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_text
from autorad.core.outputs import claim_output_files, prepare_output_file
from autorad.pretrained import resolve_run

# (flattened metric key, column title, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("macro_auc", "macro AUC", True),
    ("macro_f1", "macro F1", True),
    *((f"per_class.{c}.f1", f"F1 {c}", True) for c in CLASS_NAMES),
    ("ece", "ECE", False),
)


def output_files(out: str | Path) -> tuple[Path, Path]:
    """The two files ``compare --out OUT`` writes: ``OUT.md`` and ``OUT.csv`` (a .md/.csv suffix is dropped)."""
    stem = Path(out)
    if stem.suffix.lower() in (".md", ".csv"):
        stem = stem.with_suffix("")
    return Path(f"{stem}.md"), Path(f"{stem}.csv")


def compare(runs: list[str | Path], out: str | Path | None = None, overwrite: bool = False) -> str:
    """Markdown table comparing runs (rows) on pooled metrics with fold mean ± std where available.

    With ``out``, also writes ``<out>.md`` and ``<out>.csv`` atomically (a ``.md`` / ``.csv`` suffix on ``out``
    is dropped first); neither may exist already (unless autorad wrote it and ``overwrite``) or lie inside a run.
    Raises :class:`~autorad.core.errors.InputError` naming the run when a run folder or its ``metrics.json`` is
    missing or unreadable.

    Args:
        runs: run or evaluation folders (each holding metrics.json), or built-in model names (``"lidc"``).
        out: also write ``<out>.md`` and ``<out>.csv``; None: only return the table.
        overwrite: let ``out``'s files replace ones autorad wrote earlier.

    Returns:
        The Markdown table.
    """
    if not runs:
        raise InputError("compare needs at least one run folder")
    runs = [resolve_run(r) for r in runs]  # built-in model names (``lidc``) or folders
    files = output_files(out) if out is not None else ()
    for f in files:
        prepare_output_file(f, inputs=runs, overwrite=overwrite, option="--out")
    rows = [_read_run(Path(r)) for r in runs]
    table = markdown_table(rows)
    if files:
        with claim_output_files([("--out", f) for f in files], overwrite=overwrite) as scratch:
            for tmp, text in zip(scratch, (table, csv_table(rows)), strict=True):
                atomic_write_text(tmp, text)
    return table


def overlapping(row: dict[str, Any]) -> bool:
    """Whether a row evaluates a model on data it trained on (``training_overlap`` of patients or nodules > 0)."""
    o = row.get("overlap")
    return isinstance(o, dict) and (int(o.get("patients") or 0) > 0 or int(o.get("nodules") or 0) > 0)


def _overlap_cell(row: dict[str, Any]) -> str:
    if not row.get("evaluation"):
        return "— (cross-validated)"
    o = row.get("overlap")
    if o is None:
        return "unknown"
    return f"{int(o.get('patients') or 0)} patients: NOT EXTERNAL" if overlapping(row) else "none (external)"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of :func:`compare`; the best pooled value of each column is bold (several runs), among
    the rows that are not evaluated on their model's training data (:func:`overlapping`)."""
    eligible = [r for r in rows if not overlapping(r)]
    best = {key: _best([r["pooled"].get(key) for r in eligible], higher) for key, _, higher in COLUMNS}
    evaluations = any(r.get("evaluation") for r in rows)
    head = ["run", "model", "n", *(title for _, title, _ in COLUMNS)] + (["training overlap"] if evaluations else [])
    records = []
    for r in rows:
        cells = [_md_escape(r["name"]), _md_escape(r["model"] or "—"), str(r["n"])]
        for key, _, _ in COLUMNS:
            value = r["pooled"].get(key)
            text = _fmt(value)
            if len(rows) > 1 and value is not None and value == best[key] and not overlapping(r):
                text = f"**{text}**"
            if r["fold_mean"].get(key) is not None:
                std = r["fold_std"].get(key)
                text += f" ({_fmt(r['fold_mean'][key])} ± {_fmt(std)})" if std is not None else \
                    f" ({_fmt(r['fold_mean'][key])})"
            cells.append(text)
        records.append(cells + ([_overlap_cell(r)] if evaluations else []))
    align = ["left"] * 2 + ["right"] * (len(head) - 2)
    lines = [pd.DataFrame(records, columns=head).to_markdown(index=False, tablefmt="pipe", colalign=align,
                                                             disable_numparse=True)]
    lines.append("")
    lines.append("Pooled out-of-fold value (fold mean ± sample std); ECE: lower is better; bold: best pooled value.")
    marked = [r for r in rows if overlapping(r)]
    if marked:
        lines.append("")
        lines.append("NOT EXTERNAL: " + ", ".join(_md_escape(r["name"]) for r in marked) + " evaluated a model on "
                     "patients it was trained on (training overlap); those values overstate performance on new "
                     "patients and are never bold.")
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict[str, Any]]) -> str:
    """CSV of the same numbers at full (6-decimal) precision: one column each for pooled, fold mean, fold std."""
    records = []
    for r in rows:
        rec: dict[str, Any] = {"run": r["name"], "path": r["path"], "model": r["model"], "n": r["n"]}
        for key, _, _ in COLUMNS:
            col = key.replace("per_class.", "").replace(".f1", "_f1")
            rec[col] = r["pooled"].get(key)
            rec[f"{col}_fold_mean"] = r["fold_mean"].get(key)
            rec[f"{col}_fold_std"] = r["fold_std"].get(key)
        o = r.get("overlap") if isinstance(r.get("overlap"), dict) else {}
        rec["training_overlap_patients"] = o.get("patients")
        rec["training_overlap_nodules"] = o.get("nodules")
        records.append(rec)
    buf = io.StringIO()
    pd.DataFrame.from_records(records).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _read_run(run: Path) -> dict[str, Any]:
    from autorad.evaluate.metrics import flatten_scalars

    if not run.is_dir():
        raise InputError(f"run {run}: folder not found")
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise InputError(f"run {run}: no metrics.json (did training or evaluation finish?)")
    metrics = _load_json(metrics_file, run)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("pooled"), dict):
        raise InputError(f"run {run}: metrics.json has no 'pooled' metrics (not written by autorad?)")
    info = _load_json(run / "run.json", run) if (run / "run.json").is_file() else {}
    info = info if isinstance(info, dict) else {}
    return {
        "name": str(info.get("name") or run.name),
        "model": info.get("model_kind"),
        "path": str(run),
        "n": metrics.get("n", metrics["pooled"].get("n")),
        "pooled": flatten_scalars(metrics["pooled"]),
        "fold_mean": metrics.get("fold_mean") or {},
        "fold_std": metrics.get("fold_std") or {},
        # an evaluation (autorad evaluate) of a trained model, with its overlap with the training data (None:
        # not recorded); a cross-validation run has neither
        "evaluation": "training_overlap" in metrics or bool(info.get("evaluated_run")),
        "overlap": metrics.get("training_overlap"),
    }


def _load_json(path: Path, run: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"run {run}: cannot read {path.name} ({type(err).__name__}: {err})") from None


def _best(values: list[float | None], higher: bool) -> float | None:
    defined = [v for v in values if v is not None]
    if not defined:
        return None
    return max(defined) if higher else min(defined)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
