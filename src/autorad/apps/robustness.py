"""``autorad robustness``: how much a run's accuracy depends on the mask (the paper's open question 2).

Every nodule of a dataset is predicted again with its mask replaced on the stored slice by:

=================  ===========================================================================================
``consensus``      the dataset's own mask (the reference; equals ``autorad evaluate``)
``grow1/grow2``    the mask dilated by a disk of radius 1 / 2 pixels
``shrink1/2``      the mask eroded by a disk of radius 1 / 2 pixels (a mask eroded away keeps its centre pixel;
                   :func:`autorad.data.mask_perturb.perturb_mask`)
``eqdisk``         a disk of the mask's equivalent diameter at its centroid
``longaxis``       a disk of the mask's long axis (largest Feret diameter, what a radiologist measures)
``click``          the click segmentation (:mod:`autorad.segment`, 2D entry) seeded at the mask's centroid
=================  ===========================================================================================

Each variant goes through the run's :class:`~autorad.apps.predictor.Predictor` (the same crop, radiomics and encoder
input as training); the table gives accuracy, macro AUC, unsure F1, ECE, the change in accuracy against the
consensus, and the mean Dice of the variant with the consensus mask. Works on the stored 2D slice, so it covers
2D-radiomics runs with 2D encoders (the shipped configs); 3D ones are refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.apps.predictor import Predictor
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_text, write_json, write_parquet
from autorad.core.outputs import prepare_output_dir
from autorad.data.crop import equivalent_diameter_mm
from autorad.data.dataset import Dataset
from autorad.data.geometry import nodule_arrays
from autorad.data.mask_perturb import perturb_mask
from autorad.pretrained import resolve_run

VARIANTS = ("consensus", "grow1", "grow2", "shrink1", "shrink2", "eqdisk", "longaxis", "click")
VARIANT_WORDS = {"consensus": "dataset mask (reference)", "grow1": "grown by 1 px", "grow2": "grown by 2 px",
                 "shrink1": "shrunk by 1 px", "shrink2": "shrunk by 2 px", "eqdisk": "equivalent-diameter disk",
                 "longaxis": "long-axis disk", "click": "click segmentation from the centroid"}

log = logging.getLogger(__name__)


def disk(shape: tuple[int, int], center_rc: tuple[float, float], diameter_mm: float, spacing_mm: float) -> np.ndarray:
    """A disk of ``diameter_mm`` around ``center_rc`` (at least the centre pixel)."""
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    out = ((rows - center_rc[0]) ** 2 + (cols - center_rc[1]) ** 2) * spacing_mm ** 2 <= (diameter_mm / 2) ** 2
    out[int(round(center_rc[0])), int(round(center_rc[1]))] = True
    return out


def long_axis_mm(mask: np.ndarray, spacing_mm: float) -> float:
    """The largest Feret diameter of the mask, in mm (scikit-image's regionprops)."""
    from skimage.measure import label, regionprops

    props = regionprops(label(mask.astype(np.uint8) > 0, connectivity=2))
    return float(max(p.feret_diameter_max for p in props)) * spacing_mm if props else 0.0


def click_mask(slice_hu: np.ndarray, mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The click segmentation of the slice, seeded where a user would click for this mask
    (:func:`autorad.segment.seed_from_mask`: its centroid, or the mask pixel nearest to it)."""
    from autorad.segment import seed_from_mask, segment_click_2d

    res = segment_click_2d(slice_hu, (spacing_mm, spacing_mm), seed_from_mask(mask))
    return np.asarray(res.mask, dtype=bool)


def variant_mask(name: str, slice_hu: np.ndarray, mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The mask of variant ``name`` (see the module docstring)."""
    if name == "consensus":
        return mask
    if name.startswith(("grow", "shrink")):
        return perturb_mask(mask, name)
    rows, cols = np.nonzero(mask)
    centre = (float(rows.mean()), float(cols.mean()))
    if name == "eqdisk":
        return disk(mask.shape, centre, equivalent_diameter_mm(mask, spacing_mm), spacing_mm)
    if name == "longaxis":
        return disk(mask.shape, centre, long_axis_mm(mask, spacing_mm), spacing_mm)
    if name == "click":
        return click_mask(slice_hu, mask, spacing_mm)
    raise InputError(f"unknown mask variant {name!r}; choose from {', '.join(VARIANTS)}")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / s if s else 1.0


def robustness(run: str | Path, data: str | Path, out: str | Path, variants: tuple[str, ...] = VARIANTS,
               limit: int | None = None, jobs: int = 1, oof: bool = False, overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Evaluate ``run`` on dataset ``data`` with every mask variant; write ``out/robustness.csv``, ``.md``,
    ``robustness.png``, ``predictions_<variant>.parquet`` and ``robustness.json``; return the table.

    ``oof``: ``data`` is the run's own training dataset; each nodule is predicted by the fold model that did not
    see it (the ``consensus`` variant then equals the run's cross-validated predictions), not by the final model.

    Args:
        run: a run folder or a built-in model's name.
        data: the dataset folder (its stored slices and masks).
        out: the output folder (new or empty, or an earlier one with ``overwrite``).
        variants: the mask variants to evaluate.
        limit: only the first N nodules.
        jobs: radiomics processes.
        oof: predict with the fold models (``data`` is the run's own dataset).
        overwrite: let ``out`` replace an earlier autorad robustness folder.
        log: where progress lines go (None: nowhere).

    Returns:
        The table: one row per variant with its metrics.
    """
    from autorad.evaluate.metrics import compute_metrics
    from autorad.train.fitting import prediction_frame
    from autorad.train.table import FeatureTable

    run = resolve_run(run)  # a built-in model's name or a run folder
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise InputError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    prepare_output_dir(out, kind="robustness", inputs=(run, data), overwrite=overwrite, create=False)
    ds = Dataset(data)
    predictor = Predictor.from_run(run)
    if predictor.cfg.radiomics.mode == "3d" and predictor.needs.needs_radiomics:
        raise InputError("robustness perturbs the stored 2D slice; this run uses 3D radiomics")
    if predictor.encoder is not None and predictor.encoder.entry.kind == "vision3d":
        raise InputError("robustness perturbs the stored 2D slice; this run uses a 3D image encoder")
    skipped: list[str] = []
    from autorad.train.record import dataset_overlap

    overlap = dataset_overlap(predictor.meta, ds)  # of the final model's training set (None: not recorded)
    m = ds.manifest if limit is None else ds.manifest.iloc[:limit]
    models = None
    if oof:
        models = predictor.fold_models()
        cv = predictor.run.read_predictions().set_index("nodule_id")["fold"]
        ids = m["nodule_id"].astype(str)
        if not ids.isin(cv.index).all():
            raise InputError(f"--oof: {ds.path.name} is not the dataset {Path(run).name} was cross-validated on "
                             "(some nodules have no out-of-fold prediction)")
        m = m.assign(fold=cv.loc[ids].to_numpy())
    base = FeatureTable(nodule_ids=m["nodule_id"].astype(str).to_numpy(),
                        patient_ids=m["patient_id"].astype(str).to_numpy(), folds=m["fold"].to_numpy(np.int64),
                        y=np.array([CLASS_NAMES.index(c) for c in m["label"]], dtype=np.int64))
    stored = [(row, ds.arrays(str(row["nodule_id"]))) for _, row in m.iterrows()]
    out = Path(prepare_output_dir(out, kind="robustness", inputs=(run, data), overwrite=overwrite))
    rows, tables = [], {}
    for v in variants:
        t0 = time.perf_counter()
        arrays, spacings, dices = [], [], []
        for row, a in stored:
            ps = float(row["pixel_spacing_mm"])
            mask = np.asarray(a["slice_mask"], dtype=bool)
            vm = variant_mask(v, a["slice_hu"], mask, ps)
            dices.append(dice(vm, mask))
            arrays.append(nodule_arrays(a["slice_hu"], vm, ps, predictor.crop.factor, predictor.crop.min_px))
            spacings.append(ps)
        table = predictor.featurize(arrays, spacings, jobs=jobs)
        if models is None:
            proba = np.asarray(predictor.model.predict_proba(table), dtype=np.float64)
        else:
            proba = np.zeros((len(arrays), len(CLASS_NAMES)))
            for k, model in models.items():
                in_fold = base.folds == k
                if in_fold.any():
                    proba[in_fold] = model.predict_proba(table.subset(in_fold))
        pred = prediction_frame(base, proba)
        write_parquet(pred, out / f"predictions_{v}.parquet")
        met = compute_metrics(pred)["pooled"]
        tables[v] = met
        rows.append({"variant": v, "mask": VARIANT_WORDS[v], "n": len(pred), "accuracy": met["accuracy"],
                     "macro_auc": met["macro_auc"], "unsure_f1": met["per_class"]["unsure"]["f1"], "ece": met["ece"],
                     "mean_dice_vs_consensus": round(float(np.mean(dices)), 4)})
        if log:
            log(f"robustness {v}: accuracy {met['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")
    table = pd.DataFrame(rows)
    if "consensus" in variants:
        ref = float(table.loc[table["variant"] == "consensus", "accuracy"].iloc[0])
        table["delta_accuracy"] = (table["accuracy"] - ref).round(4)
    atomic_write_text(out / "robustness.csv", table.to_csv(index=False))
    atomic_write_text(out / "robustness.md", markdown(table, predictor, ds, skipped, oof, overlap))
    write_json(out / "robustness.json", {"run": Path(run).name, "dataset": ds.path.name, "n": len(m),
                                        "models": "out-of-fold" if oof else "final",
                                        "training_overlap": overlap,
                                        "variants": list(variants), "skipped": skipped,
                                        "rows": table.to_dict("records")})
    figure(table, out / "robustness.png")
    return table


def overlap_line(overlap: dict | None, oof: bool) -> str:
    """What the final model's training overlap with the dataset means for this table."""
    from autorad.evaluate.report import overlap_note

    if oof:
        return ("Out-of-fold: each nodule was predicted by the fold model that did not train on its patient "
                "(the final model's training overlap does not apply).")
    note = overlap_note(overlap)
    return "External: no patient or series of this dataset was in training." if note is None else \
        note[0].upper() + note[1:] + "."


def markdown(table: pd.DataFrame, predictor: Predictor, ds: Dataset, skipped: list[str], oof: bool,
             overlap: dict | None = None) -> str:
    """The table as markdown, with what was run and its training overlap."""
    cols = list(table.columns)
    models = "out-of-fold models" if oof else "the final model"
    lines = [f"Mask robustness of run `{predictor.run_dir.name}` ({predictor.kind}) on dataset `{ds.path.name}` "
             f"(n = {int(table['n'].iloc[0])}, {models}).", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    lines += [f"\nNot run: {s}" for s in skipped]
    lines += ["", overlap_line(overlap, oof)]
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, path: Path) -> None:
    """Accuracy and macro AUC per mask variant (dashed: the consensus mask's accuracy)."""
    from matplotlib.figure import Figure

    from autorad.evaluate.plots import GREY, save_figure

    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["accuracy"], 0.4, label="accuracy", color="#0072B2")
    ax.bar(x + 0.2, table["macro_auc"].astype(float), 0.4, label="macro AUC", color="#E69F00", hatch="//")
    if "consensus" in set(table["variant"]):
        ax.axhline(float(table.loc[table["variant"] == "consensus", "accuracy"].iloc[0]), color=GREY, ls="--", lw=1)
    ax.set_xticks(x, table["variant"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("pooled over the dataset")
    ax.legend(loc="lower right")
    ax.set_title("predictions with the mask replaced")
    save_figure(fig, path)
