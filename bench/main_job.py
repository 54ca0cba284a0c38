"""Time the main job on the real set and check that it prints what docs/results.md says.

    python bench/main_job.py [--config autorad_quality] [--out DIR] [--docs docs/results.md]

Runs ``autorad run CONFIG --out DIR`` in a fresh process from nothing (ingest of the shared max-slice NPZ,
radiomics, embeddings, cross-validation, final model, report), then prints:
  1. the job's own stage times (``DIR/stage_times.json``) and the total as a ratio of the 20-minute budget
     (target: <= 1.00 on 2 idle cores; the load average at start and end is printed);
  2. its pooled cross-validated accuracy, unsure F1 and macro AUC next to the row of the same config in
     docs/results.md (written by docs/scripts/make_results.py from other processes), and whether they agree to
     the third decimal.
The default is the main job (`autorad_quality`, the 3-seed ensemble); ``--config autorad_quality_fast`` times its
one-seed fast default. Exit 0 when both hold, 1 otherwise.
Needs the shared data (../shared/data or $AUTORAD_SHARED_DATA).
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

BUDGET_S = 20 * 60
KEYS = (("accuracy", "accuracy"), ("unsure F1", "per_class.unsure.f1"), ("macro AUC", "macro_auc"))
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/radiomics.py shadows PyRadiomics


def documented_row(docs: Path, row: str) -> dict[str, float] | None:
    """The seed-ensemble pooled values of ``row`` in the main table of docs/results.md (None when absent)."""
    for line in docs.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == f"`{row}`" and len(cells) >= 8:
            return {name: float(cells[5 + i]) for i, (name, _) in enumerate(KEYS)}
    return None


def pooled(metrics: dict) -> dict[str, float]:
    from autorad.evaluate.metrics import flatten_scalars

    flat = flatten_scalars(metrics["pooled"])
    return {name: float(flat[key]) for name, key in KEYS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="autorad_quality")
    ap.add_argument("--out", default=None, help="a new folder for the run (default: a temporary one)")
    ap.add_argument("--docs", default="docs/results.md")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="autorad-main-job-")) / "run"
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autorad", "run", args.config, "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(f"autorad run {args.config} --out {out}: exit {proc.returncode}, {wall:.0f} s wall "
          f"(load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} CPUs)")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
        return 1
    stages = json.loads((out / "stage_times.json").read_text())
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    ratio = stages["total"] / BUDGET_S
    print(f"total / 20-minute budget: {ratio:.2f} ({'within' if ratio <= 1 else 'over'} budget)")
    got = pooled(json.loads((out / "run" / "metrics.json").read_text()))
    want = documented_row(Path(args.docs), args.config)
    print("pooled CV (this run): " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()))
    if want is None:
        print(f"{args.docs} has no `{args.config}` row to compare with")
        return 1
    same = all(f"{got[k]:.3f}" == f"{want[k]:.3f}" for k in want)
    print(f"{args.docs} `{args.config}`: " + ", ".join(f"{k} {v:.3f}" for k, v in want.items())
          + f" -> {'identical' if same else 'DIFFERENT'} to the third decimal")
    return 0 if same and ratio <= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
