"""Source: the max-slice crops NPZ (``lidc_maxslice_dev.npz``, see ../shared/data/README.md).

Each entry is a 71x71 HU window around the nodule on the slice where one reader's outline is largest, with the
50% consensus mask of all readers on that slice and the readers' ratings. Deviation from the paper: this is the
max slice, not the consensus middle slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autorad.core.errors import InputError
from autorad.data.dataset import RATING_NAMES, NoduleRecord, Skip

REQUIRED_KEYS = ("images_hu", "consensus_mask", "ratings", "rating_names", "nodule_id", "patient_id",
                 "series_uid", "pixel_spacing_mm")


def open_maxslice(path: str | Path) -> dict[str, np.ndarray]:
    """Load and check the NPZ (no pickle); raise :class:`InputError` on a missing file or missing keys."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a folder; ingest maxslice needs the .npz file")
    if not p.is_file():
        raise InputError(f"max-slice file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as err:  # zipfile.BadZipFile, ValueError (pickled object arrays), OSError
        raise InputError(f"cannot read {p} as a max-slice NPZ: {type(err).__name__}: {err}") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputError(f"{p} is not a max-slice NPZ: missing array(s) {', '.join(missing)}")
    n = len(data["images_hu"])
    if data["consensus_mask"].shape != data["images_hu"].shape or len(data["ratings"]) != n:
        raise InputError(f"{p}: images, masks and ratings disagree in shape")
    return data


def iter_maxslice(path: str | Path, limit: int | None = None) -> Iterator[NoduleRecord | Skip]:
    """Yield one record per nodule of the NPZ."""
    d = open_maxslice(path)
    names = [str(x) for x in d["rating_names"]]
    try:
        order = [names.index(n) for n in RATING_NAMES]
    except ValueError:
        raise InputError(f"{path}: rating_names {names} do not list the 9 LIDC attributes") from None
    n = len(d["images_hu"]) if limit is None else min(limit, len(d["images_hu"]))
    thick = d.get("slice_thickness_mm", np.full(n, np.nan))
    z = d.get("z_mm", np.full(n, np.nan))
    manufacturer = d.get("manufacturer")
    for i in range(n):
        extra = {"source_nodule_id": int(d["nodule_id"][i])}
        if manufacturer is not None:
            extra["manufacturer"] = str(manufacturer[i])
        yield NoduleRecord(
            nodule_id=f"ms{int(d['nodule_id'][i]):05d}", patient_id=str(d["patient_id"][i]),
            series_uid=str(d["series_uid"][i]), ratings=np.asarray(d["ratings"][i])[:, order],
            slice_hu=d["images_hu"][i], slice_mask=d["consensus_mask"][i],
            pixel_spacing_mm=float(d["pixel_spacing_mm"][i]), slice_thickness_mm=float(thick[i]),
            z_mm=float(z[i]), extra=extra)


def count_maxslice(path: str | Path) -> int:
    """Number of nodules in the NPZ (for progress bars)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return len(z["nodule_id"])
