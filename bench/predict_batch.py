"""Benchmark ``autorad predict --nodules`` (model loaded once) against one ``autorad predict`` per nodule.

    python bench/predict_batch.py [--run RUN] [--n 12] [--work DIR]

The nodules are the consensus masks of the LIDC DICOM sample (../shared/data/lidc_dicom_sample), as NIfTI masks
of their series (repeated to reach --n rows). In one run it times:
  1. today's single-nodule command: a fresh ``autorad predict RUN --dicom SERIES --mask MASK`` process per nodule
     (start-up, model loading, CT loading and the prediction), mean wall seconds per nodule;
  2. the batch command ``autorad predict RUN --nodules CSV --out DIR`` on all N rows and on the first row alone;
     per-nodule time after loading = (T_N - T_1) / (N - 1);
and prints the ratio (2)/(1). Target: <= 1/4. Without --run a radiomics_logreg run is trained on 150 max-slice
nodules first (not timed). Wall-clock times depend on how busy the machine is (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("AUTORAD_NO_PROGRESS", "1")
# bench/radiomics.py would shadow PyRadiomics: keep this folder off sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def small_run(work: Path, shared: Path) -> Path:
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    ds = ingest("maxslice", work / "ds", shared / "lidc_maxslice" / "lidc_maxslice_dev.npz",
                DataConfig(source="maxslice", limit=150))
    return train(ds.path, load_config("radiomics_logreg"), work / "run")


def nodule_rows(work: Path, shared: Path, n: int) -> list[dict[str, str]]:
    """One row per LIDC sample nodule: its series folder and its consensus middle-slice mask (NIfTI)."""
    import SimpleITK as sitk  # noqa: N813

    from autorad.data.dicom import load_series
    from autorad.data.lidc import find_series_folders, iter_lidc

    rows = []
    for sf in find_series_folders(shared / "lidc_dicom_sample"):
        vol = load_series(sf.path)
        ref = vol.to_sitk()
        for rec in (r for r in iter_lidc(sf.path) if hasattr(r, "slice_mask")):
            m = np.zeros(vol.hu.shape, np.uint8)
            m[vol.slice_index(rec.z_mm)] = rec.slice_mask
            img = sitk.GetImageFromArray(m)
            img.CopyInformation(ref)
            path = work / f"mask_{len(rows)}.nii.gz"
            sitk.WriteImage(img, str(path), True)
            rows.append({"ct": str(sf.path), "mask": str(path)})
    if not rows:
        raise SystemExit("no nodule found in the LIDC DICOM sample")
    return [dict(rows[i % len(rows)], id=f"n{i}") for i in range(n)]


def autorad(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "autorad", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"autorad {' '.join(args[:2])} failed: {r.stderr.strip()[-500:]}")
    return time.perf_counter() - t0, r


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("id,ct,mask\n" + "".join(f"{r['id']},{r['ct']},{r['mask']}\n" for r in rows))
    return path


def main() -> None:
    from autorad.core.paths import shared_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="trained run folder (default: train a small radiomics_logreg run)")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("the shared LIDC data is needed (set AUTORAD_SHARED_DATA)")
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    run = Path(a.run) if a.run else small_run(work, shared)
    rows = nodule_rows(work, shared, a.n)
    print(f"run {run.name}; {a.n} nodules ({len({r['mask'] for r in rows})} distinct) of the LIDC DICOM sample; "
          f"load average {os.getloadavg()[0]:.2f}")

    single = []
    outputs = []
    for r in rows:
        t, res = autorad("predict", str(run), "--dicom", r["ct"], "--mask", r["mask"])
        single.append(t)
        outputs.append(json.loads(res.stdout)["probabilities"])
    t_all, _ = autorad("predict", str(run), "--nodules", str(write_csv(work / "all.csv", rows)), "--out",
                       str(work / "batch_all"))
    t_one, _ = autorad("predict", str(run), "--nodules", str(write_csv(work / "one.csv", rows[:1])), "--out",
                       str(work / "batch_one"))
    import pandas as pd

    table = pd.read_csv(work / "batch_all" / "predictions.csv")
    worst = max(abs(table.iloc[i][f"prob_{c}"] - outputs[i][c]) for i in range(len(rows)) for c in outputs[i])
    per_single = float(np.mean(single))
    per_batch = (t_all - t_one) / (len(rows) - 1)
    print(f"single-nodule command: {per_single:.2f} s per nodule (mean of {len(single)} processes, "
          f"min {min(single):.2f}, max {max(single):.2f})")
    print(f"batch: {t_all:.2f} s for {len(rows)} nodules, {t_one:.2f} s for 1 -> {per_batch:.3f} s per nodule "
          "after loading")
    print(f"largest probability difference batch vs single: {worst:.2e}")
    print(f"ratio batch per-nodule / single command: {per_batch / per_single:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
