"""``autorad predict``: one nodule of a new CT -> class probabilities (and an HTML report).

The CT comes as a DICOM series folder or a NIfTI/NRRD volume; the nodule as a mask with the image's geometry or as
a centre (voxel indices X=column, Y=row, Z=slice in position order) plus a diameter, from which a round mask is
drawn on slice Z. autorad segments nothing itself. The nodule's middle slice is processed exactly as in training:
crop at the run's crop settings, PyRadiomics with the run's parameters, the run's frozen encoder, the final model.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autorad import CLASS_NAMES
from autorad.config import config_from_dict
from autorad.data.crop import crop_nodule, equivalent_diameter_mm
from autorad.devices import resolve_device
from autorad.errors import InputError
from autorad.io import atomic_write_text
from autorad.outputs import prepare_output_file, record_output_file
from autorad.train.features import FeatureTable
from autorad.train.kinds import get_kind


def parse_center(text: str) -> tuple[int, int, int]:
    """``"X,Y,Z"`` -> integer voxel indices (column, row, slice)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 3:
        raise InputError(f"--center must be X,Y,Z voxel indices, got {text!r}")
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(f"--center must hold three integers, got {text!r}") from None


def round_mask(shape: tuple[int, int, int], center: tuple[int, int, int], diameter_mm: float,
               spacing_rc: tuple[float, float]) -> np.ndarray:
    """A (D, H, W) mask holding a disk of ``diameter_mm`` on slice Z around (X, Y)."""
    x, y, z = center
    d, h, w = shape
    if not (0 <= x < w and 0 <= y < h and 0 <= z < d):
        raise InputError(f"--center {x},{y},{z} lies outside the volume (X < {w}, Y < {h}, Z < {d})")
    if not diameter_mm or diameter_mm <= 0:
        raise InputError("--diameter-mm must be a positive number")
    rows, cols = np.ogrid[:h, :w]
    r = diameter_mm / 2.0
    disk = ((rows - y) * spacing_rc[0]) ** 2 + ((cols - x) * spacing_rc[1]) ** 2 <= r ** 2
    mask = np.zeros(shape, dtype=bool)
    mask[z] = disk
    return mask


def middle_slice(mask: np.ndarray) -> int:
    """Index of the middle of the mask's slice extent (the nearest non-empty slice to it)."""
    filled = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if filled.size == 0:
        raise InputError("the nodule mask is empty")
    mid = (filled[0] + filled[-1]) / 2.0
    return int(filled[np.argmin(np.abs(filled - mid))])


def subvolume_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The mask's bounding box padded as LIDC ingestion pads the consensus sub-volume."""
    from autorad.data.lidc import PAD_INPLANE_PX, PAD_SLICES

    pads = (PAD_SLICES, PAD_INPLANE_PX, PAD_INPLANE_PX)
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - p, 0), min(int(i.max()) + p + 1, n))  # type: ignore[return-value]
                 for i, p, n in zip(idx, pads, mask.shape, strict=True))


@dataclass
class LoadedRun:
    """A run's final model with what is needed to featurise a new nodule."""

    run: Path
    model: Any
    meta: dict[str, Any]
    cfg: Any
    encoder: Any | None


_RUNS: dict[Path, LoadedRun] = {}


def load_run(run: str | Path) -> LoadedRun:
    """Load (once per process) a run's final model and its vision encoder."""
    from autorad.train.run import Run, load_model

    key = Path(run).resolve()
    if key not in _RUNS:
        final = Run(key).model_dir()
        if not final.is_dir():
            raise InputError(f"{run} is not a trained run with a final model (no final/model folder)")
        model, meta = load_model(final)
        cfg = config_from_dict(meta["config"], source=str(final / "model.json"))
        device = resolve_device(cfg.train.device)
        model.to(device)
        encoder = None
        if get_kind(cfg.model.kind).needs_image:
            from autorad.encoders import load_encoder

            encoder = load_encoder(cfg.model.vision_encoder, weights=cfg.model.vision_weights, device=device)
        _RUNS[key] = LoadedRun(key, model, meta, cfg, encoder)
    return _RUNS[key]


def _load_inputs(dicom, image, mask, center, diameter_mm):
    from autorad.data.dicom import load_image_file, load_mask_file, load_series

    if dicom is not None:
        vol = load_series(dicom)
    elif image is not None:
        vol = load_image_file(image)
    else:
        raise InputError("give the CT as --dicom SERIES_DIR or --image FILE")
    if mask is not None:
        m = load_mask_file(mask, like=vol)
    elif center is not None:
        m = round_mask(vol.hu.shape, center, diameter_mm or 0.0, (vol.spacing_mm[1], vol.spacing_mm[2]))
    else:
        raise InputError("give the nodule as --mask FILE or --center X,Y,Z --diameter-mm D")
    m = np.asarray(m) > 0
    if m.shape != vol.hu.shape:
        raise InputError(f"mask shape {m.shape} differs from the image's {vol.hu.shape}")
    if not m.any():
        raise InputError("the nodule mask is empty")
    return vol, m


def predict_arrays(loaded: LoadedRun, slice_hu: np.ndarray, slice_mask: np.ndarray, spacing_mm: float,
                   volume_hu: np.ndarray | None = None, volume_mask: np.ndarray | None = None,
                   volume_spacing_mm: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Probabilities for one nodule given its middle slice (and optionally its sub-volume)."""
    crop_cfg = loaded.meta.get("dataset", {}).get("crop") or {"factor": 2.0, "min_px": 16}
    crop_hu, crop_mask, _ = crop_nodule(slice_hu, slice_mask, spacing_mm, crop_cfg["factor"], crop_cfg["min_px"])
    kind = loaded.cfg.model.kind
    needs = get_kind(kind)
    table = FeatureTable(nodule_ids=np.array(["new"]), patient_ids=np.array(["new"]), folds=np.array([0]),
                         y=np.array([0]))
    status = "not used"
    if needs.needs_radiomics:
        from autorad.radiomics.extract import extract_one, resolve_params

        if loaded.cfg.radiomics.mode == "3d":
            if volume_hu is None or volume_mask is None or volume_spacing_mm is None:
                raise InputError("this model uses 3D radiomics: give a volume, not a single slice")
            status, feats = extract_one(volume_hu, volume_mask, volume_spacing_mm, resolve_params(loaded.cfg.radiomics))
        else:
            status, feats = extract_one(slice_hu, slice_mask, (spacing_mm, spacing_mm),
                                        resolve_params(loaded.cfg.radiomics))
        names = loaded.meta["radiomics_names"]
        table.radiomics = np.array([[feats.get(n, np.nan) for n in names]], dtype=np.float64)
        table.radiomics_names = list(names)
        table.radiomics_status = np.array([status])
    if needs.needs_image:
        from autorad.encoders.embed import encoder_input

        arrays = {"crop_hu": crop_hu, "crop_mask": crop_mask, "slice_hu": slice_hu, "slice_mask": slice_mask}
        if volume_hu is not None:
            arrays.update(volume_hu=volume_hu, volume_mask=volume_mask)
        table.image = np.asarray(loaded.encoder.embed([encoder_input(arrays, loaded.encoder)]), dtype=np.float32)
    proba = loaded.model.predict_proba(table)[0]
    from autorad.train.checkpoint import version_note

    warnings = [note] if (note := version_note(loaded.meta)) else []
    if needs.needs_radiomics and status != "ok":
        warnings.append("radiomics extraction did not succeed; missing features were filled with the training "
                        "medians, so the radiomics part of this prediction says little about the nodule")
    return {
        "warnings": warnings,
        "probabilities": {c: round(float(p), 6) for c, p in zip(CLASS_NAMES, proba, strict=True)},
        "predicted_class": CLASS_NAMES[int(np.argmax(proba))],
        "radiomics_status": status,
        "model": {"run": loaded.run.name, "kind": kind},
        "encoders": {"vision": loaded.cfg.model.vision_encoder if needs.needs_image else None,
                     "text": loaded.cfg.model.text_encoder if needs.needs_text else None},
        "equivalent_diameter_mm": round(equivalent_diameter_mm(slice_mask, spacing_mm), 3),
        "_crop": (crop_hu, crop_mask),
    }


def predict(run: str | Path, dicom: str | Path | None = None, image: str | Path | None = None,
            mask: str | Path | None = None, center: tuple[int, int, int] | None = None,
            diameter_mm: float | None = None, report: str | Path | None = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Predict benign / unsure / malignant for one nodule of a new CT (see the module docstring).

    ``report`` must be a new file outside the run and the inputs (or, with ``overwrite``, a report autorad
    wrote); it is checked before anything is loaded.
    """
    if report is not None:
        prepare_output_file(report, inputs=(run, dicom, image, mask), overwrite=overwrite, option="--report")
    loaded = load_run(run)
    vol, m = _load_inputs(dicom, image, mask, center, diameter_mm)
    t0 = time.time()
    z = middle_slice(m)
    spacing = float(np.sqrt(vol.spacing_mm[1] * vol.spacing_mm[2]))
    box = subvolume_box(m)
    result = predict_arrays(loaded, vol.hu[z], m[z], spacing, volume_hu=vol.hu[box], volume_mask=m[box],
                            volume_spacing_mm=tuple(float(s) for s in vol.spacing_mm))
    crop_hu, crop_mask = result.pop("_crop")
    result["slice_index"] = z
    result["seconds"] = round(time.time() - t0, 3)
    if report is not None:
        write_prediction_report(Path(report), result, crop_hu, crop_mask)
        record_output_file(report)
        result["report"] = str(report)
    return result


def _crop_png(crop_hu: np.ndarray, crop_mask: np.ndarray) -> bytes:
    from matplotlib.figure import Figure

    from autorad.evaluate.plots import figure_png

    fig = Figure(figsize=(3.2, 3.2))
    ax = fig.add_subplot()
    ax.imshow(crop_hu, cmap="gray", vmin=-1000, vmax=400, interpolation="nearest")
    if crop_mask.any():
        ax.contour(crop_mask.astype(float), levels=[0.5], colors=["#e69f00"], linewidths=1.2)
    ax.set_axis_off()
    ax.set_title("crop, window -1000..400 HU", fontsize=8)
    return figure_png(fig)


def write_prediction_report(path: Path, result: dict[str, Any], crop_hu: np.ndarray, crop_mask: np.ndarray) -> None:
    """A self-contained HTML page: the crop with the mask outline and the probabilities."""
    img = base64.b64encode(_crop_png(crop_hu, crop_mask)).decode()
    bars = "".join(
        f"<tr><td>{html.escape(c)}</td><td><div style='background:#0072b2;height:14px;width:{p * 300:.0f}px'>"
        f"</div></td><td>{p:.3f}</td></tr>" for c, p in result["probabilities"].items())
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>autorad prediction</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto}} td{{padding:4px 8px}}</style></head><body>
<h1>autorad prediction</h1>
<p><b>Predicted class: {html.escape(result['predicted_class'])}</b> &mdash; research software, not a diagnosis.</p>
<img alt="nodule crop with mask outline" src="data:image/png;base64,{img}">
<table>{bars}</table>
<p>Model: {html.escape(str(result['model']))}<br>Encoders: {html.escape(str(result['encoders']))}<br>
Radiomics status: {html.escape(str(result['radiomics_status']))}<br>
Equivalent diameter: {result['equivalent_diameter_mm']} mm, slice index {result['slice_index']}</p>
</body></html>"""
    atomic_write_text(path, body)
