"""``autorad run``: the whole pipeline on a small phantom set, resumable; config paths stay in bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autorad.apps.pipeline import run
from autorad.core.errors import ConfigError

SMALL = """
extends: demo
name: small-phantom
out_dir: runs/small
data: {source: phantom, phantom_n: 40, folds: {n_folds: 3}}
radiomics: {jobs: 1}
model: {vision_encoder: tiny-vit-2d, text_encoder: tiny-text, n_ctx: 2}
train: {epochs: 1}
"""


def test_run_end_to_end_then_resume(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    proc = subprocess.run([sys.executable, "-m", "autorad", "run", str(cfg), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = tmp_path / "out" / "run" / "report.html"
    assert proc.stdout.strip() == f"report: {report}"
    assert "phantom" in report.read_text().lower()
    metrics = json.loads((tmp_path / "out" / "run" / "metrics.json").read_text())
    assert metrics["n"] == 40
    assert (tmp_path / "out" / "dataset" / "radiomics.parquet").is_file()
    times = json.loads((tmp_path / "out" / "stage_times.json").read_text())
    assert set(times) == {"dataset", "radiomics", "embeddings", "train", "total"}
    assert times["total"] == pytest.approx(sum(v for k, v in times.items() if k != "total"), abs=0.2)
    # the rerun reuses every stage (no model trained again) and gives the same metrics
    first = (tmp_path / "out" / "run" / "metrics.json").read_bytes()
    models = sorted((tmp_path / "out" / "run").rglob("*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    assert len(models) >= 4  # 3 folds and the final model
    again = run(cfg, out=tmp_path / "out")
    assert again == report and (tmp_path / "out" / "run" / "metrics.json").read_bytes() == first
    assert {p: p.stat().st_mtime_ns for p in models} == stamps  # the trained models were reused, not retrained
    rerun = json.loads((tmp_path / "out" / "stage_times.json").read_text())
    assert set(rerun) == set(times) and rerun["radiomics"] < times["radiomics"]


@pytest.mark.parametrize(("role", "encoder"), [("vision", "aimv2-large-patch14-224"), ("text", "clip-vit-b16-text")])
def test_weights_that_cannot_be_had_stop_the_run_before_the_radiomics(tmp_path, role, encoder):
    """Offline, the paper's encoders cannot be downloaded: one line naming the option, exit 2, and no minutes of
    radiomics first."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "autorad", "run", str(cfg), "--out", str(tmp_path / "out"),
                           "--set", f"model.{role}_encoder={encoder}"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("autorad: error:")]
    assert len(errors) == 1 and f"model.{role}_encoder" in errors[0] and f"model.{role}_weights" in errors[0]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "dataset" / "manifest.parquet").is_file()  # the quick stage ran
    assert not (tmp_path / "out" / "dataset" / "radiomics.parquet").exists()  # the long one did not


@pytest.mark.parametrize("out_dir", ["/tmp/elsewhere", "../escape", "runs/../../x"])
def test_config_cannot_write_outside(tmp_path, monkeypatch, out_dir):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"extends: demo\nout_dir: {out_dir}\n")
    with pytest.raises(ConfigError, match="out_dir"):
        run(cfg)
