"""Write the built-in model's section of docs/results.md from the model's own files.

    python docs/scripts/make_builtin_section.py [--model src/autorad/pretrained/lidc] [--write docs/results.md]

Reads the sealed metrics of the built-in model `lidc` (its metrics.json, which must equal what is sealed into its
final model) and prints a Markdown section: its cross-validation (seed ensemble and mean +- std over seeds) and its
calibration before and after temperature scaling, with the reliability diagrams. With ``--write`` it replaces the
part of the page between ``<!-- builtin:start -->`` and ``<!-- builtin:end -->`` (added before "## Deviations from
the paper" when absent); make_results.py keeps such sections when it rewrites the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

START, END = "<!-- builtin:start -->", "<!-- builtin:end -->"
ROOT = Path(__file__).resolve().parents[2]


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{d} {version(d)}" for d in ("numpy", "scipy", "scikit-learn", "pandas", "torch",
                                                    "pyradiomics-bhklab", "SimpleITK", "scikit-image"))


def section(model: Path) -> str:
    from autorad.apps.predictor import Predictor
    from autorad.train.record import sealed_metrics

    p = Predictor.load(model)
    if p.record_warnings:
        raise SystemExit(f"{model}: {p.record_warnings[0]}")
    m = sealed_metrics(p.meta)
    pooled, seeds, cal = m["pooled"], m.get("seeds") or {}, m.get("calibration") or {}
    mean, std = seeds.get("mean") or {}, seeds.get("std") or {}
    before, after = (cal.get("cv") or {}).get("before") or {}, (cal.get("cv") or {}).get("after") or {}
    figs = Path("..") / model.resolve().relative_to(ROOT) / "figures"
    rel = model.resolve().relative_to(ROOT)
    lines = [
        START,
        "## The built-in model `lidc` and its calibration",
        "",
        "<!-- written by docs/scripts/make_builtin_section.py: do not edit by hand -->",
        "",
        f"`autorad_quality` trained on all {m['n']} nodules by `python docs/scripts/build_lidc_model.py` (the main job "
        f"from nothing, then `autorad calibrate`), shipped in `{rel}` with its [model card]"
        f"(../{rel}/MODEL_CARD.md). Its own cross-validation, read from the metrics sealed into it:",
        "",
        "| | accuracy | unsure F1 | macro AUC | ECE |",
        "|---|---:|---:|---:|---:|",
        f"| seed ensemble (pooled) | {_f(pooled['accuracy'])} | {_f(pooled['per_class']['unsure']['f1'])} | "
        f"{_f(pooled['macro_auc'])} | {_f(pooled['ece'])} |",
        f"| mean ± std over {p.cfg.train.n_seeds} seeds | {_f(mean.get('accuracy'))} ± "
        f"{_f(std.get('accuracy'))} | {_f(mean.get('per_class.unsure.f1'))} ± {_f(std.get('per_class.unsure.f1'))} | "
        f"{_f(mean.get('macro_auc'))} ± {_f(std.get('macro_auc'))} | |",
        "",
        "These come from the build's own run, made in a fresh `make setup` environment (the one writing this "
        f"section has {versions()}). Where they differ from the `autorad_quality` row of the main table above "
        "(same config, same folds, computed earlier by make_results.py), the cause has not been established; the "
        "likeliest is other versions of the dependencies autorad does not pin.",
        "",
        "**Calibration.** Temperature scaling: one temperature T divides the log-probabilities (the class with the "
        "largest probability never changes). T is fitted on the out-of-fold predictions (minimum log loss); the "
        "estimate of what it does scales each fold with a T fitted on the other folds only "
        "(docs/training.md says why that is still slightly optimistic).",
        "",
        "| out-of-fold predictions | ECE | log loss | Brier | accuracy | macro AUC |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {name} | {_f(b.get('ece'))} | {_f(b.get('nll'))} | {_f(b.get('brier'))} | {_f(b.get('accuracy'))} | "
          f"{_f(b.get('macro_auc'))} |" for name, b in (("the model's own", before),
                                                        (f"temperature-scaled (T = {cal.get('temperature', 0):.3f})",
                                                         after))),
        "",
        f"The temperature changes the ECE by {after['ece'] - before['ece']:+.3f}; log loss, Brier score and macro AUC "
        f"move by at most {max(abs(after[k] - before[k]) for k in ('nll', 'brier', 'macro_auc')):.4f}. "
        + ("So the built-in model applies it: its reports and the viewer show calibrated probabilities and this ECE "
           "after scaling beside them." if after["ece"] < before["ece"] else
           "It does not lower the ECE, so a calibrated model would not be an improvement."),
        "",
        f"![reliability before]({figs}/reliability_uncalibrated.png) ![reliability after]"
        f"({figs}/reliability_calibrated.png)",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(page: Path, text: str) -> None:
    old = page.read_text(encoding="utf-8")
    if START in old and END in old:
        new = old.split(START, 1)[0] + text.rstrip("\n") + old.split(END, 1)[1]
    else:
        at = old.find("## Deviations from the paper")
        new = old[:at] + text + "\n" + old[at:] if at >= 0 else old.rstrip("\n") + "\n\n" + text
    page.write_text(new, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "src" / "autorad" / "pretrained" / "lidc")
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    text = section(args.model)
    if args.write:
        write(args.write, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
