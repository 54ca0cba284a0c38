"""The trained run that the server holds: loaded once, shared by every request, inference serialised by a lock.

Predictions go through the run's :class:`autorad.apps.predictor.Predictor` (the object ``autorad predict`` uses),
and the downloads through the writers ``autorad predict --report / --save-mask / --dicom-seg / --dicom-sr`` use;
nothing of the prediction path is copied here.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autorad import __version__
from autorad.core.errors import InputError
from autorad.data.dicom import CTVolume

DOWNLOADS = ("report.html", "mask.nii.gz")
DICOM_DOWNLOADS = ("seg.dcm", "sr.dcm")  # only for a DICOM series (they reference its slices)


@dataclass
class Answer:
    """One prediction as the server keeps it: the Predictor's answer and the downloads made so far."""

    case: Any  # autorad.apps.predictor.Prediction
    files: dict[str, bytes] = field(default_factory=dict)
    seg: Any = None  # the DICOM SEG dataset, once built (the SR references it)

    @property
    def result(self) -> dict[str, Any]:
        return self.case.result

    @property
    def mask(self) -> np.ndarray:
        return self.case.nodule_mask.mask


class ServedModel:
    """A trained run held in memory; :meth:`predict` is safe to call from many threads at once."""

    def __init__(self, run: str | Path):
        from autorad.apps.predict import load_predictor

        self.predictor = load_predictor(run)  # raises InputError for a folder that is not a trained run
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        """Status, version, the model's description and how to read its predictions (:mod:`autorad.apps.reading`)."""
        from autorad.apps.reading import reading_guide

        return {"status": "ok", "autorad_version": __version__, "model": self.predictor.describe(),
                "reading": reading_guide()}

    def warm_up(self) -> None:
        """One click on a small synthetic slab (a 6 mm ball in lung), so the first user click does not pay for lazy
        imports and first-call set-up (segmentation, radiomics, encoders)."""
        d, h, w = 9, 64, 64
        zz, rows, cols = np.ogrid[:d, :h, :w]
        hu = np.full((d, h, w), -850, dtype=np.int16)
        hu[((zz - 4) * 1.25) ** 2 + ((rows - 32) * 0.7) ** 2 + ((cols - 32) * 0.7) ** 2 <= 9] = 30
        vol = CTVolume(hu=hu, spacing_mm=(1.25, 0.7, 0.7), z_positions=np.arange(d) * 1.25, sop_uids=[""] * d,
                       series_uid="warm-up", patient_id="warm-up")
        with contextlib.suppress(InputError):  # the segmenter may refuse a synthetic ball; imports are done anyway
            self.predict(vol, (32, 32, 4), None)

    def predict(self, vol: CTVolume, center: tuple[int, int, int], diameter_mm: float | None) -> Answer:
        """The nodule clicked at ``center`` of ``vol``, segmented from the click (``diameter_mm`` a hint), as
        ``autorad predict --center`` does."""
        with self._lock:
            return Answer(self.predictor.predict_case(vol, center=center, diameter_mm=diameter_mm))

    def download(self, answer: Answer, name: str, workdir: Path, sources: list[Any] | None = None) -> bytes:
        """The content of download ``name`` for ``answer``, made once and kept; ``workdir`` is a private folder the
        caller removes. ``sources``: the DICOM series' header datasets, needed for ``seg.dcm`` / ``sr.dcm``."""
        if name in answer.files:
            return answer.files[name]
        path = workdir / name
        if name == "report.html":
            from autorad.apps.predict_report import write_prediction_report

            write_prediction_report(path, answer.case, self.predictor)
        elif name == "mask.nii.gz":
            from autorad.apps.predict import save_mask_file

            save_mask_file(answer.case, path)
        elif name in DICOM_DOWNLOADS and sources:
            from autorad.apps.dicom_out import write_dicom_seg, write_dicom_sr

            if answer.seg is None:  # one SEG per answer: the SR references the very one offered for download
                answer.seg = write_dicom_seg(answer.case, sources, workdir / "seg.dcm")
                answer.files["seg.dcm"] = (workdir / "seg.dcm").read_bytes()
            if name == "seg.dcm":
                return answer.files[name]
            write_dicom_sr(answer.case, sources, path, answer.seg)
        else:
            raise KeyError(name)
        answer.files[name] = path.read_bytes()
        return answer.files[name]

