"""Property-based tests (hypothesis): label rule, fold assignment, crop geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from autorad.data.crop import crop_box, crop_nodule, equivalent_diameter_mm
from autorad.data.folds import assign_folds
from autorad.data.labels import label_from_ratings, malignancy_score

ratings_st = st.lists(st.integers(0, 5), min_size=1, max_size=4)


@given(ratings_st, st.sampled_from(["median", "mean"]), st.integers(1, 4))
def test_label_rule_properties(ratings, rule, k):
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
    assert label_from_ratings(ratings) == label_from_ratings(list(reversed(ratings)))


@settings(max_examples=40, deadline=None)
@given(st.integers(10, 300), st.integers(2, 40), st.integers(2, 6), st.integers(0, 10_000))
def test_folds_never_split_a_patient(n, n_patients, k, seed):
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
