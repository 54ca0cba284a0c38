"""The trained run that the server holds: loaded once, shared by every request, inference serialised by a lock.

Predictions go through :mod:`autorad.predict` (the path ``autorad predict`` takes), never through a copy of it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autorad import __version__
from autorad.data.dicom import CTVolume
from autorad.errors import InputError

CV_METRICS = ("accuracy", "macro_auc", "ece", "balanced_accuracy", "macro_f1")
SIMULATED_SOURCES = {"phantom"}


@dataclass
class Prediction:
    """One answer: the JSON ``autorad predict`` prints, the mask it used and the files offered for download."""

    result: dict[str, Any]
    mask: np.ndarray
    files: dict[str, bytes] = field(default_factory=dict)  # download name -> content


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_summary(run: Path) -> dict[str, Any]:
    """What the page shows about the model before any click: kind, encoders, data, cross-validated quality."""
    meta = _read_json(run / "run.json")
    metrics = _read_json(run / "metrics.json")
    pooled = metrics.get("pooled") or {}
    source = (meta.get("data") or {}).get("source")
    return {
        "run": run.name,
        "kind": meta.get("model_kind"),
        "encoders": meta.get("encoders") or [],
        "trained_with_autorad": meta.get("autorad_version"),
        "data_source": source,
        "simulated_data": source in SIMULATED_SOURCES,
        "cv": {"n": metrics.get("n"), **{k: pooled.get(k) for k in CV_METRICS},
               "fold_std": {k: (metrics.get("fold_std") or {}).get(k) for k in CV_METRICS}},
    }


class ServedModel:
    """A trained run held in memory; :meth:`predict` is safe to call from many threads at once."""

    def __init__(self, run: str | Path):
        from autorad.predict import load_run

        self.run = Path(run)
        self.loaded = load_run(self.run)  # raises InputError for a folder that is not a trained run
        self.summary = run_summary(self.loaded.run)
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "autorad_version": __version__, "model": self.summary}

    def predict(self, vol: CTVolume, center: tuple[int, int, int], diameter_mm: float | None,
                workdir: Path) -> Prediction:
        """Predict for the nodule at ``center`` of ``vol``; ``workdir`` is a private folder the caller removes."""
        import SimpleITK as sitk  # noqa: N813

        from autorad.predict import predict, round_mask

        if diameter_mm is None:
            raise InputError("diameter_mm is required by this autorad version (click segmentation is not here yet)")
        img = vol.to_sitk()
        image_file, report_file, mask_file = workdir / "ct.nii", workdir / "report.html", workdir / "mask.nii.gz"
        sitk.WriteImage(img, str(image_file))
        mask = round_mask(vol.hu.shape, center, diameter_mm, (vol.spacing_mm[1], vol.spacing_mm[2]))
        with self._lock:
            t0 = time.time()
            result = predict(self.loaded.run, image=image_file, center=center, diameter_mm=diameter_mm,
                             report=report_file)
            result["seconds"] = round(time.time() - t0, 3)
        result.pop("report", None)  # a path inside the private folder, gone after the request
        m = sitk.GetImageFromArray(mask.astype(np.uint8))
        m.CopyInformation(img)
        sitk.WriteImage(m, str(mask_file), useCompression=True)
        files = {"report.html": report_file.read_bytes(), "mask.nii.gz": mask_file.read_bytes()}
        return Prediction(result, mask, files)
