"""Click segmentation vs the 50% consensus masks of the dev max-slice crops: the Dice table of docs/segmentation.md.

    python bench/segment_dice.py --cv runs/segment_cv

Every crop with a non-empty consensus mask is clicked at its mask's centre (the centroid, or the mask pixel
nearest to it). Rows:
  * click U-Net, held-out patients: crop i is segmented by the fold model that never saw its patient
    (``CV/fold{k}``, written by bench/segment_train.py; patient-level 5-fold) - the honest number; also without
    test-time augmentation (the mean over 8 flips/rotations, which was added after seeing that row), and with
    each click moved 2 pixels in a random direction (seeded);
  * shipped U-Net on its own training crops (trained on all dev patients; for information only);
  * references: a disk with the true centre and the true equivalent diameter (which a user does not have);
    HU > -500 with the connected component at the click, alone and limited to 1.5x the true radius; the single
    reader outline that defined the max slice.
Prints mean and median Dice per row, then the mean per size bin (equivalent diameter of the consensus mask), then
the 3D Dice on the LIDC DICOM sample series (shipped model, and the fold model that never saw that patient).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from autorad.core.paths import shared_data_dir  # noqa: E402
from autorad.data.consensus import dice  # noqa: E402
from autorad.data.crop import equivalent_diameter_mm  # noqa: E402
from autorad.segment import ClickSegmenter, load_segmenter, seed_from_mask  # noqa: E402
from autorad.segment.evaluation import lidc_volumes, score_crops  # noqa: E402
from autorad.segment.training import CropSet, load_crops, patient_folds  # noqa: E402

BINS_MM = (0.0, 5.0, 10.0, 20.0, np.inf)


def disk_reference(crops: CropSet) -> np.ndarray:
    out = []
    for m, s in zip(crops.masks, crops.spacing_mm, strict=True):
        cr, cc = np.argwhere(m).mean(axis=0)
        r = equivalent_diameter_mm(m, s) / 2.0
        rows, cols = np.ogrid[:m.shape[0], :m.shape[1]]
        out.append(dice(((rows - cr) * s) ** 2 + ((cols - cc) * s) ** 2 <= r ** 2, m))
    return np.array(out)


def threshold_reference(crops: CropSet, limit_factor: float | None) -> np.ndarray:
    out = []
    for img, m, s in zip(crops.images, crops.masks, crops.spacing_mm, strict=True):
        seed = seed_from_mask(m)
        fg = img > -500
        if limit_factor is not None:
            cr, cc = np.argwhere(m).mean(axis=0)
            r = limit_factor * equivalent_diameter_mm(m, s) / 2.0
            rows, cols = np.ogrid[:m.shape[0], :m.shape[1]]
            fg &= ((rows - cr) * s) ** 2 + ((cols - cc) * s) ** 2 <= r ** 2
        lab, _ = ndi.label(fg)
        out.append(dice(lab == lab[seed], m) if lab[seed] else 0.0)
    return np.array(out)


def cv_scores(crops: CropSet, cv: Path, n_folds: int, seed: int, tta: bool = True, offset_px: int = 0) -> np.ndarray:
    folds = patient_folds(crops.patient_ids, n_folds, seed)
    out = np.full(len(crops), np.nan)
    for f in range(n_folds):
        rows = np.flatnonzero(folds == f)
        sub = crops.subset(rows)
        trained = load_segmenter(cv / f"fold{f}")
        seg = trained if tta else ClickSegmenter(trained.net, trained.meta, tta=False)
        out[rows] = score_crops(seg, sub.images, sub.masks, sub.spacing_mm, offset_px=offset_px, seed=f)
    return out


def lidc_3d(root: Path, crops: CropSet, cv: Path, n_folds: int, seed: int) -> None:
    """3D Dice on the LIDC DICOM sample, clicked at the 3D consensus centre: shipped model and held-out fold."""
    from autorad.data.geometry import middle_slice_index as middle_slice

    folds = patient_folds(crops.patient_ids, n_folds, seed)
    print(f"\n3D, LIDC DICOM sample ({root.name}), click at the 3D consensus centre:")
    for nodule_id, vol, truth in lidc_volumes(root):
        z, y, x = seed_from_mask(truth)
        seen = vol.patient_id in set(crops.patient_ids)
        models = [("shipped U-Net (trained on all dev patients)", load_segmenter())]
        if seen:
            f = int(folds[np.flatnonzero(crops.patient_ids == vol.patient_id)[0]])
            models.append((f"fold-{f} U-Net (never saw {vol.patient_id})", load_segmenter(cv / f"fold{f}")))
        for name, seg in models:
            res = seg.segment_3d(vol.hu, vol.spacing_mm, (x, y, z))
            k_true, k_seg = middle_slice(truth), middle_slice(res.mask)
            print(f"  {nodule_id}, {name}: 3D Dice {dice(res.mask, truth):.3f}; slices "
                  f"{_extent(res.mask)} vs consensus {_extent(truth)}; middle slice {k_seg} vs {k_true}; "
                  f"Dice on the consensus middle slice {dice(res.mask[k_true], truth[k_true]):.3f}")
        per_slice = []
        for k in np.flatnonzero(truth.any(axis=(1, 2))):  # a click on any slice of the nodule
            r, c = seed_from_mask(truth[k])
            per_slice.append(dice(load_segmenter().segment_3d(vol.hu, vol.spacing_mm, (c, r, int(k))).mask, truth))
        print(f"  {nodule_id}, shipped U-Net, clicked at the centre of each of its {len(per_slice)} consensus slices: "
              f"3D Dice {min(per_slice):.3f} to {max(per_slice):.3f} (mean {np.mean(per_slice):.3f})")


def _extent(mask: np.ndarray) -> str:
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    return f"{ks[0]}-{ks[-1]}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", default=None)
    p.add_argument("--cv", required=True, help="folder with fold0..fold4 from bench/segment_train.py")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    npz = Path(a.npz) if a.npz else (shared_data_dir() or Path("missing")) / "lidc_maxslice" / "lidc_maxslice_dev.npz"
    if not npz.is_file():
        print(f"max-slice NPZ not found: {npz}", file=sys.stderr)
        return 2
    t0 = time.time()
    crops = load_crops(npz)
    with np.load(npz, allow_pickle=False) as z:
        reader = z["reader_outline_mask"][crops.index].astype(bool)
    rows = {
        "click U-Net, held-out patients (5-fold CV)": cv_scores(crops, Path(a.cv), a.folds, a.seed),
        "  same, without test-time augmentation": cv_scores(crops, Path(a.cv), a.folds, a.seed, tta=False),
        "  same, click 2 px off the centre": cv_scores(crops, Path(a.cv), a.folds, a.seed, offset_px=2),
        "shipped U-Net on its training crops": score_crops(load_segmenter(), crops.images, crops.masks,
                                                           crops.spacing_mm),
        "disk, true centre + true equiv. diameter": disk_reference(crops),
        "HU > -500, component at the click": threshold_reference(crops, None),
        "HU > -500, component, <= 1.5x true radius": threshold_reference(crops, 1.5),
        "max-slice reader outline": np.array([dice(r, m) for r, m in zip(reader, crops.masks, strict=True)]),
    }
    diam = np.array([equivalent_diameter_mm(m, s) for m, s in zip(crops.masks, crops.spacing_mm, strict=True)])
    bins = list(zip(BINS_MM[:-1], BINS_MM[1:], strict=True))
    bin_names = [f"{lo:g}-{hi:g} mm" if np.isfinite(hi) else f">= {lo:g} mm" for lo, hi in bins]
    n_pat = len(np.unique(crops.patient_ids))
    print(f"{len(crops)} dev crops with a consensus mask ({n_pat} patients), clicked at the mask centre")
    head = f"| {'method':44} | mean  | median | " + " | ".join(f"{b:>9}" for b in bin_names) + " |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, d in rows.items():
        per_bin = [d[(diam >= lo) & (diam < hi)].mean() for lo, hi in bins]
        print(f"| {name:44} | {d.mean():.3f} | {np.median(d):.3f}  | " + " | ".join(f"{v:9.3f}" for v in per_bin)
              + " |")
    counts = [int(((diam >= lo) & (diam < hi)).sum()) for lo, hi in bins]
    print("crops per size bin (equivalent diameter of the consensus mask): "
          + ", ".join(f"{b}: {n}" for b, n in zip(bin_names, counts, strict=True)))
    cv = rows["click U-Net, held-out patients (5-fold CV)"]
    folds = patient_folds(crops.patient_ids, a.folds, a.seed)
    print("held-out mean Dice per fold: " + ", ".join(f"{cv[folds == f].mean():.3f}" for f in range(a.folds)))
    print(f"held-out crops with Dice < 0.5: {int((cv < 0.5).sum())}; "
          f"nothing found at the click: {int((cv == 0).sum())}")
    lidc = npz.parents[1] / "lidc_dicom_sample"
    if lidc.is_dir():
        lidc_3d(lidc, crops, Path(a.cv), a.folds, a.seed)
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
