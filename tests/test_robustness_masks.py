"""``autorad robustness``: mask variants, the reference equals ``autorad evaluate``, table + figure written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autorad.apps.robustness import dice, long_axis_mm, robustness, variant_mask
from autorad.core.errors import InputError
from autorad.evaluate.apply import evaluate
from autorad.train.entry import train
from autorad.train.resolve import load_config


def _ellipse(h=40, w=40, a=8, b=4):
    rows, cols = np.ogrid[:h, :w]
    return ((rows - 20) / a) ** 2 + ((cols - 20) / b) ** 2 <= 1


def test_variants_grow_shrink_and_disks():
    m = _ellipse()
    hu = np.where(m, 30, -850).astype(np.int16)
    g1, g2 = variant_mask("grow1", hu, m, 0.7), variant_mask("grow2", hu, m, 0.7)
    s1, s2 = variant_mask("shrink1", hu, m, 0.7), variant_mask("shrink2", hu, m, 0.7)
    assert s2.sum() < s1.sum() < m.sum() < g1.sum() < g2.sum() and (g1 >= m).all() and (s1 <= m).all()
    eq = variant_mask("eqdisk", hu, m, 0.7)
    assert abs(eq.sum() - m.sum()) < 0.1 * m.sum()
    la = variant_mask("longaxis", hu, m, 0.7)
    assert abs(long_axis_mm(m, 0.7) - 16 * 0.7) < 1.5 and la.sum() > 1.5 * m.sum()
    tiny = np.zeros((9, 9), bool)
    tiny[4, 4:6] = True
    assert variant_mask("shrink2", hu[:9, :9], tiny, 0.7).sum() == 1  # eroded away: keeps the centre pixel
    assert dice(m, m) == 1.0 and 0 < dice(m, g2) < 1


@pytest.mark.shared_data
def test_robustness_reference_equals_evaluate_and_writes_table(small_maxslice_dataset, tmp_path):
    run = train(small_maxslice_dataset, load_config("radiomics_logreg"), tmp_path / "run")
    ev = pd.read_parquet(evaluate(run, small_maxslice_dataset, tmp_path / "ev") / "predictions.parquet")
    table = robustness(run, small_maxslice_dataset, tmp_path / "rob",
                       variants=("consensus", "shrink1", "eqdisk", "longaxis"), limit=24)
    ref = pd.read_parquet(tmp_path / "rob" / "predictions_consensus.parquet")
    cols = ["prob_benign", "prob_unsure", "prob_malignant"]
    assert len(ref) == 24
    want = ev.set_index("nodule_id").loc[ref["nodule_id"], cols].to_numpy()
    assert np.allclose(ref[cols].to_numpy(), want, atol=1e-6)
    assert table["variant"].tolist() == ["consensus", "shrink1", "eqdisk", "longaxis"]
    assert table.loc[0, "delta_accuracy"] == 0 and table.loc[0, "mean_dice_vs_consensus"] == 1.0
    assert (table["mean_dice_vs_consensus"].iloc[1:] < 1).all()
    for f in ("robustness.csv", "robustness.md", "robustness.png", "robustness.json"):
        assert (tmp_path / "rob" / f).is_file()
    assert "| consensus |" in (tmp_path / "rob" / "robustness.md").read_text()
    oof = robustness(run, small_maxslice_dataset, tmp_path / "oof", variants=("consensus",), oof=True)
    cv = pd.read_parquet(run / "predictions.parquet").set_index("nodule_id")
    got = pd.read_parquet(tmp_path / "oof" / "predictions_consensus.parquet").set_index("nodule_id")
    assert np.allclose(got[cols].to_numpy(), cv.loc[got.index, cols].to_numpy(), atol=1e-6)
    assert oof.loc[0, "accuracy"] == pytest.approx(float((cv["pred"] == cv["label"]).mean()))
    with pytest.raises(InputError, match="already holds autorad output"):
        robustness(run, small_maxslice_dataset, tmp_path / "rob", variants=("consensus",))
    cli = subprocess.run([sys.executable, "-m", "autorad", "robustness", str(run), "--data",
                          str(small_maxslice_dataset), "--out", str(tmp_path / "rob2"), "--variants", "grow1",
                          "--limit", "10"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert pd.read_csv(tmp_path / "rob2" / "robustness.csv")["n"].tolist() == [10]
    bad = subprocess.run([sys.executable, "-m", "autorad", "robustness", str(run), "--data",
                          str(small_maxslice_dataset), "--out", str(tmp_path / "rob3"), "--variants", "blur"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--variants" in bad.stderr and not (tmp_path / "rob3").exists()


def test_click_variant_segments_from_the_centroid():
    pytest.importorskip("autorad.segment", reason="the click segmenter is not in this checkout")
    rows, cols = np.ogrid[:64, :64]
    m = ((rows - 32) / 7) ** 2 + ((cols - 30) / 5) ** 2 <= 1
    hu = np.where(m, 30, -850).astype(np.int16)
    click = variant_mask("click", hu, m, 0.7)
    assert click.shape == m.shape and dice(click, m) > 0.7
