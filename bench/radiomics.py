"""Benchmark the radiomics stage on real LIDC nodules, all in one process run.

    python bench/radiomics.py [--n 200] [--npz PATH] [--work DIR]

On the same N real max-slice nodules (71x71 windows) it times:
  1. PyRadiomics' extractor in a plain loop (np.load -> SimpleITK image/mask -> execute), the baseline;
  2. ``autorad radiomics --jobs 1`` (run_radiomics, empty cache);
  3. the cached rerun;
  4. ``--jobs 2`` (empty cache again);
and prints each as a speed ratio to the plain loop (>1 = faster), checking that every table equals the plain
loop's features. Wall-clock numbers depend heavily on how busy the machine is (the load average is printed);
CPU seconds (this process plus its finished worker processes) are printed too, as they are steadier.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("AUTORAD_NO_PROGRESS", "1")
# This file is named radiomics.py: keep its folder off sys.path so `import radiomics` finds PyRadiomics.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def build_dataset(npz: Path, n: int, out: Path) -> Path:
    """Ingest enough max-slice entries to keep >= n nodules, then keep exactly the first n."""
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest

    limit = int(n * 2.2)
    while True:
        shutil.rmtree(out, ignore_errors=True)
        ds = ingest("maxslice", out, npz, DataConfig(source="maxslice", limit=limit))
        if len(ds) >= n:
            break
        limit = int(limit * 1.3)
    manifest = pd.read_parquet(out / "manifest.parquet").head(n)
    manifest.to_parquet(out / "manifest.parquet", index=False)
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (worker processes are reaped after a run)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def plain_loop(ds: Path) -> tuple[float, float, np.ndarray]:
    """The baseline: what a user would write around PyRadiomics."""
    import logging

    import SimpleITK as sitk  # noqa: N813
    from radiomics import featureextractor

    from autorad.radiomics.settings import PARAMS_DIR

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    manifest = pd.read_parquet(ds / "manifest.parquet")
    t, c = time.perf_counter(), _cpu()
    extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS_DIR / "autorad_2d.yaml"))
    rows = []
    for _, row in manifest.iterrows():
        with np.load(ds / row["array_file"], allow_pickle=False) as z:
            hu, mask = z["slice_hu"], z["slice_mask"]
        image = sitk.GetImageFromArray(hu.astype(np.float64))
        label = sitk.GetImageFromArray(mask.astype(np.uint8))
        s = float(row["pixel_spacing_mm"])
        image.SetSpacing((s, s))
        label.SetSpacing((s, s))
        result = extractor.execute(image, label)
        rows.append([float(v) for k, v in result.items() if not k.startswith("diagnostics_")])
    return time.perf_counter() - t, _cpu() - c, np.array(rows)


def timed_run(ds: Path, jobs: int, clear_cache: bool) -> tuple[float, float, np.ndarray]:
    from autorad.config import RadiomicsConfig
    from autorad.radiomics import feature_columns, load_radiomics
    from autorad.radiomics.extract import run_radiomics
    from autorad.radiomics.table import CACHE_SUBDIR

    if clear_cache:
        shutil.rmtree(ds / CACHE_SUBDIR, ignore_errors=True)
    t, c = time.perf_counter(), _cpu()
    run_radiomics(ds, RadiomicsConfig(jobs=jobs))
    took, cpu = time.perf_counter() - t, _cpu() - c
    df = load_radiomics(ds)
    assert (df["status"] == "ok").all(), df["status"].value_counts()
    return took, cpu, df[feature_columns(df.columns)].to_numpy()


def main(argv: list[str] | None = None) -> int:
    from autorad.core.paths import shared_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--npz", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args(argv)
    npz = a.npz or ((shared_data_dir() or Path("missing")) / "lidc_maxslice" / "lidc_maxslice_dev.npz")
    if not npz.is_file():
        print(f"max-slice NPZ not found: {npz} (pass --npz or set AUTORAD_SHARED_DATA)", file=sys.stderr)
        return 2
    work = a.work or Path(tempfile.mkdtemp(prefix="autorad-bench-"))
    ds = build_dataset(npz, a.n, work / "ds")
    import radiomics

    print(f"{a.n} real nodules (71x71 max-slice windows), PyRadiomics {radiomics.__version__}, "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    base_t, base_c, base = plain_loop(ds)
    results = [("PyRadiomics plain loop", base_t, base_c, base)]
    results.append(("autorad --jobs 1", *timed_run(ds, 1, clear_cache=True)))
    results.append(("autorad cached rerun", *timed_run(ds, 1, clear_cache=False)))
    results.append(("autorad --jobs 2", *timed_run(ds, 2, clear_cache=True)))
    print(f"{'run':24} {'wall s':>8} {'nodules/s':>10} {'ms/nodule':>10} {'vs plain loop':>14} "
          f"{'CPU s':>8} {'CPU vs plain':>13}")
    for name, t, c, X in results:
        assert np.array_equal(X, base, equal_nan=True), f"{name}: features differ from the plain loop"
        print(f"{name:24} {t:8.2f} {a.n / t:10.2f} {1000 * t / a.n:10.1f} {base_t / t:13.2f}x "
              f"{c:8.2f} {base_c / c:12.2f}x")
    print(f"all tables identical to the plain loop; load average at end {os.getloadavg()[0]:.1f}")
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
