"""The prediction report for a clinician: one self-contained HTML page (Jinja2 template
``templates/predict_report.html.j2``) with the full axial slice and a zoom, both with the mask outline and a scale
bar, the slice position in mm, how the mask was made, the class with its confidence beside the model's
cross-validated calibration error and accuracy (words from :mod:`autorad.apps.reading`), the probabilities, AUC, the
warnings (simulated-data training as a banner) and what the model is in words.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from autorad import __version__
from autorad.apps.predictor import Prediction, Predictor
from autorad.apps.reading import NOT_MEASURED, ece_key, summary
from autorad.core.io import atomic_write_text

TEMPLATE = "predict_report.html.j2"
WINDOW_HU = (-1000, 400)  # lung window
OUTLINE = "#e69f00"
TRAINED_ON_WORDS = {"lidc-maxslice": "LIDC-IDRI nodules (largest-outline slice, 50% reader consensus masks)",
                    "lidc-dicom": "LIDC-IDRI nodules (DICOM, 50% reader consensus masks)",
                    "phantom": "SIMULATED phantom nodules (not real CT)"}


def _scale_bar(ax: Any, length_mm: float, mm_per_px: float, width_px: int, height_px: int) -> None:
    from matplotlib.patches import Rectangle

    n = length_mm / mm_per_px
    x0, y0 = 0.05 * width_px, 0.93 * height_px
    ax.add_patch(Rectangle((x0, y0), n, max(1.0, 0.012 * height_px), color="white"))
    ax.text(x0 + n / 2, y0 - 0.02 * height_px, f"{length_mm:g} mm", color="white", ha="center", va="bottom",
            fontsize=9)


def _bar_length(extent_mm: float) -> float:
    for v in (100, 50, 20, 10, 5, 2, 1):
        if v <= extent_mm / 4:
            return float(v)
    return 0.5


def figure(pred: Prediction) -> bytes:
    """PNG: the full axial slice (mask outline, crop box) and the zoom on the crop, with scale bars."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from autorad.evaluate.plots import figure_png

    nod, arrays = pred.nodule, pred.arrays
    ps = float(nod.pixel_spacing_mm)
    fig = Figure(figsize=(8.4, 4.4))
    ax1, ax2 = fig.subplots(1, 2)
    sl, m = np.asarray(nod.slice_hu), np.asarray(nod.slice_mask)
    h, w = sl.shape
    ax1.imshow(sl, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="nearest")
    ax1.contour(m.astype(float), levels=[0.5], colors=[OUTLINE], linewidths=1.0)
    r0, c0, size = (int(v) for v in arrays["crop_box"])
    ax1.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, edgecolor="#56b4e9", linewidth=1.0))
    _scale_bar(ax1, _bar_length(w * ps), ps, w, h)
    ax1.set_title(f"axial slice {pred.result['slice_index']}, z = {pred.result['slice_z_mm']:.1f} mm", fontsize=10)
    crop, cm = arrays["crop_hu"], arrays["crop_mask"]
    ax2.imshow(crop, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="nearest")
    if cm.any():
        ax2.contour(cm.astype(float), levels=[0.5], colors=[OUTLINE], linewidths=1.4)
    _scale_bar(ax2, _bar_length(size * ps), ps, size, size)
    ax2.set_title(f"zoom: the model's crop ({size * ps:.0f} mm wide)", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_axis_off()
    fig.text(0.5, 0.01, f"orange: nodule mask ({pred.result['mask']['description']}); blue: zoomed region; "
             f"window {WINDOW_HU[0]}..{WINDOW_HU[1]} HU", ha="center", fontsize=8)
    return figure_png(fig)


def _metric(cv: dict[str, Any], key: str) -> str:
    v = cv.get(key)
    if v is None:
        return NOT_MEASURED
    text = f"{v:.3f}"
    mean, std = cv.get(f"{key}_fold_mean"), cv.get(f"{key}_fold_std")
    if mean is not None and std is not None:
        text += f" (folds {mean:.3f} &plusmn; {std:.3f})"
    return text


def render(pred: Prediction, predictor: Predictor) -> str:
    """The report's HTML."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.PackageLoader("autorad", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    res = pred.result
    model = dict(res["model"])
    model["trained_on_words"] = TRAINED_ON_WORDS.get(model["trained_on"], model["trained_on"])
    cv = res["model"].get("cross_validation")
    cv_view = None
    if cv:
        cv_view = {"accuracy": Markup(_metric(cv, "accuracy")),
                   "macro_auc": Markup(_metric(cv, "macro_auc")),
                   "ece": _metric(cv, ece_key(res)),
                   "ece_note": ", after temperature scaling" if ece_key(res) == "ece_calibrated" else "",
                   "unsure_f1": _metric(cv, "unsure_f1"),
                   "n": cv.get("n"), "n_folds": cv.get("n_folds"), "sealed": bool(cv.get("sealed"))}
    banners = [w for w in res["warnings"] if w.startswith("MODEL TRAINED ON SIMULATED DATA")]
    probs = list(res["probabilities"].items())
    return env.get_template(TEMPLATE).render(
        result=res, banners=banners, probabilities=probs, reading=summary(res),
        cv=cv_view, model=model, mask=res["mask"], n_slices=pred.volume.hu.shape[0],
        slice_spacing=float(pred.volume.spacing_mm[0]), version=__version__,
        figure=base64.b64encode(figure(pred)).decode())


def write_prediction_report(path: str | Path, pred: Prediction, predictor: Predictor) -> None:
    """Write the report atomically."""
    atomic_write_text(Path(path), render(pred, predictor))
