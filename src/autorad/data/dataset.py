"""The dataset format every later stage reads.

A dataset is a folder::

    manifest.parquet     one row per nodule (ids, label, readers' ratings, geometry, fold)
    arrays/<id>.npz      slice_hu, slice_mask (full slice or the source's largest window, HU / consensus mask),
                         crop_hu, crop_mask (the encoder crop) and, for DICOM sources, volume_hu, volume_mask
    dataset.json         settings (label rule, crop, folds), class counts, source, format version
    skipped.csv          nodules left out, with the reason

It is written to a temporary folder and renamed when complete, so a crash never leaves a half-written dataset.
Arrays are plain ``.npz`` files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.config import CropConfig, FoldConfig, LabelConfig
from autorad.core.errors import InputError
from autorad.core.io import atomic_dir, hash_file, write_json
from autorad.core.outputs import replaceable_dir, write_marker
from autorad.core.progress import progress
from autorad.data.crop import equivalent_diameter_mm
from autorad.data.folds import assign_folds
from autorad.data.geometry import nodule_arrays
from autorad.data.labels import MAX_READERS, label_from_ratings, malignancy_score

FORMAT_VERSION = 1
RATING_NAMES: tuple[str, ...] = ("subtlety", "internalstructure", "calcification", "sphericity", "margin",
                                 "lobulation", "spiculation", "texture", "malignancy")


def rating_columns() -> list[str]:
    """Manifest columns holding per-reader ratings: ``reader1_subtlety`` ... ``reader4_malignancy`` (0 = none)."""
    return [f"reader{r + 1}_{name}" for r in range(MAX_READERS) for name in RATING_NAMES]


@dataclass
class NoduleRecord:
    """One nodule as a source yields it, before labels, crops and folds are applied."""

    nodule_id: str
    patient_id: str
    series_uid: str
    ratings: np.ndarray  # (readers<=4, 9) ints in RATING_NAMES order, 0 = no rating
    slice_hu: np.ndarray  # (H, W) HU
    slice_mask: np.ndarray  # (H, W) bool, 50% consensus
    pixel_spacing_mm: float
    slice_thickness_mm: float = float("nan")
    z_mm: float = float("nan")
    volume_hu: np.ndarray | None = None  # (D, H, W) consensus sub-volume, DICOM sources
    volume_mask: np.ndarray | None = None
    volume_spacing_mm: tuple[float, float, float] | None = None  # (z, row, column)
    extra: dict[str, Any] = field(default_factory=dict)  # more manifest columns (manufacturer, ...)


@dataclass
class Skip:
    """A nodule left out, with the reason (written to skipped.csv)."""

    nodule_id: str
    patient_id: str
    reason: str


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A file-name-safe form of a nodule id."""
    return _SAFE_ID.sub("_", str(text)).strip("._") or "nodule"


def _pad_ratings(ratings: np.ndarray) -> np.ndarray:
    r = np.zeros((MAX_READERS, len(RATING_NAMES)), dtype=np.int16)
    ratings = np.asarray(ratings, dtype=np.int16).reshape(-1, len(RATING_NAMES))[:MAX_READERS]
    r[: len(ratings)] = ratings
    return r


def write_dataset(records: Iterable[NoduleRecord | Skip], out: Path, source: str,
                  labels: LabelConfig | None = None, crop: CropConfig | None = None,
                  folds: FoldConfig | None = None, extra_info: dict[str, Any] | None = None,
                  total: int | None = None, overwrite: bool = False) -> Dataset:
    """Label, crop and fold the records and write them as a dataset folder at ``out`` (atomically; what is at
    ``out`` by then is replaced only if it is an empty folder or, with ``overwrite``, an autorad output folder).

    Nodules with fewer readers than ``labels.min_readers`` or an empty consensus mask are skipped with a reason.
    Raises :class:`InputError` when no nodule is left.
    """
    labels, crop, folds = labels or LabelConfig(), crop or CropConfig(), folds or FoldConfig()
    rows: list[dict[str, Any]] = []
    skipped: list[Skip] = []
    seen: set[str] = set()
    with atomic_dir(Path(out), replace=replaceable_dir(overwrite)) as tmp:
        write_marker(tmp, "dataset")
        (tmp / "arrays").mkdir()
        for rec in progress(records, desc=f"ingest {source}", unit="nodule", total=total):
            if isinstance(rec, Skip):
                skipped.append(rec)
                continue
            ratings = _pad_ratings(rec.ratings)
            malig = ratings[:, RATING_NAMES.index("malignancy")]
            n_readers = int(np.count_nonzero(malig))
            label = label_from_ratings(malig, labels.rule, labels.min_readers)
            if label is None:
                skipped.append(Skip(rec.nodule_id, rec.patient_id,
                                    f"{n_readers} reader(s) rated malignancy; at least {labels.min_readers} needed"))
                continue
            mask = np.asarray(rec.slice_mask, dtype=bool)
            if not mask.any():
                skipped.append(Skip(rec.nodule_id, rec.patient_id, "empty consensus mask on the chosen slice"))
                continue
            fid = safe_id(rec.nodule_id)
            if fid in seen:
                raise InputError(f"duplicate nodule id {rec.nodule_id!r} in source {source}")
            seen.add(fid)
            arrays = nodule_arrays(rec.slice_hu, mask, rec.pixel_spacing_mm, crop.factor, crop.min_px,
                                   rec.volume_hu, rec.volume_mask, rec.volume_spacing_mm)
            crop_px = int(arrays.pop("crop_box")[2])
            np.savez_compressed(tmp / "arrays" / f"{fid}.npz", **arrays)
            row: dict[str, Any] = {
                "nodule_id": str(rec.nodule_id), "array_file": f"arrays/{fid}.npz",
                "patient_id": str(rec.patient_id), "series_uid": str(rec.series_uid), "label": label,
                "n_readers": n_readers, "malignancy_score": malignancy_score(malig, labels.rule),
                "pixel_spacing_mm": float(rec.pixel_spacing_mm),
                "slice_thickness_mm": float(rec.slice_thickness_mm), "z_mm": float(rec.z_mm),
                "equivalent_diameter_mm": equivalent_diameter_mm(mask, rec.pixel_spacing_mm),
                "crop_px": crop_px, "has_volume": "volume_hu" in arrays, "source": source,
            }
            row.update(dict(zip(rating_columns(), ratings.reshape(-1).tolist(), strict=True)))
            row.update(rec.extra)
            rows.append(row)
        if not rows:
            reasons = Counter(s.reason for s in skipped).most_common(1)
            why = f" (most common reason: {reasons[0][0]})" if reasons else ""
            raise InputError(f"no usable nodule found in the {source} input{why}")
        manifest = pd.DataFrame(rows)
        manifest["fold"] = assign_folds(manifest["patient_id"], manifest["label"], folds.n_folds, folds.seed)
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        pd.DataFrame([s.__dict__ for s in skipped], columns=["nodule_id", "patient_id", "reason"]).to_csv(
            tmp / "skipped.csv", index=False)
        counts = {c: int((manifest["label"] == c).sum()) for c in CLASS_NAMES}
        info = {
            "format_version": FORMAT_VERSION, "source": source, "n_nodules": len(manifest),
            "n_patients": int(manifest["patient_id"].nunique()), "n_skipped": len(skipped),
            "class_counts": counts, "labels": labels.model_dump(), "crop": crop.model_dump(),
            "folds": folds.model_dump(), **(extra_info or {}),
        }
        write_json(tmp / "dataset.json", info)
    return Dataset(out)


class Dataset:
    """A dataset folder, read-only: the manifest, settings and per-nodule arrays."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / "manifest.parquet"
        if not manifest.is_file() or not (self.path / "dataset.json").is_file():
            raise InputError(f"not an autorad dataset (no manifest.parquet / dataset.json): {self.path}")
        self.info: dict[str, Any] = json.loads((self.path / "dataset.json").read_text())
        self.manifest: pd.DataFrame = pd.read_parquet(manifest)

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def nodule_ids(self) -> list[str]:
        return self.manifest["nodule_id"].astype(str).tolist()

    @property
    def class_counts(self) -> dict[str, int]:
        return {c: int((self.manifest["label"] == c).sum()) for c in CLASS_NAMES}

    @property
    def fingerprint(self) -> str:
        """A hash of the manifest file; changes whenever the dataset is rewritten differently."""
        return hash_file(self.path / "manifest.parquet")[:16]

    def row(self, nodule_id: str) -> pd.Series:
        hit = self.manifest[self.manifest["nodule_id"].astype(str) == str(nodule_id)]
        if hit.empty:
            raise KeyError(nodule_id)
        return hit.iloc[0]

    def arrays(self, nodule_id: str) -> dict[str, np.ndarray]:
        """All arrays of one nodule (no pickle)."""
        rel = self.row(nodule_id)["array_file"]
        with np.load(self.path / rel, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def iter_arrays(self, keys: tuple[str, ...] = ("crop_hu", "crop_mask")):
        """Yield ``(row, arrays)`` for every nodule in manifest order, loading only ``keys`` (if present)."""
        for _, row in self.manifest.iterrows():
            with np.load(self.path / row["array_file"], allow_pickle=False) as z:
                yield row, {k: z[k] for k in keys if k in z.files}


def class_count_line(counts: dict[str, int]) -> str:
    """``benign 362 / unsure 409 / malignant 315 (n=1086)``."""
    return " / ".join(f"{c} {counts.get(c, 0)}" for c in CLASS_NAMES) + f" (n={sum(counts.values())})"
