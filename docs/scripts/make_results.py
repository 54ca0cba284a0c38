"""Reproduce docs/results.md: every baseline and AutoRad on the real LIDC max-slice set, same patient-level folds.

    python docs/scripts/make_results.py [--out runs/results] [--epochs 30] [--only autorad coop ...]

Reads the max-slice NPZ from $AUTORAD_SHARED_DATA (default ../shared/data). Label rule median, >= 3 readers,
5 patient-level folds (seed 0). Everything is cached under --out, so a rerun only does what changed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from autorad.config import DataConfig, RadiomicsConfig, load_config
from autorad.data.dataset import Dataset
from autorad.data.ingest import ingest
from autorad.encoders.embed import embed_dataset
from autorad.evaluate.compare import compare
from autorad.paths import shared_data_dir
from autorad.radiomics.extract import run_radiomics
from autorad.train.cv import train

# (run name, shipped config, overrides)
RUNS: list[tuple[str, str, list[str]]] = [
    ("radiomics_logreg", "radiomics_logreg", []),
    ("radiomics_gbm", "radiomics_gbm", []),
    ("linear_probe", "linear_probe", []),
    ("coop", "coop", []),
    ("autorad", "offline", []),
    ("cocoop", "cocoop", []),
    ("autorad_image", "autorad_image", []),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--set", action="append", default=[], help="override for the prompt-learner runs")
    ap.add_argument("--jobs", type=int, default=2, help="radiomics worker processes")
    ap.add_argument("--docs", default="docs/results_table.md", help="where to write the comparison table")
    args = ap.parse_args()
    shared = shared_data_dir()
    if shared is None:
        print("no shared data: set AUTORAD_SHARED_DATA", file=sys.stderr)
        return 2
    out = Path(args.out)
    ds_dir = out / "dataset"
    if not (ds_dir / "manifest.parquet").is_file():
        ingest("maxslice", ds_dir, shared / "lidc_maxslice" / "lidc_maxslice_dev.npz", DataConfig(source="maxslice"))
    ds = Dataset(ds_dir)
    t0 = time.time()
    run_radiomics(ds.path, RadiomicsConfig(jobs=args.jobs))
    print(f"radiomics: {time.time() - t0:.0f} s", flush=True)
    t0 = time.time()
    embed_dataset(ds.path, load_config("offline").model.vision_encoder)
    print(f"embeddings: {time.time() - t0:.0f} s", flush=True)
    timings = {}
    runs = []
    for name, config, overrides in RUNS:
        if args.only and name not in args.only:
            continue
        cfg = load_config(config, overrides + (args.set if config not in ("radiomics_logreg", "radiomics_gbm")
                                               else []))
        cfg.name = name
        t0 = time.time()
        train(ds.path, cfg, out / name)
        timings[name] = round(time.time() - t0, 1)
        runs.append(out / name)
    # the table covers every run present under --out, also those not retrained this time (--only)
    runs = [out / name for name, _, _ in RUNS if (out / name / "metrics.json").is_file()]
    table = compare(runs, out=out / "compare")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.docs).write_text(
        f"<!-- written by docs/scripts/make_results.py at commit {rev} on {platform.node() and 'a 2-core CPU'} -->\n"
        f"{table}\n\nWall time per run (s, CPU, features cached after the first): {json.dumps(timings)}\n")
    print(table)
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
