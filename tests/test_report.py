"""The HTML run report and its figures: embedding, warnings, escaping, determinism."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.evaluate import plots
from autorad.evaluate.metrics import compute_metrics
from autorad.evaluate.report import render_html, software_versions, write_report

EVIL = "</pre><script>alert('x')</script><b>"


def predictions(n: int = 60, seed: int = 0, folds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pd.DataFrame({
        "nodule_id": [f"NODULE-ZQX-{i:04d}" for i in range(n)],
        "patient_id": [f"PATIENT-ZQX-{i:04d}" for i in range(n)],
        "fold": np.arange(n) % folds,
        "label": [CLASS_NAMES[i] for i in y],
        "prob_benign": p[:, 0], "prob_unsure": p[:, 1], "prob_malignant": p[:, 2],
        "pred": [CLASS_NAMES[i] for i in p.argmax(axis=1)],
    })


def meta(weights: str = "real", source: str = "maxslice", config: str = "name: demo\n") -> dict:
    return {
        "name": "demo-run",
        "config_yaml": config,
        "encoders": [{"name": "vis-enc", "kind": "vision", "weights": weights, "source": "local/vis"},
                     {"name": "txt-enc", "kind": "text", "weights": "real", "source": "local/txt"}],
        "data": {"source": source, "path": "/data/x.npz", "label_rule": "median", "min_readers": 3,
                 "n_nodules": 60, "class_counts": {"benign": 20, "unsure": 20, "malignant": 20}},
        "run_time_s": 75.0,
        "date": "2026-01-01 00:00 UTC",
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, pd.DataFrame]:
    df = predictions()
    m = compute_metrics(df)
    run = tmp_path_factory.mktemp("run")
    write_report(run, m, df, meta())
    return run, m, df


def figures_of(run: Path) -> dict[str, tuple[str, bytes]]:
    names = {"confusion": "confusion_matrix", "roc": "roc", "reliability": "reliability",
             "folds": "fold_accuracy"}
    return {k: ("caption", (run / "figures" / f"{v}.png").read_bytes()) for k, v in names.items()}


def test_report_is_self_contained_with_figures(written):
    run, m, _ = written
    page = (run / "report.html").read_text(encoding="utf-8")
    files = sorted(p.name for p in (run / "figures").iterdir())
    assert files == ["confusion_matrix.png", "fold_accuracy.png", "reliability.png", "roc.png"]
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(embedded) == 4
    on_disk = {(run / "figures" / f).read_bytes() for f in files}
    assert {base64.b64decode(e) for e in embedded} == on_disk
    assert all(b.startswith(b"\x89PNG") for b in on_disk)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # no external resources
    assert f"{m['pooled']['accuracy']:.3f}" in page and f"{m['pooled']['macro_auc']:.3f}" in page
    assert f"{m['fold_mean']['accuracy']:.3f} ± {m['fold_std']['accuracy']:.3f}" in page
    assert "1 min 15 s" in page and "2026-01-01 00:00 UTC" in page and "median" in page
    assert "RANDOM ENCODER WEIGHTS" not in page and "SIMULATED DATA" not in page
    assert "ZQX" not in page  # no nodule or patient table
    assert not list(run.glob(".*tmp*")) and not list((run / "figures").glob(".*tmp*"))


def test_software_versions_listed(written):
    page = (written[0] / "report.html").read_text(encoding="utf-8")
    versions = software_versions()
    assert versions["autorad"] == "0.1.0" and "torch" in versions and "pyradiomics" in versions
    assert f"<b>torch</b> {versions['torch']}</span>" in page


def test_random_weights_warning_only_when_meant(written):
    run, m, _ = written
    figs = figures_of(run)
    real = render_html(m, meta("real"), figs, "r")
    random = render_html(m, meta("random"), figs, "r")
    assert "RANDOM ENCODER WEIGHTS" not in real
    assert "RANDOM ENCODER WEIGHTS" in random and "vis-enc (random)" in random
    assert "radiomics-only" in render_html(m, {**meta(), "encoders": []}, figs, "r")


def test_phantom_is_flagged(written):
    run, m, _ = written
    page = render_html(m, meta(source="phantom"), figures_of(run), "r")
    assert "SIMULATED DATA" in page and "simulated data, not patient CT" in page


def test_every_string_is_escaped(written):
    run, m, _ = written
    bad = meta(config=f"name: x\nnote: \"{EVIL}\"\n")
    bad["encoders"][0]["name"] = EVIL
    bad["data"]["path"] = EVIL
    bad["warnings"] = [EVIL]
    bad["evaluated_run"] = EVIL
    page = render_html({**m, "training_overlap": {"patients": 0, "nodules": 0}}, bad, figures_of(run), run_name=EVIL)
    assert "Run warnings" in page and "External evaluation" in page
    assert EVIL not in page and "<script" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_figures_are_deterministic(written, tmp_path):
    run, m, df = written
    write_report(tmp_path, m, df, meta())
    for f in ("confusion_matrix.png", "roc.png", "reliability.png", "fold_accuracy.png"):
        assert (tmp_path / "figures" / f).read_bytes() == (run / "figures" / f).read_bytes(), f
    assert (tmp_path / "report.html").read_bytes() == (run / "report.html").read_bytes()


def test_without_folds_and_with_an_absent_class(tmp_path):
    df = predictions(30, seed=2)
    df = df[df["label"] != "unsure"].drop(columns=["fold"])
    m = compute_metrics(df, by_fold=False)
    out = write_report(tmp_path, m, df, {})
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and not (tmp_path / "figures" / "fold_accuracy.png").exists()
    assert "No per-fold metrics" in page and "not recorded" in page
    assert "unsure absent from the labels" in page
    assert "AUC n/a" not in page  # the legend text is in the PNG, not the HTML


def test_plot_errors_are_user_errors(tmp_path):
    with pytest.raises(InputError):
        plots.plot_confusion_matrix([[1, 2], [3, 4]], tmp_path / "x.png")
    with pytest.raises(InputError):
        plots.plot_fold_accuracy({"per_fold": {}}, tmp_path / "x.png")
    with pytest.raises(InputError, match="compute_metrics"):
        write_report(tmp_path, {}, predictions(), {})
