"""Property-based tests (hypothesis): label rule, fold assignment, crop geometry, radiomics preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autorad.data.crop import crop_box, crop_nodule, equivalent_diameter_mm
from autorad.data.folds import assign_folds
from autorad.data.labels import label_from_ratings, malignancy_score

ratings_st = st.lists(st.integers(0, 5), min_size=1, max_size=4)


@given(ratings_st, st.sampled_from(["median", "mean"]), st.integers(1, 4))
def test_label_rule_properties(ratings, rule, k):
    """Label rule: None with fewer than k readers, else benign below 3, unsure at 3, malignant above 3."""
    label = label_from_ratings(ratings, rule, k)
    n = sum(1 for r in ratings if r > 0)
    if n < k:
        assert label is None
        return
    score = malignancy_score(ratings, rule)
    assert 1 <= score <= 5
    assert label == ("benign" if score < 3 else "malignant" if score > 3 else "unsure")


@given(st.lists(st.integers(1, 5), min_size=3, max_size=4))
def test_label_rule_is_order_invariant(ratings):
    """Label rule: the readers' order does not change the label."""
    assert label_from_ratings(ratings) == label_from_ratings(list(reversed(ratings)))


@settings(max_examples=40, deadline=None)
@given(st.integers(10, 300), st.integers(2, 40), st.integers(2, 6), st.integers(0, 10_000))
def test_folds_never_split_a_patient(n, n_patients, k, seed):
    """Folds: a patient is never in two folds; fold numbers are 0..k-1 and all used when patients allow."""
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, n_patients, n).astype(str)
    labels = rng.choice(["benign", "unsure", "malignant"], n)
    folds = assign_folds(patients, labels, k, seed)
    df = pd.DataFrame({"p": patients, "f": folds})
    assert (df.groupby("p")["f"].nunique() == 1).all()
    assert folds.min() >= 0 and folds.max() < k
    used = len(set(folds.tolist()))
    assert used == min(k, len(set(patients.tolist())))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_folds_are_stratified(seed):
    """Folds: each fold's class shares stay within 15 points of each other (stratified by label)."""
    rng = np.random.default_rng(seed)
    n = 600
    patients = rng.integers(0, 300, n).astype(str)
    labels = rng.choice(["benign", "unsure", "malignant"], n, p=[0.3, 0.4, 0.3])
    folds = assign_folds(patients, labels, 5, seed)
    share = pd.crosstab(folds, labels, normalize="index")
    assert (share.max() - share.min()).max() < 0.15


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 120), st.integers(20, 120), st.integers(1, 15), st.floats(0.4, 1.5),
       st.floats(1.0, 4.0), st.integers(4, 32), st.data())
def test_crop_geometry(h, w, radius, spacing, factor, min_px, data):
    """Crop: the size follows factor x equivalent diameter (at least min_px), the nodule centre stays within
    a pixel of the crop centre, the mask is kept whole inside the image and the outside is padded with air."""
    cy = data.draw(st.integers(0, h - 1))
    cx = data.draw(st.integers(0, w - 1))
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    box = crop_box(mask, spacing, factor, min_px)
    d_px = equivalent_diameter_mm(mask, spacing) / spacing
    assert box.size == max(min_px, int(np.ceil(factor * d_px)))
    rows, cols = np.nonzero(mask)
    centre = np.array([rows.mean(), cols.mean()])
    # the mask's centroid lies inside the box and within a pixel of its centre
    box_centre = np.array([box.r0 + (box.size - 1) / 2, box.c0 + (box.size - 1) / 2])
    assert np.all(np.abs(centre - box_centre) <= 1.0)
    img = np.full((h, w), 7, np.int16)
    crop, cmask, _ = crop_nodule(img, mask, spacing, factor, min_px)
    assert crop.shape == (box.size, box.size) and cmask.shape == crop.shape
    inside = np.count_nonzero(mask[max(box.r0, 0):box.r0 + box.size, max(box.c0, 0):box.c0 + box.size])
    assert cmask.sum() == inside
    assert set(np.unique(crop)) <= {7, -1000}


# ------------------------------------------------------------------------------- radiomics preprocessing
_special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e300, -1e300, 1e-300])
_value = st.one_of(st.floats(-1e12, 1e12, allow_nan=False), _special)


@st.composite
def _feature_matrix(draw):
    """Radiomics-like tables: heavy tails, constant and all-NaN columns, failed (all-NaN) rows, inf, huge values."""
    n = draw(st.integers(2, 25))
    f = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.lognormal(0, draw(st.floats(0.1, 4.0)), (n, f)) * rng.choice([-1, 1], f)
    for _ in range(draw(st.integers(0, 6))):
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, f - 1))] = draw(_value)
    if draw(st.booleans()):
        X[:, draw(st.integers(0, f - 1))] = draw(_value)  # a constant (or all-NaN / inf) column
    if draw(st.booleans()):
        X[draw(st.integers(0, n - 1)), :] = np.nan  # a failed extraction
    return X


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's nanstd on 1e300 inputs
@settings(max_examples=80, deadline=None)
@given(_feature_matrix(), st.lists(_value, min_size=8, max_size=8))
def test_radiomics_preprocessing_never_outputs_nan(X, new_row):
    """RadiomicsPreprocessor: whatever the training table (NaN, inf, 1e300, constant columns, failed rows) it
    either refuses with an InputError or its output, on training rows and on any new row, is finite, within
    +-clip_z, float32, and survives the safetensors state round trip unchanged."""
    from autorad.core.errors import InputError
    from autorad.radiomics.preprocess import RadiomicsPreprocessor

    names = [f"original_f{i}" for i in range(X.shape[1])]
    pre = RadiomicsPreprocessor()
    try:
        Z = pre.fit_transform(X, names)
    except InputError as err:  # too few usable rows, or no column that varies: said so, not a crash
        usable = X[~np.all(~np.isfinite(X), axis=1)]
        assert ("at least 2 training nodules" in str(err)) == (len(usable) < 2)
        assert len(usable) < 2 or "no radiomic feature varies" in str(err)
        return
    assert Z.dtype == np.float32 and Z.shape == (len(X), pre.n_features_out) and pre.n_features_out >= 1
    assert np.all(np.isfinite(Z)) and np.all(np.abs(Z) <= pre.clip_z)
    new = np.array(new_row[: X.shape[1]] + [0.0] * max(0, X.shape[1] - 8), dtype=np.float64)[None]
    Zn = pre.transform(new)
    assert np.all(np.isfinite(Zn)) and np.all(np.abs(Zn) <= pre.clip_z)
    again = RadiomicsPreprocessor.from_state(pre.state_dict(), pre.config())
    assert np.array_equal(again.transform(X), Z)
