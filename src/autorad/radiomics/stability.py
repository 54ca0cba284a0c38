"""Stability of radiomic features under a mask change: per-feature agreement between two extractions.

``radiomics.stability: one_pixel`` extracts every nodule's radiomics again with its mask grown and shrunk by one
pixel (:func:`autorad.data.mask_perturb.perturb_mask`, tables ``radiomics_mask-grow1/shrink1.parquet``), and
:class:`~autorad.radiomics.preprocess.RadiomicsPreprocessor` keeps, on the training rows of each fold only, the
features whose values agree with each perturbed version at least ``radiomics.min_agreement``. The kept list is
part of the fitted preprocessing, so inference never needs perturbed radiomics.

The statistic is **Lin's concordance correlation coefficient** (CCC, Lin 1989),
``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``: absolute agreement, 1 only when the two versions are
equal. A model trained on the dataset's masks reads a perturbed mask's values unchanged, so a feature that moves
by a constant (an area, which a grown mask always raises) harms it as much as one that scatters; the consistency
ICC(3,1) ignores such a shift, the CCC does not (for two readings it equals the absolute-agreement ICC(A,1) up
to a factor n/(n-1) in the variances). It is computed on the values the model reads: the preprocessor's own signed
log (where chosen) and z-score, clipped at ``clip_z``, fitted on the consensus training rows and applied alike to
both versions, so heavy tails and outliers cannot dominate it. Hand-written (a few vectorised moments over 1,500
columns with missing pairs masked): no library in autorad's dependencies provides it.
"""

from __future__ import annotations

import numpy as np

MIN_PAIRS = 3  # fewer nodules with both values: agreement unknown (NaN), the feature is not kept


def concordance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lin's CCC of every column of ``a`` (n, F) with the same column of ``b``, over the rows where both are finite.

    NaN for a column with fewer than :data:`MIN_PAIRS` such rows; 1.0 for a column where both are the same
    constant (and 0.0 where only one of them varies or they are different constants).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"concordance needs two (n, F) arrays of the same shape, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=0)
    safe_n = np.maximum(n, 1)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    ma, mb = a0.sum(axis=0) / safe_n, b0.sum(axis=0) / safe_n
    da, db = np.where(ok, a - ma, 0.0), np.where(ok, b - mb, 0.0)
    va, vb = (da**2).sum(axis=0) / safe_n, (db**2).sum(axis=0) / safe_n
    cov = (da * db).sum(axis=0) / safe_n
    denom = va + vb + (ma - mb) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ccc = np.where(denom > 0, 2 * cov / np.where(denom > 0, denom, 1.0), 1.0)
    return np.where(n >= MIN_PAIRS, ccc, np.nan)
