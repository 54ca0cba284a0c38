"""The trained run that the server holds: loaded once, shared by every request, inference serialised by a lock.

Predictions go through the run's :class:`autorad.predictor.Predictor` (the object ``autorad predict`` uses), never
through a copy of it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autorad import __version__
from autorad.data.dicom import CTVolume

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
    case: Any = None  # the Predictor's full answer (autorad.predictor.Prediction), for the report


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
        from autorad.predict import load_predictor

        self.run = Path(run)
        self.predictor = load_predictor(self.run)  # raises InputError for a folder that is not a trained run
        self.summary = run_summary(self.predictor.run_dir)
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
        """Predict for the nodule clicked at ``center`` of ``vol`` (segmented from the click, ``diameter_mm`` as a
        hint), as ``autorad predict`` does; ``workdir`` is a private folder the caller removes."""
        with self._lock:
            case = self.predictor.predict_case(vol, center=center, diameter_mm=diameter_mm)
            if report is not None:
                from autorad.predict_report import write_prediction_report

                write_prediction_report(report, case, self.predictor)
        return Prediction(case.result, case.nodule_mask.mask, center, diameter_mm, case=case)

    def download(self, vol: CTVolume, pred: Prediction, name: str, workdir: Path) -> bytes:
        """The content of download ``name`` (see :data:`DOWNLOADS`) for ``pred``, made once and kept."""
        import SimpleITK as sitk  # noqa: N813

        if name not in pred.files:
            if name == "report.html":
                from autorad.predict_report import write_prediction_report

                write_prediction_report(workdir / name, pred.case, self.predictor)
            elif name == "mask.nii.gz":
                m = sitk.GetImageFromArray(pred.mask.astype(np.uint8))
                m.CopyInformation(vol.to_sitk())
                sitk.WriteImage(m, str(workdir / name), useCompression=True)
            else:
                raise KeyError(name)
            pred.files[name] = (workdir / name).read_bytes()
        return pred.files[name]
