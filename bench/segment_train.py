"""Train the click segmenter: the 5 patient-level cross-validation models and the shipped model.

    python bench/segment_train.py --out runs/segment_cv [--epochs 10] [--seed 0] [--jobs 1] [--ship]

Writes ``OUT/fold{k}/`` (trained on the patients outside fold k; scored on fold k by bench/segment_dice.py) and
``OUT/all/`` (trained on every dev patient). ``--ship`` copies ``OUT/all`` into the package
(src/autorad/segment/weights/), the weights ``autorad segment`` uses. Each training runs on one CPU thread
(about 10 min on a free core); ``--jobs N`` runs N trainings at once in separate processes. Finished models are
kept, so a rerun only trains what is missing. Seeded: a rerun on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from autorad.paths import shared_data_dir  # noqa: E402
from autorad.segment.model import WEIGHTS_DIR  # noqa: E402
from autorad.segment.training import train_and_save  # noqa: E402
from autorad.train.checkpoint import checkpoint_exists  # noqa: E402


def _one(args: tuple) -> str:
    npz, out, n_folds, fold, seed, epochs = args
    name = "all" if fold is None else f"fold{fold}"
    train_and_save(npz, Path(out) / name, n_folds=n_folds, fold=fold, seed=seed, epochs=epochs,
                   log=lambda m: print(f"[{name}] {m}", flush=True))
    return name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", default=None, help="max-slice NPZ (default: the shared dev file)")
    p.add_argument("--out", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", choices=["all", "folds", "both"], default="both")
    p.add_argument("--ship", action="store_true", help="copy OUT/all into the package weights folder")
    a = p.parse_args()
    npz = a.npz or (shared_data_dir() or Path("missing")) / "lidc_maxslice" / "lidc_maxslice_dev.npz"
    if not Path(npz).is_file():
        print(f"max-slice NPZ not found: {npz}", file=sys.stderr)
        return 2
    todo = ([] if a.only == "folds" else [None]) + ([] if a.only == "all" else list(range(a.folds)))
    todo = [f for f in todo if not checkpoint_exists(Path(a.out) / ("all" if f is None else f"fold{f}"))]
    jobs = [(str(npz), a.out, a.folds, f, a.seed, a.epochs) for f in todo]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            for name in ex.map(_one, jobs):
                print(f"{name} done", flush=True)
    else:
        for j in jobs:
            print(f"{_one(j)} done", flush=True)
    if a.ship:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for f in ("model.safetensors", "model.json"):
            shutil.copyfile(Path(a.out) / "all" / f, WEIGHTS_DIR / f)
        print(f"shipped {Path(a.out) / 'all'} -> {WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
