"""Reproduce docs/results.md: baselines, the paper's AutoRad and the quality levers on the real LIDC max-slice set.

    python docs/scripts/make_results.py --out runs/results [--dataset DIR] [--seeds 3] [--only NAME ...]
                                        [--report-only] [--docs docs/results.md]

Every row is trained under the same 5 patient-level folds of one dataset (ingested from
$AUTORAD_SHARED_DATA/lidc_maxslice/lidc_maxslice_dev.npz unless --dataset names an existing one), with the
schedule of the shipped config ``offline_cpu``. Prompt learners train ``--seeds`` seeds each (``train.n_seeds``);
deterministic baselines (no random state) train once. A row's lever settings are fixed in ROWS below, before any
result was seen; nothing is chosen by the test folds. Everything is cached under --out, so a rerun only trains
what is missing; ``--report-only`` trains nothing and writes the document from the runs that exist, listing the
others as not run. With ``--masks``, each row is also evaluated (same fold models) with the radiomics of every
mask grown / shrunk by one pixel (the dataset's cached tables of those masks, extracted when missing).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from autorad.config import DataConfig, RadiomicsConfig
from autorad.core.paths import shared_data_dir
from autorad.data.dataset import Dataset
from autorad.evaluate.metrics import compute_metrics, flatten_scalars
from autorad.train.resolve import load_config
from autorad.train.seeds import fuse

SCHEDULE = "offline_cpu"  # n_ctx 4, 4 epochs, lr 2e-3 (docs/training.md)
IMAGE = ["model.kind=autorad_image"]
SOFT, ORDINAL, AUX = ["train.soft_targets=0.5"], ["train.ordinal_weight=0.5"], ["train.aux_attributes=0.3"]
VIEWS = ["model.views=8"]
MULTISCALE = ["model.vision_encoder=efficientnet-lite0-multiscale"]
STABLE = ["radiomics.stability=one_pixel"]
MASKAUG = ["radiomics.mask_augment=true"]
ASTRA = ["model.vision_encoder=ct-i3resnet152-3d"]
TAIL = ["model.vision_encoder=efficientnet-lite0-stage6-map", "model.image_tuning=tail"]
SCHEDULE_SELECT = "train.select={grid: {train.epochs: [4, 8], train.batch_size: [16, 32]}}"
TAIL_SELECT = "train.select={grid: {model.image_tuning_lr: [0.1, 1]}}"
SHIPPED = "autorad_quality"  # the shipped combination (its config, as shipped)
FAST = "autorad_quality_fast"  # the same with one seed: the fast default of the real-data main job


@dataclass
class Row:
    name: str  # run folder under --out
    config: str
    overrides: list[str] = field(default_factory=list)
    seeded: bool = True  # False: no random state (one training is the result)
    what: str = ""
    max_seeds: int | None = None  # train at most this many seeds (the costly sweeps)
    table: str = "main"  # "main" or "sweep" (the paper's Table 2)


ROWS = [
    Row("radiomics_logreg", "radiomics_logreg", seeded=False, what="baseline: logistic regression on radiomics"),
    Row("radiomics_gbm", "radiomics_gbm", seeded=False, what="baseline: gradient boosting on radiomics"),
    Row("linear_probe", "linear_probe", seeded=False, what="baseline: logistic regression on image embeddings"),
    Row("coop", SCHEDULE, ["model.kind=coop"], what="baseline: CoOp (no conditioning)"),
    Row("cocoop", SCHEDULE, ["model.kind=cocoop"], what="baseline: CoCoOp (image-conditioned)"),
    Row("autorad", SCHEDULE, what="AutoRad as in the paper (radiomics MetaNet), CPU schedule"),
    Row("autorad_image", SCHEDULE, IMAGE, what="AutoRad + image: MetaNet of image embedding and radiomics"),
    Row("autorad_image+soft", SCHEDULE, IMAGE + SOFT, what="+ soft targets from the readers' votes (0.5)"),
    Row("autorad_image+ordinal", SCHEDULE, IMAGE + ORDINAL, what="+ ordinal penalty (0.5)"),
    Row("autorad_image+aux", SCHEDULE, IMAGE + AUX, what="+ 8 attributes as auxiliary targets (0.3)"),
    Row("autorad_image+soft+ordinal", SCHEDULE, IMAGE + SOFT + ORDINAL, what="+ soft targets + ordinal penalty"),
    Row("autorad_image+views", SCHEDULE, IMAGE + VIEWS,
        what="+ 8 dihedral views (a random one per epoch; probabilities averaged over all 8 at prediction)"),
    Row("autorad_image+multiscale", SCHEDULE, IMAGE + MULTISCALE,
        what="+ image features pooled from EfficientNet-Lite0 stages 4-7 and the head (1,984-d, not the head alone)"),
    Row("autorad_image+stable", SCHEDULE, IMAGE + STABLE,
        what="+ only radiomics that agree (Lin's CCC >= 0.9) with their one-pixel grown and shrunk versions, "
             "selected in each training fold"),
    Row("autorad_image+maskaug", SCHEDULE, IMAGE + MASKAUG,
        what="+ mask augmentation: each epoch a nodule's radiomics come from its mask or the mask grown / shrunk by "
             "one pixel (training only)"),
    Row("autorad_image+astra3d", SCHEDULE, IMAGE + ASTRA,
        what="+ image features of the CT-pretrained 3D I3ResNet-152 (Astra; the 2D crop replicated along depth) "
             "instead of EfficientNet-Lite0"),
    Row("autorad_image+tail", SCHEDULE, IMAGE + TAIL,
        what="+ the image encoder's last block and head convolution trained with the prompts (1.0M of "
             "EfficientNet-Lite0's 4.7M parameters, at 0.1x the learning rate; beyond the paper)"),
    Row("autorad_image+tail+nested", SCHEDULE, IMAGE + TAIL + [TAIL_SELECT],
        what="as `autorad_image+tail`, the tail's learning-rate factor {0.1, 1} chosen by nested validation in each "
             "training fold (one seed: 2 inner trainings + 1 refit per fold)", max_seeds=1),
    Row("autorad+nested", "offline_cpu_nested",
        what="the paper's AutoRad, n_ctx {4, 16} x lr {1e-3, 2e-3} chosen by nested validation in each training "
             "fold (one seed: 4 inner trainings + 1 refit per fold)", max_seeds=1),
    Row("autorad+nested-epochs-batch", SCHEDULE, [SCHEDULE_SELECT],
        what="the paper's AutoRad, epochs {4, 8} x batch {16, 32} chosen by nested validation in each training fold "
             "(one seed: 4 inner trainings + 1 refit per fold)", max_seeds=1),
    Row(SHIPPED, SHIPPED, what="the shipped combination: image + views + soft + ordinal + stable radiomics + mask "
                               "augmentation, seed ensemble"),
    Row(f"{SHIPPED}-maskaug", SHIPPED, ["radiomics.mask_augment=false"],
        what="the shipped combination without mask augmentation (the version shipped before it)"),
    Row(f"{SHIPPED}+tail", SHIPPED, TAIL, what="the shipped combination + the image encoder's last block and head "
                                               "convolution trained (as in `autorad_image+tail`)"),
    Row(FAST, FAST, max_seeds=1, what="the shipped combination with one seed (the real-data main job's fast default; "
                                      "the spread of one-seed models is the shipped row's (seeds) columns)"),
    # the paper's Table 2 on the full dev set: context length, and radiomic classes (paper's AutoRad, 1 seed)
    *[Row(f"n_ctx={n}", SCHEDULE, [f"model.n_ctx={n}"], what=f"`autorad`, {n} context vectors", max_seeds=1,
          table="sweep") for n in (1, 16, 50, 70)],  # 4: `autorad` above
    *[Row(f"classes={c}", SCHEDULE, [f"radiomics.classes=[{c}]"], what=f"`autorad`, {c} features only",
          max_seeds=1, table="sweep") for c in ("shape2D", "firstorder", "texture")],
]
# late fusion of a row's seed ensemble with the radiomics GBM (model.fusion: gbm, weight 0.5 fixed in advance)
FUSIONS = [("autorad_image+soft+ordinal", "radiomics_gbm", 0.5), ("autorad_image", "radiomics_gbm", 0.5),
           ("autorad", "radiomics_gbm", 0.5)]
MASKS = ("grow1", "shrink1")
KEYS = (("accuracy", "accuracy"), ("per_class.unsure.f1", "unsure F1"), ("macro_auc", "macro AUC"))


def row_metrics(preds: list[pd.DataFrame]) -> dict:
    """Pooled metrics of the seed ensemble, with mean ± std over the seeds when there are several."""
    from autorad.train.seeds import average_predictions, seed_summary

    m = compute_metrics(average_predictions(preds) if len(preds) > 1 else preds[0])
    m["seeds"] = seed_summary({i: compute_metrics(p) for i, p in enumerate(preds)}) if len(preds) > 1 else None
    return m


def has_predictions(run: Path) -> bool:
    return (run / "predictions.parquet").is_file() or any((run / "seeds").glob("*/predictions.parquet"))


def fmt_seeds(m: dict, key: str) -> str:
    s = m.get("seeds")
    if not s:
        return f"{flatten_scalars(m['pooled'])[key]:.3f}"
    mean, std = s["mean"][key], s["std"][key]
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def seed_predictions(run: Path) -> list[pd.DataFrame]:
    """Every finished seed's out-of-fold predictions (one table for an unseeded run)."""
    if (run / "seeds").is_dir():
        return [pd.read_parquet(f) for f in sorted((run / "seeds").glob("*/predictions.parquet"))]
    return [pd.read_parquet(run / "predictions.parquet")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--dataset", default=None, help="an existing dataset folder of the max-slice set")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per prompt-learner row")
    ap.add_argument("--only", nargs="*", default=None, help="train only these rows")
    ap.add_argument("--report-only", action="store_true", help="train nothing; report the runs that exist")
    ap.add_argument("--masks", nargs="*", choices=MASKS, default=None,
                    help="also evaluate on masks grown / shrunk by one pixel (no value: both)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (radiomics, seeds trained at once)")
    ap.add_argument("--docs", default="docs/results.md")
    args = ap.parse_args()
    out = Path(args.out)
    if args.dataset:
        ds = Dataset(args.dataset)
    else:
        from autorad.data.ingest import ingest
        from autorad.encoders.embed import embed_dataset
        from autorad.radiomics.extract import run_radiomics

        shared = shared_data_dir()
        if shared is None:
            print("no shared data: set AUTORAD_SHARED_DATA", file=sys.stderr)
            return 2
        ds_dir = out / "dataset"
        if not (ds_dir / "manifest.parquet").is_file():
            ingest("maxslice", ds_dir, shared / "lidc_maxslice" / "lidc_maxslice_dev.npz",
                   DataConfig(source="maxslice"))
        ds = Dataset(ds_dir)
        run_radiomics(ds.path, RadiomicsConfig(jobs=args.jobs))
        embed_dataset(ds.path, load_config(SCHEDULE).model.vision_encoder)

    from autorad.train.entry import train

    for row in ROWS:
        run = out / row.name
        if args.report_only or (args.only and row.name not in args.only):
            continue
        seeds = min(args.seeds, row.max_seeds or args.seeds) if row.seeded else 1
        cfg = load_config(row.config, row.overrides)
        # tasks at once: seeds, or the inner trainings of nested selection (results do not depend on it)
        jobs = args.jobs if cfg.train.select is not None else min(args.jobs, seeds)
        extra = ["train.final_model=false", f"train.n_seeds={seeds}", f"train.seed_ensemble={seeds > 1}",
                 f"train.jobs={jobs}"]
        cfg = load_config(row.config, row.overrides + extra)
        cfg.name = row.name
        train(ds.path, cfg, run)

    done = [r for r in ROWS if has_predictions(out / r.name)]
    missing = [r for r in ROWS if r not in done]
    lines = table_lines(out, [r for r in done if r.table == "main"])
    sweep = table_lines(out, [r for r in done if r.table == "sweep"])
    fusion = fusion_lines(out)
    variants = tuple(args.masks or MASKS) if args.masks is not None else ()
    masks = mask_lines(out, ds, [r for r in done if r.table == "main"], args.jobs, variants) if variants else []
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    known = json.loads((out / "masks.json").read_text()) if (out / "masks.json").is_file() else {}
    text = render(lines, sweep, fusion, masks, missing, args, rev, verdict_lines(out, known))
    text += selection_lines(out)
    old = Path(args.docs).read_text() if Path(args.docs).is_file() else ""
    text = carry_sections(old, text)
    Path(args.docs).write_text(text)
    print(text)
    return 0


SECTION = re.compile(r"<!-- (\w+):start -->.*?<!-- \1:end -->\n?", re.S)


def carry_sections(old: str, new: str) -> str:
    """Keep the sections other scripts write into the page (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``, e.g.
    make_ceiling.py's), placed before "## Deviations from the paper" (or at the end) of the regenerated page."""
    for m in SECTION.finditer(old):
        if f"<!-- {m.group(1)}:start -->" in new:
            continue
        at = new.find("## Deviations from the paper")
        block = m.group(0).rstrip("\n") + "\n\n"
        new = new[:at] + block + new[at:] if at >= 0 else new.rstrip("\n") + "\n\n" + block
    return new


def row_cells(m: dict, pred_seeds: int, run_time: float | None) -> list[str]:
    pooled = flatten_scalars(m["pooled"])
    cells = [str(pred_seeds)] + [fmt_seeds(m, k) for k, _ in KEYS]
    cells += [f"{pooled[k]:.3f}" for k, _ in KEYS] + [f"{pooled['ece']:.3f}"]
    cells.append("—" if run_time is None else f"{run_time:.0f}")
    return cells


def run_time_of(run: Path) -> float | None:
    """Sum of the wall times of the run's trainings (each seed's run.json)."""
    files = list((run / "seeds").glob("*/run.json")) if (run / "seeds").is_dir() else [run / "run.json"]
    times = [json.loads(f.read_text()).get("run_time_s") for f in files if f.is_file()]
    return float(sum(t for t in times if t is not None)) if times else None


HEAD = ("| row | seeds | accuracy (seeds) | unsure F1 (seeds) | macro AUC (seeds) | accuracy | unsure F1 | macro AUC "
        "| ECE | train s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def table_lines(out: Path, rows: list[Row]) -> list[str]:
    lines = [HEAD]
    for r in rows:
        preds = seed_predictions(out / r.name)
        m = row_metrics(preds)
        lines.append(f"| `{r.name}` | " + " | ".join(row_cells(m, len(preds), run_time_of(out / r.name))) + " |")
    return lines


def fusion_lines(out: Path) -> list[str]:
    lines = []
    for base, other, w in FUSIONS:
        if not (has_predictions(out / base) and has_predictions(out / other)):
            continue
        g = pd.read_parquet(out / other / "predictions.parquet")
        per_seed = [fuse(p, g, w) for p in seed_predictions(out / base)]
        m = row_metrics(per_seed)
        lines.append(f"| `{base}` ⊕ `{other}` (w {w}) | " + " | ".join(row_cells(m, len(per_seed), None)) + " |")
    return lines


def mask_lines(out: Path, ds: Dataset, rows: list[Row], jobs: int, names: tuple[str, ...]) -> list[str]:
    from autorad.evaluate.apply import out_of_fold
    from autorad.radiomics.extract import run_radiomics

    for v in names:  # the dataset's own cached table per mask change (what radiomics.stability reads too)
        run_radiomics(ds.path, RadiomicsConfig(jobs=jobs), mask_variant=v)
    lines = ["| row | consensus acc | " + " | ".join(f"{v} acc (Δ)" for v in names) + " | consensus AUC | "
             + " | ".join(f"{v} AUC" for v in names) + " |", "|---|" + "---:|" * (2 + 2 * len(names))]
    cache = out / "masks.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    for r in rows:
        n_seeds = len(seed_predictions(out / r.name))
        if known.get(r.name, {}).get("n_seeds") != n_seeds or any(v not in known[r.name] for v in names):
            res = {"consensus": row_metrics(seed_predictions(out / r.name))["pooled"], "n_seeds": n_seeds}
            for v in names:
                res[v] = compute_metrics(out_of_fold(out / r.name, ds.path, mask_variant=v))["pooled"]
            known[r.name] = res
            cache.write_text(json.dumps(known, indent=1))
        res = known[r.name]
        acc0 = res["consensus"]["accuracy"]
        cells = [f"{acc0:.3f}"] + [f"{res[v]['accuracy']:.3f} ({res[v]['accuracy'] - acc0:+.3f})" for v in names]
        cells += [f"{res['consensus']['macro_auc']:.3f}"] + [f"{res[v]['macro_auc']:.3f}" for v in names]
        lines.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
    return lines


def row_ensemble(run: Path) -> pd.DataFrame:
    """A row's out-of-fold predictions averaged over its seeds."""
    from autorad.train.seeds import average_predictions

    preds = seed_predictions(run)
    return average_predictions(preds) if len(preds) > 1 else preds[0]


TARGETS = (("accuracy", 0.72), ("per_class.unsure.f1", 0.68), ("macro_auc", 0.86))
REFERENCE = "radiomics_gbm"  # what a user would pick instead


def verdict_lines(out: Path, masks_known: dict) -> list[str]:
    """The issue's targets, checked on the numbers above (computed, not typed)."""
    if not (has_predictions(out / SHIPPED) and has_predictions(out / REFERENCE)):
        return [f"The shipped combination (`{SHIPPED}`) or `{REFERENCE}` has not run yet: nothing to check."]
    m, ref = row_metrics(seed_predictions(out / SHIPPED)), row_metrics(seed_predictions(out / REFERENCE))
    pooled, pooled_ref = flatten_scalars(m["pooled"]), flatten_scalars(ref["pooled"])
    n = len(seed_predictions(out / SHIPPED))
    lines = [f"Shipped combination `{SHIPPED}`, {n} seed(s), seed ensemble against `{REFERENCE}`:", "",
             f"| metric | target | seed ensemble | vs {REFERENCE} | seed std | beats it by more than the seed std |",
             "|---|---:|---:|---:|---:|---|"]
    for key, target in TARGETS:
        std = m["seeds"]["std"][key] if m.get("seeds") else None
        diff = pooled[key] - pooled_ref[key]
        beats = "n/a (one seed)" if std is None else ("yes" if diff > std else "no")
        lines.append(f"| {key.replace('per_class.', '').replace('.f1', ' F1')} | {target:.2f} "
                     f"({'reached' if pooled[key] >= target else 'not reached'}) | {pooled[key]:.3f} | {diff:+.3f} | "
                     f"{'—' if std is None else f'{std:.3f}'} | {beats} |")
    res = masks_known.get(SHIPPED)
    if res:
        drops = {v: res[v]["accuracy"] - res["consensus"]["accuracy"] for v in MASKS if v in res}
        lines += ["", "One-pixel mask change (target: lose at most 0.010 accuracy): " + ", ".join(
            f"{v} {d:+.3f} accuracy ({'met' if d >= -0.010 else 'not met'})" for v, d in drops.items()) + "."]
    return lines


def render(lines: list[str], sweep: list[str], fusion: list[str], masks: list[str], missing: list[Row], args,
           rev: str, verdict: list[str]) -> str:
    what = "\n".join(f"- `{r.name}`: {r.what} (`{r.config}` {' '.join(r.overrides)})" for r in ROWS
                     if r.table == "main")
    parts = [
        "# Results on real LIDC-IDRI data\n",
        f"<!-- written by docs/scripts/make_results.py at commit {rev} -->\n",
        "Every number below is printed by one command (cached runs are reused; a fresh `--out` retrains all):\n",
        "```bash\nAUTORAD_SHARED_DATA=../shared/data python docs/scripts/make_results.py --out runs/results "
        f"--seeds {args.seeds}{' --masks ' + ' '.join(args.masks or MASKS) if args.masks is not None else ''}\n```\n",
        ("This version was written with `--report-only` over runs trained earlier by the same training code "
         "(identical configs, fewer seeds where the seeds column says so); nothing was retrained for it.\n"
         if args.report_only else ""),
        "Data: `lidc_maxslice_dev.npz`, median of >= 3 readers' malignancy ratings (1,086 nodules: benign 362 / "
        "unsure 409 / malignant 315; 546 patients), the same 5 patient-level folds (stratified, seed 0) for every "
        "row. Schedule of every prompt learner: `offline_cpu` (n_ctx 4, 4 epochs, lr 2e-3, EfficientNet-Lite0 + "
        "MiniLM). Lever settings were fixed before any result was seen (nothing is selected on the test folds).\n",
        "## Main table\n",
        "*(seeds)*: mean ± sample std over the seeds of each seed's pooled out-of-fold value; the next columns "
        "are the pooled out-of-fold values of the **seed ensemble** (probabilities averaged over the seeds); "
        "rows with 1 seed have no random state (or only one seed was trained: see the seeds column). "
        "*train s*: summed wall time of the row's trainings (every seed, 5 folds, no final model) on a 2-core "
        "machine running two to four trainings at a time, so an upper bound for one training on idle cores.\n",
        "\n".join(lines) + "\n",
        "Rows:\n\n" + what + "\n",
    ]
    if fusion:
        parts += ["## Late fusion with the radiomics GBM\n",
                  "p = 0.5 p(prompt learner) + 0.5 p(GBM) per nodule, both from the same training folds "
                  "(what `model.fusion: gbm` computes; the weight 0.5 is fixed, not tuned). Per-seed values fuse "
                  "each seed with the (deterministic) GBM.\n", HEAD + "\n" + "\n".join(fusion) + "\n"]
    if masks:
        parts += ["## One-pixel mask change\n",
                  "The same fold models, each applied to its own test fold with every mask grown / shrunk by one "
                  "pixel (disk of radius 1) and the radiomics extracted again; crops and image embeddings "
                  "unchanged. Seed ensembles for seeded rows.\n", "\n".join(masks) + "\n"]
    if len(sweep) > 1:
        parts += ["## The paper's Table 2 on the full dev set\n",
                  "The paper's AutoRad (`offline_cpu` schedule) with the context length changed, or with the radiomics "
                  "of one class only; one seed each (a 5-fold run with 50 or 70 context vectors costs 5-7x one with "
                  "4 on a CPU), same folds as above. n_ctx 4 with every class is the `autorad` row of the main "
                  "table.\n", "\n".join(sweep) + "\n"]
    parts += ["## Targets of the quality issue\n", "\n".join(verdict) + "\n"]
    parts += [STATIC]
    if missing:
        parts += ["## Not run in this version of the document\n",
                  "\n".join(f"- `{r.name}` ({r.what})" for r in missing) + "\n"]
    return "\n".join(parts)


def selection_lines(out: Path) -> str:
    """What nested selection chose in every fold that finished it (folds/<k>/selection.json), also for a row
    whose run did not finish: the choice per fold is made before the fold's test nodules are predicted."""
    parts = []
    for r in ROWS:
        files = sorted((out / r.name).glob("**/folds/*/selection.json"))
        if not files:
            continue
        parts.append(f"### `{r.name}`\n")
        for f in files:
            sel = json.loads(f.read_text())
            scores = ", ".join(f"{' '.join(f'{k}={v}' for k, v in c['overrides'].items())}: {c['score']:.3f}"
                               for c in sel["candidates"])
            chosen = " ".join(f"{k}={v}" for k, v in sel["chosen"].items())
            where = f.relative_to(out / r.name).parts
            seed = f" of seed {where[1]}" if where[0] == "seeds" else ""
            parts.append(f"- fold {sel['fold']}{seed}: chose **{chosen}**; "
                         f"inner {sel['metric']} ({sel['better']} is better): {scores}")
        parts.append("")
    if not parts:
        return ""
    return ("\n## Nested selection (`train.select`): what each training fold chose\n\n"
            "Each candidate trains on 80% of the training fold's patients and is scored on the other 20%; the "
            "test fold plays no part.\n\n" + "\n".join(parts))


STATIC = (Path(__file__).parent / "results_static.md").read_text()  # the parts without measured numbers


if __name__ == "__main__":
    t0 = time.time()
    code = main()
    print(f"make_results: {time.time() - t0:.0f} s", file=sys.stderr)
    raise SystemExit(code)
