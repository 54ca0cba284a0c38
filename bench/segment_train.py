"""Train the click segmenter: the 5 patient-level cross-validation models and the shipped model.

    python bench/segment_train.py --out runs/segment_cv [--epochs 10] [--seed 0] [--jobs 1] [--ship]

Writes ``OUT/fold{k}/`` (trained on the patients outside fold k; scored on fold k by bench/segment_dice.py) and
``OUT/all/`` (trained on every dev patient). ``--ship`` copies ``OUT/all`` into the package
(src/autorad/segment/weights/), the weights ``autorad segment`` uses. Each training runs on one CPU thread
(about 10 min on a free core); ``--jobs N`` runs N trainings at once in worker processes, ``--executor ray``
as Ray tasks (autorad.core.tasks). Finished models are kept, so a rerun only trains what is missing. Seeded: a rerun
on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from autorad.core.paths import shared_data_dir  # noqa: E402
from autorad.core.tasks import run_tasks  # noqa: E402
from autorad.segment.model import WEIGHTS_DIR  # noqa: E402
from autorad.segment.training import train_task  # noqa: E402
from autorad.train.checkpoint import checkpoint_exists  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", default=None, help="max-slice NPZ (default: the shared dev file)")
    p.add_argument("--out", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (worker processes or Ray CPUs)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--only", choices=["all", "folds", "both"], default="both")
    p.add_argument("--ship", action="store_true", help="copy OUT/all into the package weights folder")
    a = p.parse_args()
    npz = a.npz or (shared_data_dir() or Path("missing")) / "lidc_maxslice" / "lidc_maxslice_dev.npz"
    if not Path(npz).is_file():
        print(f"max-slice NPZ not found: {npz}", file=sys.stderr)
        return 2
    todo = ([] if a.only == "folds" else [None]) + ([] if a.only == "all" else list(range(a.folds)))
    todo = [f for f in todo if not checkpoint_exists(Path(a.out) / ("all" if f is None else f"fold{f}"))]
    tasks = [{"npz": str(npz), "out": str(Path(a.out) / ("all" if f is None else f"fold{f}")), "n_folds": a.folds,
              "fold": f, "seed": a.seed, "epochs": a.epochs} for f in todo]
    for name in run_tasks(train_task, tasks, jobs=a.jobs, executor=a.executor, address=a.address):
        print(f"{name} done", flush=True)
    if a.ship:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for f in ("model.safetensors", "model.json"):
            shutil.copyfile(Path(a.out) / "all" / f, WEIGHTS_DIR / f)
        print(f"shipped {Path(a.out) / 'all'} -> {WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
