"""Build the built-in model ``lidc``: ``autorad_quality`` trained on the whole shared LIDC-IDRI dev set.

    python docs/scripts/build_lidc_model.py [--run runs/lidc_build] [--out src/autorad/pretrained/lidc]

1. ``autorad run autorad_quality --out RUN`` in a fresh process (resumes a finished or interrupted RUN): ingest of
   the shared max-slice NPZ ($AUTORAD_SHARED_DATA), radiomics, embeddings, 3 seeds x 5 patient-level folds, the final
   3-seed ensemble trained on all 1,086 nodules;
2. the sealed run record (CV summary, the training patients and series as hashes) attached to ``final/model``;
3. ``autorad calibrate RUN/run``: the temperature fitted on the out-of-fold predictions (docs/training.md), which
   joins the sealed record;
4. copies what a predictor needs (``final/model``, ``metrics.json``, ``run.json``, ``config.yaml``, the CV figures)
   into OUT and writes OUT/MODEL_CARD.md from the run's own numbers;
5. loads OUT as a predictor and predicts the shipped sample CT, printing the result.
OUT is replaced only when it holds an earlier output of this script (its ``.built-by`` file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFIG = "autorad_quality"
MARKER = ".built-by"


def sh(*args: str) -> None:
    print("+ autorad", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "autorad", *args], check=True)


def check_out(out: Path) -> None:
    """OUT may be replaced only when this script wrote it (checked before the main job, and again when copying)."""
    if (out.exists() or out.is_symlink()) and not (out / MARKER).is_file():
        print(f"build_lidc_model: error: --out {out} exists and was not written by this script; remove it yourself "
              "or choose another folder", file=sys.stderr)
        raise SystemExit(2)


def copy_model(run: Path, out: Path) -> None:
    check_out(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(run / "final" / "model", out / "final" / "model")
    for name in ("metrics.json", "run.json", "config.yaml"):
        shutil.copy2(run / name, out / name)
    figs = run / "figures"
    if figs.is_dir():
        (out / "figures").mkdir()
        for f in sorted(figs.iterdir()):
            if f.suffix == ".png":
                shutil.copy2(f, out / "figures" / f.name)
    (out / MARKER).write_text(f"docs/scripts/build_lidc_model.py from {CONFIG}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/lidc_build"), help="the main job's folder (the run is "
                                                                             "RUN/run, its dataset RUN/dataset)")
    ap.add_argument("--out", type=Path, default=Path("src/autorad/pretrained/lidc"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_out(args.out)  # before the main job, not after it
    run = args.run / "run"
    sh("run", CONFIG, "--out", str(args.run))  # a finished run is reused as it is (and sealed with its record)
    from autorad.train.record import attach_run_record
    from autorad.train.run import Run

    attach_run_record(Run(run))  # a run trained before records existed gets one now (a no-op otherwise)
    sh("calibrate", str(run))  # the temperature joins the sealed record
    copy_model(run, args.out)
    from autorad.pretrained.card import write_model_card

    write_model_card(args.out)
    from autorad.apps.predictor import Predictor
    from autorad.samples import get_sample

    s = get_sample("lidc-idri-0001")
    res = Predictor.load(args.out).predict(s.path, center=s.center).to_dict()
    print(json.dumps({k: res[k] for k in ("predicted_class", "probabilities", "warnings")}, indent=2))
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"built {args.out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
