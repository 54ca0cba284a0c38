"""Training-only targets read from the readers' own ratings (never model inputs).

- :func:`reader_distribution`: each reader's malignancy rating mapped to benign / unsure / malignant with the
  label rule's thresholds (:func:`autorad.data.labels.score_to_label`), as a distribution over the 3 classes
  (label-distribution learning: a nodule rated 2, 3, 3, 4 teaches "mostly unsure", not a hard "unsure").
- :func:`reader_attributes`: the mean over readers of the 8 radiologist attributes (subtlety ... texture), the
  auxiliary regression targets of ``train.aux_attributes``.

Both come from the manifest's ``reader{r}_{attribute}`` columns (0 = not rated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.data.dataset import MAX_READERS, RATING_NAMES
from autorad.data.labels import score_to_label

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(n for n in RATING_NAMES if n != "malignancy")


def _ratings(manifest: pd.DataFrame, name: str) -> np.ndarray | None:
    cols = [f"reader{r + 1}_{name}" for r in range(MAX_READERS)]
    if not all(c in manifest.columns for c in cols):
        return None
    return manifest[cols].to_numpy(dtype=np.float64)


def reader_distribution(manifest: pd.DataFrame) -> np.ndarray | None:
    """(N, 3) share of the readers whose own rating falls in each class; None without rating columns.

    A nodule without any rating gets a uniform row (never used: such nodules have no label).
    """
    r = _ratings(manifest, "malignancy")
    if r is None:
        return None
    out = np.zeros((len(r), len(CLASS_NAMES)))
    for i, row in enumerate(r):
        for x in row[row > 0]:
            out[i, CLASS_NAMES.index(score_to_label(float(x)))] += 1
    n = out.sum(axis=1, keepdims=True)
    return np.where(n > 0, out / np.maximum(n, 1), 1.0 / len(CLASS_NAMES))


def reader_attributes(manifest: pd.DataFrame) -> np.ndarray | None:
    """(N, 8) mean rating of each attribute over the readers who gave one (NaN where none did)."""
    cols = []
    for name in ATTRIBUTE_NAMES:
        r = _ratings(manifest, name)
        if r is None:
            return None
        with np.errstate(invalid="ignore"):
            cols.append(np.where((r > 0).any(axis=1), np.nansum(np.where(r > 0, r, np.nan), axis=1)
                                 / np.maximum((r > 0).sum(axis=1), 1), np.nan))
    return np.stack(cols, axis=1)
