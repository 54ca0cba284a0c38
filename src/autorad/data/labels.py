"""The label rule: readers' malignancy ratings (1-5) -> benign / unsure / malignant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_READERS = 4  # LIDC-IDRI: each nodule is read by at most four radiologists


def malignancy_score(ratings: Sequence[float], rule: str = "median") -> float:
    """Aggregate the non-zero ratings with ``rule`` (median or mean); NaN when there are none."""
    r = np.asarray([x for x in ratings if x and x > 0], dtype=float)
    if r.size == 0:
        return float("nan")
    if rule == "median":
        return float(np.median(r))
    if rule == "mean":
        return float(np.mean(r))
    raise ValueError(f"unknown label rule {rule!r} (use median or mean)")


def score_to_label(score: float) -> str | None:
    """Below 3 benign, exactly 3 unsure, above 3 malignant (2.5 -> benign, 3.5 -> malignant); None for NaN."""
    if not np.isfinite(score):
        return None
    if score < 3:
        return "benign"
    if score > 3:
        return "malignant"
    return "unsure"


def label_from_ratings(ratings: Sequence[float], rule: str = "median", min_readers: int = 3) -> str | None:
    """The 3-class label, or None when fewer than ``min_readers`` readers rated malignancy."""
    n = sum(1 for x in ratings if x and x > 0)
    if n < min_readers:
        return None
    return score_to_label(malignancy_score(ratings, rule))

