"""A trained run as one object (as nnU-Net's predictor is built from a trained folder).

>>> p = Predictor.from_run("runs/offline_cpu/run")                       # doctest: +SKIP
>>> p.predict("LIDC-IDRI-0001/.../series", center=(317, 367, 86))        # doctest: +SKIP
{'predicted_class': 'malignant', 'probabilities': {...}, 'mask': {...}, 'warnings': [...], ...}

Loaded once (final model, its config, the frozen vision encoder, the radiomics parameters, the run's
cross-validated metrics), it featurises a nodule through the very functions ingestion and feature extraction
use: :func:`autorad.data.geometry.nodule_in_volume` (middle slice, spacing, padded sub-volume),
:func:`autorad.data.geometry.nodule_arrays` (crop with the run's crop settings, stored dtypes),
:func:`autorad.radiomics.extract.radiomics_inputs` + :func:`~autorad.radiomics.extract.extract_one` (the run's
PyRadiomics parameters) and :func:`autorad.encoders.embed.encoder_input` (the encoder's input). A dataset nodule
passed through :meth:`Predictor.predict` with its own mask therefore gets the probabilities ``autorad evaluate``
gives it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autorad import CLASS_NAMES
from autorad.config import CropConfig
from autorad.data.crop import equivalent_diameter_mm
from autorad.data.dicom import CTVolume, load_ct, load_mask_values
from autorad.data.geometry import VolumeNodule, nodule_arrays, nodule_in_volume
from autorad.errors import InputError
from autorad.nodule_input import (
    MASK_METHODS,
    NoduleMask,
    binary_mask,
    check_center,
    check_diameter,
    disk_mask,
    series_warnings,
)
from autorad.train.features import FeatureTable
from autorad.train.kinds import get_kind

MODEL_WORDS = {
    "autorad": "AutoRad-Lung prompt learner: a frozen image encoder embeds the nodule crop, a frozen text encoder "
               "embeds learned context words plus the class name, and a small network maps the nodule's "
               "radiomic features to a shift of those context words",
    "autorad_image": "AutoRad-Lung prompt learner whose context shift is computed from radiomics and the image",
    "coop": "CoOp prompt learner: learned context words with a frozen image and text encoder (no radiomics)",
    "cocoop": "CoCoOp prompt learner: context words shifted per image (no radiomics)",
    "linear_probe": "logistic regression on the frozen image encoder's embedding (no radiomics)",
    "radiomics_logreg": "logistic regression on the nodule's radiomic features (no image encoder)",
    "radiomics_gbm": "gradient-boosted trees on the nodule's radiomic features (no image encoder)",
}
SIMULATED_SOURCES = {"phantom"}


@dataclass
class Prediction:
    """One prediction with what produced it (for reports, saved masks and DICOM outputs)."""

    result: dict[str, Any]  # what ``autorad predict`` prints
    volume: CTVolume
    nodule_mask: NoduleMask
    nodule: VolumeNodule
    arrays: dict[str, np.ndarray]


class Predictor:
    """A trained run's final model, ready to predict new nodules (see the module docstring)."""

    def __init__(self, run_dir: Path, model: Any, meta: dict[str, Any], device: str | None = None):
        from autorad.devices import resolve_device
        from autorad.train.run import Run

        self.run = Run(run_dir)
        self.run_dir = self.run.path
        self.meta = meta
        self.cfg = self.run.model_config(meta)
        self.device = resolve_device(device or self.cfg.train.device)
        self.model = model.to(self.device)
        self.kind = self.cfg.model.kind
        self.needs = get_kind(self.kind)  # the registry entry: which features the model needs
        self.crop = CropConfig(**(meta.get("dataset") or {}).get("crop") or {})
        self.encoder = None
        if self.needs.needs_image:
            from autorad.encoders import load_encoder

            self.encoder = load_encoder(self.cfg.model.vision_encoder, weights=self.cfg.model.vision_weights,
                                        device=self.device)
        self.radiomics_params = None
        if self.needs.needs_radiomics:
            from autorad.radiomics.extract import resolve_params

            self.radiomics_params = resolve_params(self.cfg.radiomics)
        self.cv_metrics = self._read_metrics()
        from autorad.train.calibration import run_temperature

        self.temperature = run_temperature(self.run, meta)  # None: the model's own probabilities are used as they are

    @classmethod
    def from_run(cls, run: str | Path, device: str | None = None) -> Predictor:
        """Load a run folder's final model once (:class:`InputError` when it has none). ``device``: ``cpu``,
        ``cuda[:N]`` or ``auto``; default: the run's ``train.device``."""
        from autorad.train.run import Run

        model, meta = Run(run).load_model()
        return cls(Path(run), model, meta, device)

    def fold_models(self) -> dict[int, Any]:
        """The run's cross-validation fold models, by fold (for out-of-fold predictions on its own dataset)."""
        folds = sorted(int(p.name) for p in (self.run_dir / "folds").glob("*") if p.name.isdigit())
        if not folds:
            raise InputError(f"{self.run_dir} holds no fold models (folds/<k>/model)")
        return {k: self.run.load_model(k)[0].to(self.device) for k in folds}

    # ------------------------------------------------------------------------------------------ the model
    @property
    def trained_on(self) -> str:
        """The source of the training data (``lidc-maxslice``, ``lidc-dicom``, ``phantom`` ...)."""
        return str((self.meta.get("dataset") or {}).get("source") or "unknown")

    @property
    def simulated(self) -> bool:
        """Whether the model was trained on simulated (phantom) nodules."""
        return self.trained_on in SIMULATED_SOURCES

    def model_warnings(self) -> list[str]:
        """Warnings that hold for every prediction of this run."""
        out = []
        if self.simulated:
            out.append("MODEL TRAINED ON SIMULATED DATA: this run learnt from phantom nodules, not real CT; its "
                       "probabilities say nothing about a real patient's nodule")
        from autorad.train.checkpoint import version_note

        note = version_note(self.meta)
        return out + ([note] if note else []) + list(getattr(self, "record_warnings", []))

    def training_warnings(self, vol: CTVolume) -> list[str]:
        """A warning when the CT's series or patient was in the model's training set (:mod:`autorad.train.record`)."""
        from autorad.train.record import case_overlap_warnings

        return case_overlap_warnings(self.meta, vol.patient_id, vol.series_uid)

    def _read_metrics(self) -> dict[str, Any] | None:
        """The cross-validated metrics sealed into the model (unsealed: metrics.json's, marked so); warnings about
        files beside the model that disagree go into :attr:`record_warnings` (:mod:`autorad.train.record`)."""
        from autorad.train.record import read_run_record

        check = read_run_record(self.run, self.meta)
        self.record_warnings = check.warnings
        m = check.summary
        if m is None:
            return None
        pooled, mean, std = m.get("pooled") or {}, m.get("fold_mean") or {}, m.get("fold_std") or {}
        return {"n": m.get("n"), "n_folds": m.get("n_folds"), "accuracy": pooled.get("accuracy"),
                "accuracy_fold_mean": mean.get("accuracy"), "accuracy_fold_std": std.get("accuracy"),
                "macro_auc": pooled.get("macro_auc"), "macro_auc_fold_mean": mean.get("macro_auc"),
                "macro_auc_fold_std": std.get("macro_auc"), "ece": pooled.get("ece"),
                "unsure_f1": ((pooled.get("per_class") or {}).get("unsure") or {}).get("f1"),
                "ece_calibrated": (((m.get("calibration") or {}).get("cv") or {}).get("after") or {}).get("ece"),
                "sealed": check.sealed}

    def in_words(self) -> str:
        """What the model is, for a clinician (the kind's own ``in_words``, else its docstring's first line)."""
        words = getattr(self.needs, "in_words", None) or MODEL_WORDS.get(self.kind)
        return words or ((self.needs.__doc__ or self.kind).strip().splitlines()[0])

    def describe(self) -> dict[str, Any]:
        """What the model is, in words and names (for outputs and reports)."""
        vision = self.cfg.model.vision_encoder if self.needs.needs_image else None
        text = self.cfg.model.text_encoder if self.needs.needs_text else None
        return {"run": self.run_dir.name, "kind": self.kind, "in_words": self.in_words(),
                "trained_on": self.trained_on, "simulated_training_data": self.simulated,
                "autorad_version": self.meta.get("autorad_version"), "vision_encoder": vision,
                "text_encoder": text, "cross_validation": self.cv_metrics}

    # ------------------------------------------------------------------------------------ featurisation
    def featurize(self, nodules: list[dict[str, np.ndarray]], pixel_spacings: list[float], jobs: int = 1,
                  executor: str = "local") -> FeatureTable:
        """Model inputs of nodules given as their stored arrays (:func:`nodule_arrays`), as training builds them.

        Radiomics run as :func:`autorad.radiomics.extract.compute_task` tasks, the function dataset extraction runs,
        in this process (``jobs=1``), ``jobs`` local processes or as Ray tasks (``executor="ray"``).
        """
        n = len(nodules)
        table = FeatureTable(nodule_ids=np.array([f"new{i}" for i in range(n)]), patient_ids=np.array(["new"] * n),
                             folds=np.zeros(n, dtype=np.int64), y=np.zeros(n, dtype=np.int64))
        if self.needs.needs_radiomics:
            from autorad.radiomics.extract import NoduleTask, compute_task, radiomics_inputs
            from autorad.tasks import run_tasks

            def tasks():
                for i, (arrays, ps) in enumerate(zip(nodules, pixel_spacings, strict=True)):
                    inputs = radiomics_inputs(arrays, ps, self.cfg.radiomics.mode)
                    if inputs is None:
                        raise InputError("this model uses 3D radiomics and the nodule has no 3D sub-volume")
                    yield NoduleTask(str(i), str(i), *inputs, self.radiomics_params.settings)

            names = self.meta["radiomics_names"]
            done = {int(i): (status, feats) for i, _, status, feats in
                    run_tasks(compute_task, tasks(), jobs=jobs, executor=executor)}
            table.radiomics = np.array([[done[i][1].get(k, np.nan) for k in names] for i in range(n)],
                                       dtype=np.float64).reshape(n, len(names))
            table.radiomics_names = list(names)
            table.radiomics_status = np.array([done[i][0] for i in range(n)])
        if self.needs.needs_image:
            from autorad.encoders.embed import encoder_input
            from autorad.encoders.views import views_of

            n_views = self.cfg.model.views
            images = views_of([encoder_input(a, self.encoder) for a in nodules], n_views)
            emb = np.asarray(self.encoder.embed(images), dtype=np.float32).reshape(n_views, n, -1)
            table.image = emb[0] if n_views == 1 else np.ascontiguousarray(emb.transpose(1, 0, 2))
        return table

    def predict_proba_arrays(self, nodules: list[dict[str, np.ndarray]], pixel_spacings: list[float],
                             jobs: int = 1, executor: str = "local",
                             calibrated: bool = True) -> tuple[np.ndarray, list[str]]:
        """(N, 3) probabilities and the radiomics status of nodules given as stored arrays; scaled by the run's
        temperature when it has one (:mod:`autorad.train.calibration`) unless ``calibrated=False``."""
        table = self.featurize(nodules, pixel_spacings, jobs, executor)
        status = [str(s) for s in table.radiomics_status] if table.radiomics_status is not None \
            else ["not used"] * len(nodules)
        proba = np.asarray(self.model.predict_proba(table), dtype=np.float64)
        return (self.calibrate(proba) if calibrated else proba), status

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """``proba`` scaled by the run's temperature, or unchanged when the run has none."""
        if self.temperature is None:
            return proba
        from autorad.train.calibration import apply_temperature

        return apply_temperature(proba, self.temperature)

    # ------------------------------------------------------------------------------------------ masks
    def nodule_mask(self, vol: CTVolume, mask: str | Path | np.ndarray | None = None,
                    center: tuple[int, int, int] | None = None, diameter_mm: float | None = None,
                    label: int | None = None, disk: bool = False) -> NoduleMask:
        """The mask to predict from: given (file or array), segmented from ``center``, or an explicit disk."""
        d = check_diameter(diameter_mm)
        if mask is not None:
            if center is not None or d is not None or disk:
                raise InputError("give the nodule either as --mask or as --center (with an optional "
                                 "--diameter-mm), not both")
            if isinstance(mask, (str, Path)):
                values, what = load_mask_values(mask, like=vol), "mask file"  # its name may name the patient
            else:
                values, what = np.asarray(mask), "mask array"
                if values.shape != vol.hu.shape:
                    raise InputError(f"mask shape {values.shape} differs from the image's {vol.hu.shape}")
            m = binary_mask(values, label)
            return NoduleMask(m, "given", what + (f", label {label}" if label is not None else ""))
        if label is not None:
            raise InputError("--label selects a label of --mask; there is no --mask")
        if center is None:
            raise InputError("give the nodule as --mask FILE or --center X,Y,Z")
        check_center(vol, center)
        if disk:
            if d is None:
                raise InputError("--disk needs --diameter-mm (the disk's diameter)")
            return NoduleMask(disk_mask(vol, center, d), "disk",
                              f"disk of {d:g} mm on slice {center[2]} around the click")
        return segment_from_click(vol, center, d)

    # --------------------------------------------------------------------------------------- prediction
    def predict_case(self, image: str | Path | CTVolume, mask: str | Path | np.ndarray | None = None,
                     center: tuple[int, int, int] | None = None, diameter_mm: float | None = None,
                     label: int | None = None, disk: bool = False) -> Prediction:
        """Predict one nodule of a CT (a series folder, NIfTI/NRRD file or loaded :class:`CTVolume`)."""
        vol = image if isinstance(image, CTVolume) else load_ct(image)
        t0 = time.perf_counter()  # after the CT is read: the mask (segmentation included) and the model
        nm = self.nodule_mask(vol, mask, center, diameter_mm, label, disk)
        zs = vol.z_positions
        nod = nodule_in_volume(vol.hu, nm.mask, vol.spacing_mm, vol.gap_between_slices)
        if not nod.slice_mask.any():
            raise InputError(f"the mask's middle slice (index {nod.slice_index}) is empty: the mask skips slices, "
                             "which no training nodule does; give a mask that is contiguous in z")
        arrays = nodule_arrays(nod.slice_hu, nod.slice_mask, nod.pixel_spacing_mm, self.crop.factor,
                               self.crop.min_px, nod.volume_hu, nod.volume_mask, nod.volume_spacing_mm)
        raw, status = self.predict_proba_arrays([arrays], [nod.pixel_spacing_mm], calibrated=False)
        p = self.calibrate(raw)[0]
        warnings = self.model_warnings() + self.training_warnings(vol) + series_warnings(vol) + list(nm.warnings)
        if self.needs.needs_radiomics and status[0] != "ok":
            warnings.append("radiomics extraction did not succeed; missing features were filled with the training "
                            "medians, so the radiomics part of this prediction says little about the nodule")
        voxel_mm3 = float(np.prod(vol.spacing_mm))
        rows, cols = np.nonzero(nod.slice_mask)
        result = {
            "predicted_class": CLASS_NAMES[int(np.argmax(p))],
            "probabilities": {c: round(float(v), 6) for c, v in zip(CLASS_NAMES, p, strict=True)},
            "calibrated": self.temperature is not None,
            **({"probabilities_uncalibrated": {c: round(float(v), 6) for c, v in zip(CLASS_NAMES, raw[0],
                                                                                     strict=True)},
                "temperature": self.temperature} if self.temperature is not None else {}),
            "warnings": warnings,
            "simulated_training_data": self.simulated,
            "mask": {"method": nm.method, "description": MASK_METHODS[nm.method], "detail": nm.detail,
                     "voxels": int(nm.mask.sum()), "volume_mm3": round(float(nm.mask.sum()) * voxel_mm3, 2)},
            "slice_index": int(nod.slice_index),
            "slice_z_mm": round(float(zs[nod.slice_index]), 3),
            "nodule_center_xyz": [int(round(cols.mean())), int(round(rows.mean())), int(nod.slice_index)],
            "equivalent_diameter_mm": round(equivalent_diameter_mm(nod.slice_mask, nod.pixel_spacing_mm), 3),
            "pixel_spacing_mm": round(float(nod.pixel_spacing_mm), 5),
            "radiomics_status": status[0] if self.needs.needs_radiomics else "not used",
            "model": self.describe(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return Prediction(result, vol, nm, nod, arrays)

    def predict(self, image: str | Path | CTVolume, **nodule: Any) -> dict[str, Any]:
        """What ``autorad predict`` prints for one nodule (see :meth:`predict_case` for the arguments)."""
        return self.predict_case(image, **nodule).result


def segment_from_click(vol: CTVolume, center: tuple[int, int, int], diameter_hint_mm: float | None) -> NoduleMask:
    """The click segmentation's mask (:mod:`autorad.segment`), with its method and warnings."""
    from autorad.segment import segment_click

    res = segment_click(vol.hu, tuple(float(s) for s in vol.spacing_mm), tuple(int(c) for c in center),
                        diameter_hint_mm=diameter_hint_mm)
    hint = f", diameter hint {diameter_hint_mm:g} mm" if diameter_hint_mm is not None else ""
    # the segmenter falls back to a disk of the hint when it finds no nodule: say so
    method = "disk" if "disk" in res.method else "click"
    return NoduleMask(np.asarray(res.mask, dtype=bool), method, f"{res.method}{hint}", list(res.warnings))


def warn_stderr(result: dict[str, Any]) -> None:
    """Print a prediction's warnings on stderr (the simulated-data one in capitals, as in the JSON)."""
    for w in result.get("warnings", []):
        print(f"autorad: warning: {w}", file=sys.stderr)
