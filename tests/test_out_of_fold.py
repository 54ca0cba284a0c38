"""evaluate.out_of_fold: each fold model on its own test fold of another copy of the dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from autorad.core.errors import InputError
from autorad.evaluate.apply import out_of_fold

PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]


def test_same_data_gives_the_runs_own_predictions(phantom_logreg_run, tmp_path):
    data = phantom_logreg_run.parent / "dataset"
    pred = out_of_fold(phantom_logreg_run, data)
    own = pd.read_parquet(phantom_logreg_run / "predictions.parquet").set_index("nodule_id")
    assert sorted(pred["nodule_id"]) == sorted(own.index)
    assert np.allclose(pred.set_index("nodule_id").loc[own.index, PROBS], own[PROBS], atol=1e-9)
    # a copy with every mask grown by one pixel: radiomics extracted again, other probabilities from the same models
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    for f in (copy / "arrays").glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        a["slice_mask"] = ndimage.binary_dilation(a["slice_mask"].astype(bool)).astype(a["slice_mask"].dtype)
        np.savez(f, **a)
    moved = out_of_fold(phantom_logreg_run, copy).set_index("nodule_id").loc[own.index, PROBS]
    assert not np.allclose(moved, own[PROBS], atol=1e-3)
    # the same change through the dataset's own cached table of grown masks: no copy needed, the same numbers
    grown = out_of_fold(phantom_logreg_run, data, mask_variant="grow1").set_index("nodule_id")
    assert np.allclose(grown.loc[own.index, PROBS], moved, atol=1e-9)


def test_a_run_without_fold_models_is_refused(tmp_path, phantom_logreg_run):
    empty = tmp_path / "run"
    (empty / "folds").mkdir(parents=True)
    with pytest.raises(InputError, match="no fold models"):
        out_of_fold(empty, phantom_logreg_run.parent / "dataset")


def test_a_mask_variant_is_for_applying_models_only(phantom_logreg_run):
    from autorad.train.features import build_features
    from autorad.train.resolve import load_config

    with pytest.raises(ValueError, match="only for applying trained models"):
        build_features(phantom_logreg_run.parent / "dataset", load_config("radiomics_logreg"), mask_variant="grow1")
