"""``autorad compare``: table content, written files and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorad import CLASS_NAMES
from autorad.apps.cli import main
from autorad.core.errors import InputError
from autorad.core.io import write_json
from autorad.evaluate.compare import compare
from autorad.evaluate.metrics import compute_metrics


def predictions(n: int, seed: int, signal: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += signal
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pd.DataFrame({"nodule_id": [f"n{i}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)],
                         "fold": np.arange(n) % 3, "label": [CLASS_NAMES[i] for i in y],
                         "prob_benign": p[:, 0], "prob_unsure": p[:, 1], "prob_malignant": p[:, 2],
                         "pred": [CLASS_NAMES[i] for i in p.argmax(axis=1)]})


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    good, weak = tmp_path / "run_good", tmp_path / "run_weak"
    m_good = compute_metrics(predictions(90, 0, 3.0))
    m_weak = compute_metrics(predictions(60, 1, 0.0), by_fold=False)
    write_json(good / "metrics.json", m_good)
    write_json(good / "run.json", {"name": "autorad|lung", "model_kind": "autorad"})
    write_json(weak / "metrics.json", m_weak)
    return good, weak, m_good, m_weak


def test_table_content(runs):
    good, weak, m_good, m_weak = runs
    table = compare([good, weak])
    lines = [" ".join(line.split()) for line in table.splitlines()]  # cells are padded to the column width
    assert lines[0].startswith("| run | model | n | accuracy | macro AUC | macro F1 | F1 benign | F1 unsure")
    assert lines[0].endswith("| ECE |")
    good_row, weak_row = lines[2], lines[3]
    assert good_row.startswith("| autorad\\|lung | autorad | 90 |")  # run.json name, Markdown-escaped
    assert weak_row.startswith("| run_weak | — | 60 |")  # folder name without run.json
    acc, mean, std = m_good["pooled"]["accuracy"], m_good["fold_mean"]["accuracy"], m_good["fold_std"]["accuracy"]
    assert f"**{acc:.3f}** ({mean:.3f} ± {std:.3f})" in good_row  # the stronger run is bold
    f1u = m_weak["pooled"]["per_class"]["unsure"]["f1"]
    assert f" {f1u:.3f} |" in weak_row and "±" not in weak_row  # no folds: pooled value only
    assert m_good["pooled"]["macro_auc"] > m_weak["pooled"]["macro_auc"]
    assert f"**{m_good['pooled']['macro_auc']:.3f}**" in good_row


def test_writes_markdown_and_csv(runs, tmp_path):
    good, weak, m_good, m_weak = runs
    table = compare([good, weak], out=tmp_path / "out" / "cmp.md")
    assert (tmp_path / "out" / "cmp.md").read_text() == table
    csv = pd.read_csv(tmp_path / "out" / "cmp.csv")
    assert list(csv["run"]) == ["autorad|lung", "run_weak"]
    assert csv.loc[0, "accuracy"] == m_good["pooled"]["accuracy"]
    assert csv.loc[0, "unsure_f1_fold_std"] == m_good["fold_std"]["per_class.unsure.f1"]
    assert csv.loc[1, "ece"] == m_weak["pooled"]["ece"] and np.isnan(csv.loc[1, "ece_fold_mean"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cmp.csv", "cmp.md"]  # no temp files left
    compare([good], out=tmp_path / "plain")
    assert (tmp_path / "plain.md").is_file() and (tmp_path / "plain.csv").is_file()


def test_errors_name_the_run(runs, tmp_path):
    good, _, _, _ = runs
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(InputError, match="empty_run.*no metrics.json"):
        compare([good, empty])
    with pytest.raises(InputError, match="nowhere.*not found"):
        compare([tmp_path / "nowhere"])
    (empty / "metrics.json").write_text("{not json")
    with pytest.raises(InputError, match="empty_run.*cannot read metrics.json"):
        compare([empty])
    (empty / "metrics.json").write_text("{}")
    with pytest.raises(InputError, match="no 'pooled'"):
        compare([empty])
    with pytest.raises(InputError, match="at least one"):
        compare([])
    assert not list(tmp_path.glob("*.md"))  # nothing written on error


def test_cli(runs, tmp_path, capsys):
    good, weak, _, _ = runs
    assert main(["compare", str(good), str(weak)]) == 0
    assert "autorad\\|lung" in capsys.readouterr().out
    assert main(["compare", str(good), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autorad: error: run ") and "missing" in err and "Traceback" not in err
