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


DOWNLOADS = ("report.html", "mask.nii.gz")


@dataclass
class Prediction:
    """One answer: the JSON ``autorad predict`` prints, the mask it used, and what is needed to make the downloads
    (made on request, so a click does not wait for a report nobody asked for)."""

    result: dict[str, Any]
    mask: np.ndarray
    center: tuple[int, int, int]
    diameter_mm: float | None
    files: dict[str, bytes] = field(default_factory=dict)  # download name -> content, once made


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
        "name": meta.get("name"),
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

    def warm_up(self, workdir: Path) -> None:
        """One prediction on a small synthetic slab, so the first user click does not pay for lazy imports and
        first-call set-up (radiomics, encoders)."""
        d, h, w = 3, 64, 64
        rows, cols = np.ogrid[:h, :w]
        hu = np.full((d, h, w), -800, dtype=np.int16)
        hu[:, ((rows - 32) ** 2 + (cols - 32) ** 2) <= 36] = 40
        vol = CTVolume(hu=hu, spacing_mm=(2.0, 0.7, 0.7), z_positions=np.arange(d) * 2.0, sop_uids=[""] * d,
                       series_uid="warm-up", patient_id="warm-up")
        self.predict(vol, (32, 32, 1), 8.0, workdir)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "autorad_version": __version__, "model": self.summary}

    def predict(self, vol: CTVolume, center: tuple[int, int, int], diameter_mm: float | None,
                workdir: Path, report: Path | None = None) -> Prediction:
        """Predict for the nodule at ``center`` of ``vol``; ``workdir`` is a private folder the caller removes."""
        import SimpleITK as sitk  # noqa: N813

        from autorad.predict import predict, round_mask

        if diameter_mm is None:
            raise InputError("diameter_mm is required by this autorad version (click segmentation is not here yet)")
        image_file = workdir / "ct.nii"
        sitk.WriteImage(vol.to_sitk(), str(image_file))
        mask = round_mask(vol.hu.shape, center, diameter_mm, (vol.spacing_mm[1], vol.spacing_mm[2]))
        with self._lock:
            t0 = time.time()
            result = predict(self.loaded.run, image=image_file, center=center, diameter_mm=diameter_mm,
                             report=report)
            result["seconds"] = round(time.time() - t0, 3)
        result.pop("report", None)  # a path inside the private folder, gone after the request
        return Prediction(result, mask, center, diameter_mm)

    def download(self, vol: CTVolume, pred: Prediction, name: str, workdir: Path) -> bytes:
        """The content of download ``name`` (see :data:`DOWNLOADS`) for ``pred``, made once and kept."""
        import SimpleITK as sitk  # noqa: N813

        if name not in pred.files:
            if name == "report.html":
                self.predict(vol, pred.center, pred.diameter_mm, workdir, report=workdir / name)
            elif name == "mask.nii.gz":
                m = sitk.GetImageFromArray(pred.mask.astype(np.uint8))
                m.CopyInformation(vol.to_sitk())
                sitk.WriteImage(m, str(workdir / name), useCompression=True)
            else:
                raise KeyError(name)
            pred.files[name] = (workdir / name).read_bytes()
        return pred.files[name]
