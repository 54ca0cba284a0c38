"""Built-in models by name (``autorad.pretrained``): every command that takes a RUN folder takes ``lidc``, through
the real CLI, against a small trained run installed as the built-in model; the built-in folder is never written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autorad.pretrained import BUILTIN_DIR_ENV, builtin_models, resolve_run


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autorad", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture()
def dataset(phantom_logreg_run: Path) -> Path:
    return phantom_logreg_run.parent / "dataset"


def test_resolve_run_rule(builtin_lidc, tmp_path, monkeypatch):
    """The exact name is the built-in model; a path (./lidc, a Path object, anything with a separator) is a path."""
    monkeypatch.chdir(tmp_path)
    assert resolve_run("lidc") == builtin_lidc
    assert resolve_run("./lidc") == Path("lidc")
    assert resolve_run(Path("lidc")) == Path("lidc")
    assert resolve_run("runs/lidc") == Path("runs/lidc")
    assert resolve_run("other") == Path("other")


def test_models_list_shows_the_installed_model_with_its_metrics(builtin_lidc):
    metrics = json.loads((builtin_lidc / "metrics.json").read_text())["pooled"]
    [row] = [r for r in builtin_models() if r["name"] == "lidc"]
    assert row["installed"] and row["card"]
    assert row["accuracy"] == metrics["accuracy"] and row["macro_auc"] == metrics["macro_auc"]
    assert row["unsure_f1"] == metrics["per_class"]["unsure"]["f1"]
    res = _cli("models", "list")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("lidc"))
    assert line.split()[1] == "yes" and f"{metrics['accuracy']:.3f}" in line and f"{metrics['macro_auc']:.3f}" in line
    shown = json.loads(_cli("models", "list", "--json").stdout)
    assert shown[0]["name"] == "lidc" and shown[0]["installed"] is True
    card = _cli("models", "show", "lidc")
    assert card.returncode == 0 and card.stdout == (builtin_lidc / "MODEL_CARD.md").read_text()


def test_a_builtin_that_is_not_installed_is_one_error_line(tmp_path, dataset, monkeypatch, capsys):
    from autorad.apps.cli import main

    env = {BUILTIN_DIR_ENV: str(tmp_path / "empty")}
    listed = _cli("models", "list", env=env)
    assert listed.returncode == 0 and next(ln for ln in listed.stdout.splitlines()
                                           if ln.startswith("lidc")).split()[1] == "no"
    monkeypatch.setenv(BUILTIN_DIR_ENV, str(tmp_path / "empty"))
    for args in (["models", "show", "lidc"], ["evaluate", "lidc", "--data", str(dataset), "--out", str(tmp_path / "o")],
                 ["predict", "lidc", "--image", str(tmp_path / "ct.nii.gz"), "--center", "1,2,3"], ["serve"],
                 ["compare", "lidc"], ["robustness", "lidc", "--data", str(dataset), "--out", str(tmp_path / "r")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("autorad: error: the built-in model 'lidc' is not installed"), err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["models", "show", "nope"]) == 2
    assert "no built-in model 'nope'" in capsys.readouterr().err


def test_evaluate_compare_and_robustness_take_the_name_and_write_only_to_out(builtin_lidc, dataset, tmp_path):
    before = _snapshot(builtin_lidc)
    res = _cli("evaluate", "lidc", "--data", str(dataset), "--out", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    direct = _cli("evaluate", str(builtin_lidc), "--data", str(dataset), "--out", str(tmp_path / "ev_path"))
    assert direct.returncode == 0, direct.stderr
    a, b = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("ev", "ev_path"))
    np.testing.assert_allclose(a.filter(like="prob_").to_numpy(), b.filter(like="prob_").to_numpy(), atol=1e-12)
    inside = _cli("evaluate", "lidc", "--data", str(dataset), "--out", str(builtin_lidc / "ev"))
    assert inside.returncode == 2 and inside.stderr.startswith("autorad: error: --out")
    rob = _cli("robustness", "lidc", "--data", str(dataset), "--out", str(tmp_path / "rob"), "--variants",
               "consensus", "grow1", "--limit", "4")
    assert rob.returncode == 0, rob.stderr
    assert (tmp_path / "rob" / "robustness.csv").is_file()
    table = _cli("compare", "lidc", str(tmp_path / "ev"), "--out", str(tmp_path / "cmp"))
    assert table.returncode == 0, table.stderr
    assert len([ln for ln in table.stdout.splitlines() if ln.startswith("|")]) == 4  # head, rule, 2 rows
    assert _snapshot(builtin_lidc) == before


def test_a_folder_named_like_a_builtin_is_reached_as_dot_slash(builtin_lidc, dataset, tmp_path):
    (tmp_path / "lidc").mkdir()  # not a run: ./lidc names it, lidc names the built-in model
    here = _cli("evaluate", "./lidc", "--data", str(dataset), "--out", str(tmp_path / "o1"), cwd=tmp_path)
    assert here.returncode == 2 and "is not a trained run" in here.stderr
    builtin = _cli("evaluate", "lidc", "--data", str(dataset), "--out", str(tmp_path / "o2"), cwd=tmp_path)
    assert builtin.returncode == 0, builtin.stderr
    assert "for the folder of that name here, write ./lidc" in builtin.stderr


def test_predict_and_serve_take_the_name(builtin_lidc, dataset, tmp_path):
    """``autorad predict lidc`` on a NIfTI prints what the Python API gives; ``serve`` defaults to ``lidc``."""
    import SimpleITK as sitk  # noqa: N813

    from autorad.apps.cli import build_parser
    from autorad.apps.predictor import Predictor
    from autorad.data.dataset import Dataset

    ds = Dataset(dataset)
    nid = ds.nodule_ids[0]
    arrays, ps = ds.arrays(nid), float(ds.row(nid)["pixel_spacing_mm"])
    for name, arr in (("ct.nii.gz", arrays["slice_hu"][None]), ("mask.nii.gz", arrays["slice_mask"][None])):
        img = sitk.GetImageFromArray(arr.astype(np.int16 if name == "ct.nii.gz" else np.uint8))
        img.SetSpacing((ps, ps, 1.0))
        sitk.WriteImage(img, str(tmp_path / name))
    res = _cli("predict", "lidc", "--image", str(tmp_path / "ct.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model"]["run"] == "lidc"
    mine = Predictor.load("lidc").predict(arrays["slice_hu"], mask=arrays["slice_mask"], spacing_mm=(ps, ps))
    for c, p in mine.probabilities_by_class.items():
        assert out["probabilities"][c] == pytest.approx(p, abs=1e-6)
    assert build_parser().parse_args(["serve"]).run == "lidc"
    pytest.importorskip("fastapi")
    from autorad.apps.serve.model import ServedModel

    assert ServedModel("lidc").predictor.run_dir == builtin_lidc
