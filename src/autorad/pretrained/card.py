"""The model card of a packaged model, written from the run's own records (metrics.json, run.json).

Every number in the card is read from the files it is written beside, so a card never disagrees with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autorad import CLASS_NAMES
from autorad.core.io import atomic_write_text
from autorad.pretrained import MODEL_CARD


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _seed_cell(seeds: dict[str, Any], key: str) -> str:
    mean, std = (seeds.get("mean") or {}).get(key), (seeds.get("std") or {}).get(key)
    return "n/a" if mean is None else f"{_f(mean)} ± {_f(std)}"


def calibration_lines(metrics: dict[str, Any]) -> list[str]:
    """The card's calibration section (empty when the run was not calibrated)."""
    cal = metrics.get("calibration")
    if not cal:
        return ["Not calibrated: the probabilities are the model's own (ECE above)."]
    cv = cal.get("cv") or {}
    before, after = cv.get("before") or {}, cv.get("after") or {}
    return [
        f"Temperature scaling (T = {_f(cal.get('temperature'))}), fitted on the out-of-fold predictions of the "
        "cross-validation; the probabilities the model reports are the calibrated ones.",
        "",
        "| | ECE | log loss | Brier |",
        "|---|---:|---:|---:|",
        f"| before | {_f(before.get('ece'))} | {_f(before.get('nll'))} | {_f(before.get('brier'))} |",
        f"| after (each fold's temperature fitted on the other folds) | {_f(after.get('ece'))} | "
        f"{_f(after.get('nll'))} | {_f(after.get('brier'))} |",
    ]


def model_card(folder: Path) -> str:
    """The markdown card of the packaged model in ``folder``."""
    metrics = json.loads((folder / "metrics.json").read_text())
    info = json.loads((folder / "run.json").read_text())
    data = info.get("data") or {}
    pooled = metrics["pooled"]
    seeds = metrics.get("seeds") or {}
    counts = data.get("class_counts") or {}
    figures = sorted(p.name for p in (folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []
    per_class = pooled.get("per_class") or {}
    lines = [
        "# Model card: `lidc` (autorad built-in model)",
        "",
        "**Research software, not a medical device.** It has not been cleared or approved for clinical use; its "
        "output must not guide the care of a patient.",
        "",
        "## What it predicts",
        "For one lung nodule on a CT scan (a click inside it, or its mask), the probabilities that LIDC-IDRI "
        "radiologists would rate it **benign**, **unsure** or **malignant**: the median of 3-4 readers' malignancy "
        "ratings (1-5), below 3 benign, exactly 3 unsure (indeterminate), above 3 malignant. The label is the "
        "readers' opinion on the CT, not pathology. No radiologist attribute is needed at inference.",
        "",
        "## The model",
        f"Config `autorad_quality` (kind `{info.get('model_kind')}`): a frozen "
        "EfficientNet-Lite0 image encoder and a frozen all-MiniLM-L6-v2 text encoder (both install from PyPI), "
        "learned prompt context shifted by a MetaNet of the nodule's PyRadiomics features and its image embedding, "
        "8 dihedral views averaged, soft reader targets, an ordinal penalty, radiomics stable under a one-pixel "
        "mask change, mask augmentation, and an ensemble of 3 seeds (docs/training.md, docs/results.md).",
        "",
        "## Training data",
        f"LIDC-IDRI (CC BY 3.0), the max-slice set in autorad's shared data: {data.get('n_nodules')} nodules with at "
        f"least {data.get('min_readers')} readers and a consensus mask ({data.get('label_rule')} rule; "
        + ", ".join(f"{c} {counts.get(c)}" for c in CLASS_NAMES) + "), one 71 x 71 pixel window of the axial slice "
        "where a reader's outline is largest, 50% consensus mask. Every nodule of the set trained the final model; "
        "the patients and series it saw are recorded (as hashes) in the model, so autorad warns when you evaluate "
        "or predict on them.",
        "",
        "## Cross-validated performance",
        f"Patient-level {data.get('n_folds')}-fold cross-validation on the same {metrics['n']} nodules, pooled "
        "out-of-fold predictions of the seed ensemble (and mean ± std over the 3 seeds):",
        "",
        "| metric | seed ensemble | over seeds |",
        "|---|---:|---:|",
        f"| accuracy | {_f(pooled.get('accuracy'))} | {_seed_cell(seeds, 'accuracy')} |",
        f"| unsure F1 | {_f((per_class.get('unsure') or {}).get('f1'))} | "
        f"{_seed_cell(seeds, 'per_class.unsure.f1')} |",
        f"| macro AUC | {_f(pooled.get('macro_auc'))} | {_seed_cell(seeds, 'macro_auc')} |",
        f"| ECE (uncalibrated) | {_f(pooled.get('ece'))} | |",
        "",
        "For reference, one radiologist agrees with the median of the others on 48.5% of LIDC nodules.",
        "",
        "## Calibration",
        *calibration_lines(metrics),
        "",
        *(["## Figures", *[f"![{n}](figures/{n})" for n in figures], ""] if figures else []),
        "## Intended use",
        "Research on lung nodule characterisation: a baseline to compare with, a second opinion in studies, "
        "teaching. Inputs: a chest CT (DICOM series or NIfTI/NRRD, in HU) and a nodule position or mask.",
        "",
        "## Limits",
        "- Trained on one axial slice per nodule (2D), from the LIDC-IDRI scans (GE, Siemens, Philips, "
        "Toshiba); other scanners, protocols, contrast or slice thickness may change its behaviour.",
        "- The label is the readers' median rating, which radiologists themselves often disagree with; 'unsure' "
        "is a real class, not a fallback.",
        "- Masks from autorad's click segmentation differ from the readers' consensus outlines it trained on.",
        "- Nodules of 3 mm or more only (LIDC's rated nodules); no detection: you point at the nodule.",
        "- Measured on LIDC patients only; no external cohort here.",
        "",
        "## Licence and attribution",
        "The model was trained on LIDC-IDRI (CC BY 3.0). Cite: Armato SG III et al., Medical Physics 38:915-931 "
        "(2011); Armato SG III et al. (2015), Data From LIDC-IDRI, The Cancer Imaging Archive, "
        "doi:10.7937/K9/TCIA.2015.LO9QL9SX; Clark K et al., J Digit Imaging 26:1045-1057 (2013); and for the "
        "method Khademi et al., AutoRad-Lung, arXiv 2503.20662.",
        "",
        "## How it was built",
        "`python docs/scripts/build_lidc_model.py` (from the shared data; autorad "
        f"{info.get('autorad_version')}).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path) -> Path:
    """Write ``folder/MODEL_CARD.md`` from the folder's own records."""
    path = folder / MODEL_CARD
    atomic_write_text(path, model_card(folder))
    return path
