"""RadiomicsPreprocessor: heavy tails, constant/missing columns, imputation, fold isolation, safetensors state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autorad.core.errors import CheckpointError, ConfigError, InputError
from autorad.radiomics import select_feature_columns
from autorad.radiomics.preprocess import RadiomicsPreprocessor, preprocess_fold, signed_log1p

NAMES = ["original_firstorder_Energy", "original_firstorder_Mean", "original_shape2D_Perimeter",
         "wavelet-LH_glcm_Contrast", "log-sigma-1-0-mm-3D_gldm_DependenceEntropy", "original_ngtdm_Busyness"]


def _data(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.empty((n, len(NAMES)))
    X[:, 0] = np.exp(rng.normal(14, 2.5, n))  # energy: lognormal, up to ~1e8 and beyond
    X[:, 1] = rng.normal(-300, 100, n)  # symmetric
    X[:, 2] = 7.0  # constant
    X[:, 3] = rng.normal(5, 1, n)
    X[:, 3][rng.random(n) < 0.5] = np.nan  # mostly missing
    X[:, 4] = rng.normal(2, 0.3, n)
    X[:, 5] = -np.exp(rng.normal(3, 2, n))  # heavy negative tail
    return X


def test_fit_drops_constant_and_missing_logs_heavy_tails() -> None:
    X = _data()
    assert X[:, 0].max() > 1e8
    p = RadiomicsPreprocessor().fit(X, NAMES)
    assert p.kept_features == [NAMES[0], NAMES[1], NAMES[4], NAMES[5]]
    logged = dict(zip(p.kept_features, p.state_dict()["log"], strict=True))
    assert logged == {NAMES[0]: True, NAMES[1]: False, NAMES[4]: False, NAMES[5]: True}
    Z = p.transform(X)
    assert Z.dtype == np.float32 and Z.shape == (200, 4)
    assert np.allclose(Z.mean(0), 0, atol=0.05) and np.allclose(Z.std(0), 1, atol=0.05)
    # the energy column after the signed log is close to normal: no huge z
    assert np.abs(Z[:, 0]).max() < 5


def test_transform_handles_nan_inf_and_extremes() -> None:
    X = _data()
    p = RadiomicsPreprocessor(clip_z=4.0).fit(X, NAMES)
    bad = X[:3].copy()
    bad[0, 0], bad[1, 1], bad[2, 4] = np.nan, np.inf, -np.inf
    bad[2, 1] = 1e30
    Z = p.transform(bad)
    assert np.isfinite(Z).all() and np.abs(Z).max() <= 4.0
    st = p.state_dict()
    # a missing value becomes the training median, i.e. (median - mean) / std
    assert Z[0, 0] == pytest.approx((st["median"][0] - st["mean"][0]) / st["std"][0], rel=1e-5)
    assert Z[2, 1] == 4.0
    # a failed nodule (all NaN) gets the train medians everywhere
    assert np.isfinite(p.transform(np.full((1, len(NAMES)), np.nan))).all()


def test_fit_ignores_failed_rows_and_non_finite_training_values() -> None:
    X = _data()
    X_failed = np.vstack([X, np.full((50, len(NAMES)), np.nan)])
    a = RadiomicsPreprocessor().fit(X, NAMES).state_dict()
    b = RadiomicsPreprocessor().fit(X_failed, NAMES).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    X2 = X.copy()
    X2[:, 4] = np.inf  # non-finite everywhere in train -> dropped
    assert NAMES[4] not in RadiomicsPreprocessor().fit(X2, NAMES).kept_features
    with pytest.raises(InputError, match="at least 2 training nodules"):
        RadiomicsPreprocessor().fit(np.full((5, len(NAMES)), np.nan), NAMES)


def test_fold_fit_sees_only_training_rows() -> None:
    X = _data(120)
    folds = np.arange(120) % 5
    for k in range(5):
        train = folds != k
        p1, Z1 = preprocess_fold(X, NAMES, train)
        X_poisoned = X.copy()
        X_poisoned[~train] = 1e12  # outliers and NaN in the held-out fold must change nothing
        X_poisoned[~train, 1] = np.nan
        p2, Z2 = preprocess_fold(X_poisoned, NAMES, train)
        for key, v in p1.state_dict().items():
            np.testing.assert_array_equal(v, p2.state_dict()[key])
        np.testing.assert_array_equal(Z1[train], Z2[train])
        np.testing.assert_allclose(Z1[train].mean(0), 0, atol=1e-5)
        assert p1.n_train == train.sum()


def test_state_round_trip_through_safetensors(tmp_path: Path) -> None:
    X = _data()
    p = RadiomicsPreprocessor().fit(X, NAMES)
    save_file(p.state_dict(), tmp_path / "prep.safetensors")
    (tmp_path / "prep.json").write_text(json.dumps(p.config()))
    q = RadiomicsPreprocessor.from_state(load_file(tmp_path / "prep.safetensors"),
                                         json.loads((tmp_path / "prep.json").read_text()))
    np.testing.assert_array_equal(p.transform(X), q.transform(X))
    assert q.kept_features == p.kept_features
    import pandas as pd

    df = pd.DataFrame(X[:, ::-1], columns=NAMES[::-1])  # column order does not matter by name
    np.testing.assert_array_equal(q.transform_frame(df), p.transform(X))
    with pytest.raises(InputError, match="lacks 1 features"):
        q.transform_frame(df.drop(columns=NAMES[0]))


def test_from_state_rejects_bad_checkpoints() -> None:
    p = RadiomicsPreprocessor().fit(_data(), NAMES)
    st, cfg = p.state_dict(), p.config()
    with pytest.raises(CheckpointError, match="missing"):
        RadiomicsPreprocessor.from_state({k: v for k, v in st.items() if k != "std"}, cfg)
    with pytest.raises(CheckpointError, match="unexpected"):
        RadiomicsPreprocessor.from_state({**st, "extra": np.zeros(1)}, cfg)
    with pytest.raises(CheckpointError, match="inconsistent shapes"):
        RadiomicsPreprocessor.from_state({**st, "mean": st["mean"][:-1]}, cfg)
    with pytest.raises(CheckpointError, match="kept feature names"):
        RadiomicsPreprocessor.from_state(st, {**cfg, "kept_features": cfg["kept_features"][::-1]})
    with pytest.raises(InputError, match="expected 6 radiomics features"):
        p.transform(np.zeros((1, 5)))


def test_signed_log1p() -> None:
    np.testing.assert_allclose(signed_log1p(np.array([-1e8, 0.0, 1e8])), [-np.log1p(1e8), 0, np.log1p(1e8)])


def test_select_feature_columns_by_class() -> None:
    cols = ["nodule_id", "status", *NAMES, "original_shape_VoxelVolume", "wavelet-HH_glszm_ZoneEntropy"]
    assert select_feature_columns(cols, ["shape2D"]) == ["original_shape2D_Perimeter"]
    assert select_feature_columns(cols, ["shape"]) == ["original_shape2D_Perimeter", "original_shape_VoxelVolume"]
    assert select_feature_columns(cols, ["texture"]) == [NAMES[3], NAMES[4], NAMES[5],
                                                         "wavelet-HH_glszm_ZoneEntropy"]
    assert select_feature_columns(cols, ["firstorder", "glcm"]) == [NAMES[0], NAMES[1], NAMES[3]]
    with pytest.raises(ConfigError, match="unknown radiomics feature class"):
        select_feature_columns(cols, ["glcmm"])
    with pytest.raises(ConfigError, match="has no glrlm features"):
        select_feature_columns(cols, ["glrlm"])
