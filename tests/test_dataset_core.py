"""Label rule, folds, crop geometry and the max-slice ingest on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autorad.config import DataConfig, LabelConfig
from autorad.core.errors import InputError
from autorad.data.crop import crop_box, crop_nodule, equivalent_diameter_mm
from autorad.data.dataset import Dataset, rating_columns
from autorad.data.folds import assign_folds
from autorad.data.ingest import ingest
from autorad.data.labels import label_from_ratings


@pytest.mark.parametrize(("ratings", "rule", "expected"), [
    ([1, 2, 2], "median", "benign"), ([2, 3, 3, 0], "median", "unsure"), ([2, 3], "median", None),
    ([2, 3, 3, 4], "median", "unsure"), ([2, 2, 3, 3], "median", "benign"), ([3, 3, 4, 4], "median", "malignant"),
    ([1, 3, 5], "mean", "unsure"), ([1, 3, 4], "mean", "benign"), ([5, 5, 5, 4], "median", "malignant"),
])
def test_label_rule(ratings, rule, expected):
    assert label_from_ratings(ratings, rule, 3) == expected


def test_label_rule_min_readers_one():
    assert label_from_ratings([4], "median", 1) == "malignant"


def test_folds_keep_patients_together_and_stratify():
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 80, 400).astype(str)
    labels = rng.choice(["benign", "unsure", "malignant"], 400)
    folds = assign_folds(patients, labels, 5, seed=1)
    df = pd.DataFrame({"p": patients, "f": folds, "y": labels})
    assert (df.groupby("p")["f"].nunique() == 1).all()
    assert set(folds) == set(range(5))
    share = pd.crosstab(df["f"], df["y"], normalize="index")
    assert (share.max() - share.min()).max() < 0.2
    assert (assign_folds(patients, labels, 5, seed=1) == folds).all()


def test_crop_follows_diameter_and_stays_centred():
    mask = np.zeros((100, 100), bool)
    yy, xx = np.mgrid[:100, :100]
    mask[(yy - 40) ** 2 + (xx - 60) ** 2 <= 10 ** 2] = True
    d = equivalent_diameter_mm(mask, 0.5)
    assert d == pytest.approx(10.0, rel=0.05)
    box = crop_box(mask, 0.5, factor=2.0, min_px=8)
    assert box.size == int(np.ceil(2 * d / 0.5))
    img = np.where(mask, 50, -800).astype(np.int16)
    crop, cmask, _ = crop_nodule(img, mask, 0.5)
    c = np.array(np.nonzero(cmask)).mean(axis=1)
    assert np.allclose(c, (box.size - 1) / 2, atol=1.0)
    assert cmask.sum() == mask.sum()


def test_crop_outside_image_is_filled_with_air():
    mask = np.zeros((20, 20), bool)
    mask[0:6, 0:6] = True
    img = np.zeros((20, 20), np.int16)
    crop, cmask, box = crop_nodule(img, mask, 1.0, factor=3.0, min_px=4)
    assert box.r0 < 0 and (crop == -1000).any() and cmask.sum() == 36


@pytest.mark.shared_data
def test_maxslice_counts_match_readme(maxslice_npz, tmp_path):
    ds = ingest("maxslice", tmp_path / "ds", maxslice_npz)
    assert ds.class_counts == {"benign": 362, "unsure": 409, "malignant": 315}
    m = ds.manifest
    assert (m.groupby("patient_id")["fold"].nunique() == 1).all()
    for col in ["nodule_id", "patient_id", "series_uid", "label", "n_readers", "pixel_spacing_mm",
                "slice_thickness_mm", "equivalent_diameter_mm", "source", "fold", *rating_columns()]:
        assert col in m.columns, col
    assert (m["n_readers"] >= 3).all()
    skipped = pd.read_csv(tmp_path / "ds" / "skipped.csv")
    assert len(skipped) == 2157 - 1086 and skipped["reason"].str.contains("reader").sum() == 1069
    arr = ds.arrays(m["nodule_id"].iloc[0])
    assert arr["slice_hu"].shape == (71, 71) and arr["crop_mask"].any()


@pytest.mark.shared_data
def test_maxslice_mean_rule_all_readers(maxslice_npz, tmp_path):
    ds = ingest("maxslice", tmp_path / "ds", maxslice_npz,
                DataConfig(source="maxslice", labels=LabelConfig(rule="mean", min_readers=3)))
    # README: 527 / 162 / 399 with the mean; 2 nodules have no consensus mask
    assert sum(ds.class_counts.values()) == 1086
    assert ds.class_counts["unsure"] in (161, 162)


def test_missing_npz_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ingest("maxslice", tmp_path / "ds", tmp_path / "nope.npz")
    assert not (tmp_path / "ds").exists()


def test_failed_ingest_leaves_no_folder(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images_hu=np.zeros((2, 8, 8), np.int16))
    with pytest.raises(InputError, match="missing array"):
        ingest("maxslice", tmp_path / "ds", bad)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.tmp-*"))


def test_dataset_refuses_non_dataset(tmp_path):
    with pytest.raises(InputError, match="not an autorad dataset"):
        Dataset(tmp_path)
