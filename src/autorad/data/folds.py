"""Patient-level, label-stratified K-fold assignment."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold


def assign_folds(patient_ids: pd.Series | np.ndarray, labels: pd.Series | np.ndarray, n_folds: int = 5,
                 seed: int = 0) -> np.ndarray:
    """Return a fold index (0..n_folds-1) per nodule; all nodules of one patient share a fold.

    Uses scikit-learn's StratifiedGroupKFold (shuffled, seeded), which balances label proportions across folds
    while keeping groups whole. When there are fewer patients than folds, folds are fewer (every fold index
    still names at least one patient).
    """
    patient_ids = np.asarray(patient_ids).astype(str)
    labels = np.asarray(labels).astype(str)
    n_patients = len(np.unique(patient_ids))
    k = min(n_folds, n_patients)
    folds = np.full(len(patient_ids), -1, dtype=np.int64)
    if k < 2:
        folds[:] = 0
        return folds
    x = np.zeros(len(labels))
    with warnings.catch_warnings():
        # "The least populated class in y has only N members": expected for tiny datasets, handled below.
        warnings.simplefilter("ignore", UserWarning)
        try:
            splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
                x, labels, groups=patient_ids))
        except ValueError:  # every class has fewer members than folds: stratification is impossible
            splits = []
    if not splits or any(len(test) == 0 for _, test in splits):
        splits = list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels, groups=patient_ids))
    for fold, (_, test_idx) in enumerate(splits):
        folds[test_idx] = fold
    return folds
