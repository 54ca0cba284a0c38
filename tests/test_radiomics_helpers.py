"""Helpers (no tests): small synthetic datasets for the radiomics tests; real nodules come from conftest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from autorad.data.dataset import NoduleRecord, write_dataset


def blob_image(size: int = 48, seed: int = 0, flat: bool = False) -> np.ndarray:
    """A noisy lung-like background (HU) with a brighter round nodule in the middle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.where(r < size / 6, 20.0, -750.0) + (0 if flat else rng.normal(0, 60, (size, size)))
    return np.full((size, size), 40.0) if flat else img


def blob_mask(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - size / 2, xx - size / 2) < size / 6


def record(nid: str, image: np.ndarray, mask: np.ndarray, spacing: float = 0.7, volume: bool = False,
           seed: int = 0) -> NoduleRecord:
    ratings = np.zeros((3, 9), dtype=np.int16)
    ratings[:, 8] = [2, 3, 4]  # malignancy of three readers -> "unsure"
    vol = vmask = None
    if volume:
        rng = np.random.default_rng(seed)
        vol = rng.normal(-700, 80, (9, *image.shape)).astype(np.int16)
        vol[2:7][:, mask] += 700
        vmask = np.zeros(vol.shape, dtype=bool)
        vmask[2:7][:, mask] = True
    return NoduleRecord(nodule_id=nid, patient_id=f"P{nid}", series_uid=f"S{nid}", ratings=ratings,
                        slice_hu=np.asarray(image).astype(np.int16), slice_mask=mask, pixel_spacing_mm=spacing,
                        volume_hu=vol, volume_mask=vmask,
                        volume_spacing_mm=(2.5, spacing, spacing) if volume else None)


def write_synthetic(out: Path, records: list[NoduleRecord]) -> Path:
    from autorad.config import FoldConfig

    write_dataset(records, out, "synthetic", folds=FoldConfig(n_folds=2))
    return out


def set_mask(dataset: Path, nodule_id: str, mask: np.ndarray) -> None:
    """Overwrite one nodule's slice mask (write_dataset refuses empty masks; the radiomics stage must not crash)."""
    m = pd.read_parquet(dataset / "manifest.parquet")
    f = dataset / m.loc[m["nodule_id"] == nodule_id, "array_file"].iloc[0]
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["slice_mask"] = mask
    np.savez_compressed(f, **arrays)


def copy_dataset(src: Path, dst: Path, first: int | None = None) -> Path:
    """Copy a dataset without its caches or tables; optionally keep only the first N nodules."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cache", "radiomics*"))
    if first is not None:
        m = pd.read_parquet(dst / "manifest.parquet").head(first)
        m.to_parquet(dst / "manifest.parquet", index=False)
    return dst
