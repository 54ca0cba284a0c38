"""Radiomics extraction on synthetic images: feature set, degenerate masks, errors, cache keys, 3D mode."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_radiomics_helpers import blob_image, blob_mask, record, set_mask, write_synthetic

from autorad.config import RadiomicsConfig
from autorad.core.errors import ConfigError, InputError, MissingDependencyError
from autorad.radiomics import load_radiomics
from autorad.radiomics.extract import STATUS_NO_VOLUME, extract_one, run_radiomics
from autorad.radiomics.settings import load_params
from autorad.radiomics.table import read_meta

# A small parameter file for tests that are about plumbing, not about the paper's feature set.
SMALL_PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": None, "shape2D": None},
                "setting": {"binWidth": 25, "label": 1, "force2D": False}}


def _prefixes(features: dict[str, float]) -> Counter:
    return Counter(k.split("_")[0] for k in features)


def test_shipped_params_give_the_papers_1497_features() -> None:
    status, feats = extract_one(blob_image(), blob_mask(), 0.7)
    assert status == "ok"
    assert len(feats) == 1497
    counts = _prefixes(feats)
    assert counts.pop("original") == 102
    assert len(counts) == 15 and set(counts.values()) == {93}
    assert set(counts) >= {"log-sigma-1-0-mm-3D", "log-sigma-5-0-mm-3D", "wavelet-LH", "wavelet-HH", "square",
                           "squareroot", "logarithm", "exponential", "gradient", "lbp-2D"}
    for name in ("original_firstorder_Mean", "log-sigma-1-0-mm-3D_glcm_Contrast",
                 "wavelet-LH_glszm_ZoneEntropy", "original_shape2D_Perimeter", "lbp-2D_ngtdm_Busyness"):
        assert name in feats
    assert all(np.isfinite(v) for v in feats.values())


def test_spacing_is_applied_in_mm() -> None:
    _, a = extract_one(blob_image(), blob_mask(), 0.5, SMALL_PARAMS)
    _, b = extract_one(blob_image(), blob_mask(), 1.0, SMALL_PARAMS)
    assert b["original_shape2D_PixelSurface"] == pytest.approx(4 * a["original_shape2D_PixelSurface"])
    assert a["original_firstorder_Mean"] == b["original_firstorder_Mean"]
    # anisotropic (row, column) spacing: area scales by the product
    _, c = extract_one(blob_image(), blob_mask(), (0.5, 1.0), SMALL_PARAMS)
    assert c["original_shape2D_PixelSurface"] == pytest.approx(2 * a["original_shape2D_PixelSurface"])


def _mask(kind: str, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    if kind == "one_pixel":
        m[10, 10] = True
    elif kind == "line":
        m[10, 4:20] = True
    elif kind == "whole_image":
        m[:] = True
    elif kind == "border":
        m[:6, :7] = True
    elif kind == "blob":
        m = blob_mask(size)
    return m


@pytest.mark.parametrize(("kind", "image_kind", "expected"), [
    ("empty", "noise", "empty mask"),
    ("one_pixel", "noise", "failed: mask only contains 1 segmented voxel"),
    ("line", "noise", "failed: mask has too few dimensions"),
    ("whole_image", "noise", "ok"),
    ("border", "noise", "ok"),
    ("blob", "flat", "ok"),
    ("blob", "nan", "non-finite image values"),
])
def test_degenerate_inputs_give_a_status_not_an_exception(kind: str, image_kind: str, expected: str) -> None:
    img = blob_image(32, flat=image_kind == "flat")
    if image_kind == "nan":
        img[3, 3] = np.nan
    status, feats = extract_one(img, _mask(kind), 0.7, SMALL_PARAMS if kind != "whole_image" else "autorad_2d")
    assert status.startswith(expected), status
    assert bool(feats) == (expected == "ok")


def test_mismatched_shapes_and_bad_spacing_are_statuses() -> None:
    status, _ = extract_one(np.zeros((8, 8)), np.ones((8, 9), bool), 0.7, SMALL_PARAMS)
    assert status.startswith("error: image shape")
    status, _ = extract_one(blob_image(), blob_mask(), -1.0, SMALL_PARAMS)
    assert status.startswith("failed: spacing must be positive")


def test_nonfinite_feature_values_are_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    import autorad.radiomics.extract as ex

    class FakeExtractor:
        def execute(self, *_a, **_k):
            return {"diagnostics_x": 1, "original_firstorder_Mean": 1.0, "original_glcm_Correlation": np.nan,
                    "original_firstorder_Energy": np.inf}

    monkeypatch.setattr(ex, "_extractor", lambda params: FakeExtractor())
    status, feats = ex.extract_one(blob_image(), blob_mask(), 0.7, SMALL_PARAMS)
    assert status.startswith("non-finite: 2 features (original_glcm_Correlation, original_firstorder_Energy")
    assert np.isnan(feats["original_glcm_Correlation"]) and feats["original_firstorder_Mean"] == 1.0


def test_batch_records_each_failure_and_never_crashes(tmp_path: Path) -> None:
    size = 32
    recs = [record("ok1", blob_image(size, seed=1), _mask("blob", size)),
            record("border", blob_image(size, seed=2), _mask("border", size)),
            record("onepx", blob_image(size, seed=3), _mask("one_pixel", size)),
            record("line", blob_image(size, seed=4), _mask("line", size)),
            record("flat", blob_image(size, flat=True), _mask("blob", size)),
            record("empty", blob_image(size, seed=5), _mask("blob", size))]
    ds = write_synthetic(tmp_path / "ds", recs)
    set_mask(ds, "empty", np.zeros((size, size), bool))
    out = run_radiomics(ds, RadiomicsConfig(params="autorad_2d"))
    assert out == ds / "radiomics.parquet"
    df = load_radiomics(ds)
    st = dict(zip(df["nodule_id"], df["status"], strict=True))
    assert st["ok1"] == st["border"] == st["flat"] == "ok"
    assert st["empty"] == "empty mask"
    assert st["onepx"].startswith("failed: mask only contains 1 segmented voxel")
    assert st["line"].startswith("failed: mask has too few dimensions")
    assert df.shape == (6, 2 + 1497)
    feats = df.set_index("nodule_id").drop(columns="status")
    assert feats.loc[["empty", "onepx", "line"]].isna().all().all()
    assert np.isfinite(feats.loc[["ok1", "border", "flat"]].to_numpy()).all()
    meta = read_meta(ds)
    assert meta["status_counts"]["ok"] == 3 and meta["n_features"] == 1497


def test_cache_reuse_and_parameter_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autorad.radiomics.extract as ex

    recs = [record(f"n{i}", blob_image(40, seed=i), blob_mask(40)) for i in range(4)]
    ds = write_synthetic(tmp_path / "ds", recs)
    p1 = tmp_path / "p1.yaml"
    p1.write_text(yaml.safe_dump(SMALL_PARAMS))
    first = pd.read_parquet(run_radiomics(ds, RadiomicsConfig(params=str(p1))))
    assert read_meta(ds)["n_computed"] == 4

    def boom(task):
        raise AssertionError("a cached nodule was recomputed")

    monkeypatch.setattr(ex, "compute_task", boom)
    again = pd.read_parquet(run_radiomics(ds, RadiomicsConfig(params=str(p1))))
    pd.testing.assert_frame_equal(first, again)
    assert read_meta(ds)["n_cached"] == 4
    monkeypatch.undo()

    changed = {**SMALL_PARAMS, "setting": {**SMALL_PARAMS["setting"], "binWidth": 10}}
    p1.write_text(yaml.safe_dump(changed))
    third = pd.read_parquet(run_radiomics(ds, RadiomicsConfig(params=str(p1))))
    assert read_meta(ds)["n_computed"] == 4  # a parameter change recomputes everything
    assert not np.allclose(third["original_firstorder_Entropy"], first["original_firstorder_Entropy"])
    pd.testing.assert_series_equal(third["original_firstorder_Mean"], first["original_firstorder_Mean"])


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder not found"):
        run_radiomics(tmp_path / "nope", RadiomicsConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an autorad dataset"):
        run_radiomics(tmp_path / "empty", RadiomicsConfig())
    with pytest.raises(ConfigError, match="parameter file not found"):
        load_params("no_such_params")
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidht: 25\n")
    with pytest.raises(ConfigError, match="rejected by PyRadiomics"):
        load_params(bad)
    with pytest.raises(ConfigError, match="unknown radiomics feature class"):
        run_radiomics(write_synthetic(tmp_path / "ds", [record("a", blob_image(), blob_mask())]),
                      RadiomicsConfig(classes=["glcmm"]))
    with pytest.raises(InputError, match="no radiomics table"):
        load_radiomics(tmp_path / "ds")


def test_lbp2d_without_scikit_image_fails_instead_of_dropping_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage.feature", None)  # makes `from skimage.feature import ...` fail
    with pytest.raises(MissingDependencyError, match="scikit-image"):
        load_params("autorad_2d")
    assert load_params(SMALL_PARAMS).feature_classes == ["firstorder", "shape2D"]  # no LBP2D: fine


def test_mode_3d_uses_the_sub_volume(tmp_path: Path) -> None:
    recs = [record("v1", blob_image(24, seed=1), blob_mask(24), volume=True, seed=1),
            record("flat2d", blob_image(24, seed=2), blob_mask(24))]
    ds = write_synthetic(tmp_path / "ds", recs)
    out = run_radiomics(ds, RadiomicsConfig(mode="3d"))
    assert out.name == "radiomics_3d.parquet"
    df = load_radiomics(ds, mode="3d").set_index("nodule_id")
    assert df.loc["v1", "status"] == "ok"
    assert df.loc["flat2d", "status"] == STATUS_NO_VOLUME
    feats = [c for c in df.columns if c != "status"]
    assert len(feats) == 1874  # 107 original (14 3D shape) + 19 filtered images x 93
    # 5 slices x the 2D blob, at 2.5 x 0.7 x 0.7 mm
    assert df.loc["v1", "original_shape_VoxelVolume"] == pytest.approx(5 * blob_mask(24).sum() * 2.5 * 0.49)
    assert not any("shape2D" in c for c in feats)

    ds2 = write_synthetic(tmp_path / "ds2", [record("a", blob_image(), blob_mask())])
    with pytest.raises(InputError, match="no nodule has a 3D sub-volume"):
        run_radiomics(ds2, RadiomicsConfig(mode="3d"))


def test_one_full_512_slice_is_fast_enough() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(-700, 150, (512, 512))
    mask = np.zeros((512, 512), bool)
    mask[240:262, 250:275] = True
    extract_one(img[:64, :64], mask[240:304, 240:304], 0.7)  # warm up (imports, extractor)
    t = time.perf_counter()
    status, feats = extract_one(img, mask, 0.7)
    took = time.perf_counter() - t
    assert status == "ok" and len(feats) == 1497
    assert took < 8.0, f"{took:.1f} s for one 512x512 slice"  # ~1.2-1.6 s measured; CI machines are shared


def test_cli_shows_nodules_per_second_and_rejects_address_without_ray(tmp_path: Path) -> None:
    import os
    import subprocess

    ds = write_synthetic(tmp_path / "ds", [record(f"n{i}", blob_image(32, seed=i), blob_mask(32))
                                           for i in range(3)])
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(SMALL_PARAMS))
    env = {k: v for k, v in os.environ.items() if k != "AUTORAD_NO_PROGRESS"}
    r = subprocess.run([sys.executable, "-m", "autorad", "radiomics", str(ds), "--params", str(params)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nodule/s" in r.stderr and "radiomics written to" in r.stdout
    r = subprocess.run([sys.executable, "-m", "autorad", "radiomics", str(ds), "--address", "1.2.3.4:6379"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--address needs --executor ray" in r.stderr


def test_parameter_set_follows_the_mode_and_is_never_swapped_silently() -> None:
    from autorad.radiomics.extract import resolve_params

    assert "autorad_2d" in resolve_params(RadiomicsConfig(), validate=False).name
    assert "autorad_3d" in resolve_params(RadiomicsConfig(mode="3d"), validate=False).name
    with pytest.raises(ConfigError, match="radiomics.params 'autorad_2d' is the shipped 2d parameter set"):
        resolve_params(RadiomicsConfig(mode="3d", params="autorad_2d"), validate=False)
    with pytest.raises(ConfigError, match="mode is 2d"):
        resolve_params(RadiomicsConfig(mode="2d", params="autorad_3d"), validate=False)
