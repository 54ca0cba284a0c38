"""Radiomics on real LIDC nodules: parity with PyRadiomics, kill -9 and resume, 2 workers, a local Ray cluster,
and preprocessing fitted inside patient-level folds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_radiomics_helpers import copy_dataset

from autorad.config import DataConfig, RadiomicsConfig
from autorad.radiomics import feature_columns, load_radiomics
from autorad.radiomics.cache import FeatureCache
from autorad.radiomics.extract import run_radiomics
from autorad.radiomics.preprocess import preprocess_fold
from autorad.radiomics.settings import PARAMS_DIR
from autorad.radiomics.table import CACHE_SUBDIR, read_meta

pytestmark = [
    pytest.mark.shared_data,
    # raised by the direct PyRadiomics reference calls below (autorad's own calls silence them)
    pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern`:UserWarning"),
    pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def real_ds(maxslice_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 max-slice entries: 21 real nodules with >= 3 readers."""
    from autorad.data.ingest import ingest

    out = tmp_path_factory.mktemp("radreal") / "ds"
    ds = ingest("maxslice", out, maxslice_npz, DataConfig(source="maxslice", limit=40))
    assert len(ds) >= 20
    return out


@pytest.fixture(scope="module")
def reference(real_ds: Path) -> pd.DataFrame:
    """An uninterrupted single-process run."""
    run_radiomics(real_ds, RadiomicsConfig(jobs=1))
    return load_radiomics(real_ds)


def test_every_feature_matches_pyradiomics_called_directly(real_ds: Path, reference: pd.DataFrame) -> None:
    import SimpleITK as sitk  # noqa: N813
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS_DIR / "autorad_2d.yaml"))
    manifest = pd.read_parquet(real_ds / "manifest.parquet")
    assert reference["nodule_id"].tolist() == manifest["nodule_id"].tolist()
    assert (reference["status"] == "ok").all()
    cols = feature_columns(reference.columns)
    assert len(cols) == 1497
    for i, row in manifest.iterrows():
        with np.load(real_ds / row["array_file"], allow_pickle=False) as z:
            hu, mask = z["slice_hu"], z["slice_mask"]
        image = sitk.GetImageFromArray(hu.astype(np.float64))
        label = sitk.GetImageFromArray(mask.astype(np.uint8))
        for im in (image, label):
            im.SetSpacing((float(row["pixel_spacing_mm"]),) * 2)
        direct = {k: float(v) for k, v in extractor.execute(image, label).items()
                  if not k.startswith("diagnostics_")}
        assert list(direct) == cols
        ours = reference.loc[i, cols].to_numpy(dtype=np.float64)
        theirs = np.array(list(direct.values()))
        rel = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)
        assert np.all((ours == theirs) | (rel <= 1e-9)), f"{row['nodule_id']}: max rel diff {rel.max():.3g}"


def _n_cached(ds: Path) -> int:
    return len(FeatureCache(ds / CACHE_SUBDIR))


def test_sigkill_then_rerun_equals_uninterrupted_run(real_ds: Path, reference: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    ds = copy_dataset(real_ds, tmp_path / "ds")
    n = len(reference)
    env = {**os.environ, "AUTORAD_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "autorad", "radiomics", str(ds), "--jobs", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _n_cached(ds) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    k = _n_cached(ds)
    assert 5 <= k < n, f"{k} of {n} nodules cached when killed"
    assert not (ds / "radiomics.parquet").exists()
    cache = FeatureCache(ds / CACHE_SUBDIR)
    assert all(cache.get(p.stem) is not None for p in (ds / CACHE_SUBDIR).glob("*/*.json"))  # no torn entry

    run_radiomics(ds, RadiomicsConfig(jobs=1))
    meta = read_meta(ds)
    assert (meta["n_cached"], meta["n_computed"]) == (k, n - k)  # nothing done before the kill is redone
    resumed = load_radiomics(ds)
    assert resumed["nodule_id"].is_unique and len(resumed) == n
    pd.testing.assert_frame_equal(resumed, reference)


def test_two_workers_give_identical_results(real_ds: Path, reference: pd.DataFrame, tmp_path: Path) -> None:
    ds = copy_dataset(real_ds, tmp_path / "ds", first=10)
    run_radiomics(ds, RadiomicsConfig(jobs=2))
    assert read_meta(ds)["n_computed"] == 10
    pd.testing.assert_frame_equal(load_radiomics(ds), reference.head(10))


def test_ray_local_cluster_gives_identical_results(real_ds: Path, reference: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    pytest.importorskip("ray")
    ds = copy_dataset(real_ds, tmp_path / "ds", first=5)
    run_radiomics(ds, RadiomicsConfig(jobs=2, executor="ray"))
    assert read_meta(ds)["n_computed"] == 5
    pd.testing.assert_frame_equal(load_radiomics(ds), reference.head(5))


def test_preprocessing_is_fitted_inside_patient_folds(real_ds: Path, reference: pd.DataFrame) -> None:
    manifest = pd.read_parquet(real_ds / "manifest.parquet")
    cols = feature_columns(reference.columns)
    X = reference[cols].to_numpy(dtype=np.float64)
    assert np.nanmax(np.abs(X)) > 1e7  # energies: why the signed log exists
    for k in sorted(manifest["fold"].unique()):
        train = (manifest["fold"] != k).to_numpy()
        prep, Z = preprocess_fold(X, cols, train)
        assert prep.n_train == train.sum()
        assert np.isfinite(Z).all() and Z.dtype == np.float32
        np.testing.assert_allclose(Z[train].mean(0), 0, atol=1e-4)
        X_other = X.copy()
        X_other[~train] *= 1000.0  # held-out nodules must not move anything fitted
        prep2, Z2 = preprocess_fold(X_other, cols, train)
        assert prep2.kept_features == prep.kept_features
        np.testing.assert_array_equal(Z2[train], Z[train])
        assert 0 < prep.n_features_out < len(cols)  # some columns are constant on so few nodules


@pytest.fixture(scope="module")
def dicom_ds(lidc_dicom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from autorad.data.ingest import ingest

    out = tmp_path_factory.mktemp("raddicom") / "ds"
    ingest("lidc", out, lidc_dicom_root, DataConfig(source="lidc"))
    return out


def test_dicom_full_slice_and_3d_sub_volume(dicom_ds: Path) -> None:
    """The DICOM source gives the full 512x512 slice (2D) and the consensus sub-volume (3D shape features)."""
    import SimpleITK as sitk  # noqa: N813
    from radiomics import featureextractor

    manifest = pd.read_parquet(dicom_ds / "manifest.parquet")
    row = manifest[manifest["has_volume"]].iloc[0]
    with np.load(dicom_ds / row["array_file"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays["slice_hu"].shape == (512, 512)
    t = time.perf_counter()
    run_radiomics(dicom_ds, RadiomicsConfig(mode="2d"))
    two_d = load_radiomics(dicom_ds, "2d").set_index("nodule_id").loc[row["nodule_id"]]
    assert two_d["status"] == "ok" and len(two_d) == 1 + 1497
    run_radiomics(dicom_ds, RadiomicsConfig(mode="3d"))
    assert time.perf_counter() - t < 60
    three_d = load_radiomics(dicom_ds, "3d").set_index("nodule_id").loc[row["nodule_id"]]
    assert three_d["status"] == "ok" and len(three_d) == 1 + 1874

    # 3D parity with PyRadiomics on the same volume; spacing is (z, row, column) in the dataset
    image = sitk.GetImageFromArray(arrays["volume_hu"].astype(np.float64))
    label = sitk.GetImageFromArray(arrays["volume_mask"].astype(np.uint8))
    for im in (image, label):
        im.SetSpacing(tuple(float(s) for s in arrays["volume_spacing_mm"][::-1]))
    direct = featureextractor.RadiomicsFeatureExtractor(str(PARAMS_DIR / "autorad_3d.yaml")).execute(image, label)
    direct = {k: float(v) for k, v in direct.items() if not k.startswith("diagnostics_")}
    ours = three_d.drop("status").astype(float)
    assert list(ours.index) == list(direct)
    np.testing.assert_allclose(ours.to_numpy(), np.array(list(direct.values())), rtol=1e-9, atol=0)
    voxel_mm3 = float(np.prod(arrays["volume_spacing_mm"]))
    assert ours["original_shape_VoxelVolume"] == pytest.approx(arrays["volume_mask"].sum() * voxel_mm3)
