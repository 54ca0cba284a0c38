"""A trained run as one object (as nnU-Net's predictor is built from a trained folder), numpy first.

>>> p = Predictor.load("lidc")                                            # doctest: +SKIP
>>> r = p.predict(hu, mask=mask, spacing_mm=(0.7, 0.7))                   # a 2D slice   doctest: +SKIP
>>> r = p.predict(volume_hu, mask=volume_mask, spacing_mm=(2.5, 0.7, 0.7))  # a 3D volume doctest: +SKIP
>>> r = p.predict("LIDC-IDRI-0001/.../series", center=(317, 367, 86))    # a CT on disk doctest: +SKIP
>>> r.predicted_class, r.probabilities, r.classes_                        # doctest: +SKIP
('malignant', array([0.1, 0.2, 0.7]), ('benign', 'unsure', 'malignant'))
>>> r.to_dict()  # what ``autorad predict`` prints                       # doctest: +SKIP

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
from autorad.apps.nodule_input import (
    MASK_METHODS,
    NoduleMask,
    binary_mask,
    check_center,
    check_diameter,
    disk_mask,
    series_warnings,
)
from autorad.config import CropConfig
from autorad.core.errors import InputError
from autorad.data.crop import equivalent_diameter_mm
from autorad.data.dicom import CTVolume, load_ct, load_mask_values
from autorad.data.geometry import VolumeNodule, nodule_arrays, nodule_in_volume
from autorad.train.kinds import get_kind
from autorad.train.table import FeatureTable

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
INT16_RANGE = (-32768, 32767)  # nodule arrays are stored and featurised as int16 HU (data.geometry.nodule_arrays)
ARRAY_2D_DZ_MM = 1.0  # the slice step given to a lone 2D slice made a one-slice volume (2D features ignore it)


@dataclass
class Prediction:
    """One prediction with what produced it (for reports, saved masks and DICOM outputs)."""

    result: dict[str, Any]  # what ``autorad predict`` prints
    volume: CTVolume
    nodule_mask: NoduleMask
    nodule: VolumeNodule
    arrays: dict[str, np.ndarray]
    proba: np.ndarray | None = None  # (3,) probabilities, unrounded
    flat: bool = False  # the input was a 2D slice (a one-slice volume here)

    def to_result(self) -> PredictionResult:
        """The numpy-first :class:`PredictionResult` of this prediction."""
        probs = np.array([self.result["probabilities"][c] for c in CLASS_NAMES], dtype=np.float64) \
            if self.proba is None else np.asarray(self.proba, dtype=np.float64).copy()
        mask = self.nodule_mask.mask[0] if self.flat else self.nodule_mask.mask
        return PredictionResult(CLASS_NAMES, probs, self.result["predicted_class"], mask,
                                list(self.result["warnings"]), self.result)


@dataclass
class PredictionResult:
    """One nodule's prediction, as :meth:`Predictor.predict` returns it.

    Attributes:
        classes_: the class names, in the order of ``probabilities`` (``autorad.CLASS_NAMES``).
        probabilities: (3,) float array of the class probabilities (they sum to 1).
        predicted_class: the most probable class's name.
        mask: the nodule mask used (bool), in the input's shape: (H, W) for a 2D slice, else (D, H, W).
        warnings: everything to know before trusting the numbers (model, series, mask).
        details: what ``autorad predict`` prints (see :meth:`to_dict`).
    """

    classes_: tuple[str, ...]
    probabilities: np.ndarray
    predicted_class: str
    mask: np.ndarray
    warnings: list[str]
    details: dict[str, Any]

    @property
    def probabilities_by_class(self) -> dict[str, float]:
        """The probabilities as ``{class name: probability}``."""
        return {c: float(v) for c, v in zip(self.classes_, self.probabilities, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict ``autorad predict`` prints (probabilities rounded to 6 decimals, mask described,
        slice, size, model and timing).

        Returns:
            A new dict (changing it leaves the result as it is).
        """
        import copy

        return copy.deepcopy(self.details)


class Predictor:
    """A trained run's final model, ready to predict new nodules (see the module docstring).

    Build it with :meth:`load` (a built-in model's name or a run folder). ``classes_`` names the columns of every
    probability array it returns.
    """

    classes_: tuple[str, ...] = CLASS_NAMES

    def __init__(self, run_dir: Path, model: Any, meta: dict[str, Any], device: str | None = None):
        from autorad.core.devices import resolve_device
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
    def load(cls, run: str | Path, device: str | None = None) -> Predictor:
        """Load a trained model once: its final model, config, encoder, radiomics settings and CV metrics.

        Args:
            run: a built-in model's name (``"lidc"``, see ``autorad models list``) or a run folder written by
                ``autorad train`` (a folder named like a built-in model is reached as ``"./lidc"``).
            device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; default: the run's ``train.device``.

        Returns:
            The :class:`Predictor`.

        Raises:
            InputError: when ``run`` is no trained run (no final model), or names a built-in model that is not
                installed.
        """
        from autorad.pretrained import resolve_run
        from autorad.train.run import Run

        path = resolve_run(run)
        model, meta = Run(path).load_model()
        return cls(path, model, meta, device)

    @classmethod
    def from_run(cls, run: str | Path, device: str | None = None) -> Predictor:
        """The same as :meth:`load` (kept for code written before it).

        Args:
            run: a built-in model's name or a run folder.
            device: ``cpu``, ``cuda[:N]`` or ``auto``; default: the run's ``train.device``.

        Returns:
            The :class:`Predictor`.
        """
        return cls.load(run, device)

    def fold_models(self) -> dict[int, Any]:
        """The run's cross-validation fold models, by fold (for out-of-fold predictions on its own dataset).

        Returns:
            ``{fold: model}``; raises :class:`InputError` when the run has no fold models (a built-in model).
        """
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
        """Warnings that hold for every prediction of this run.

        Returns:
            The warnings (simulated training data, a checkpoint from another autorad version), possibly none.
        """
        out = []
        if self.simulated:
            out.append("MODEL TRAINED ON SIMULATED DATA: this run learnt from phantom nodules, not real CT; its "
                       "probabilities say nothing about a real patient's nodule")
        from autorad.train.checkpoint import version_note

        note = version_note(self.meta)
        return out + ([note] if note else []) + list(getattr(self, "record_warnings", []))

    def training_warnings(self, vol: CTVolume) -> list[str]:
        """A warning when the CT's series or patient was in the model's training set (:mod:`autorad.train.record`).

        Args:
            vol: the loaded CT (its SeriesInstanceUID and PatientID are matched, pseudonymised as ingest does).

        Returns:
            The warnings (empty when neither was in training, or the model records no training set).
        """
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
        """What the model is, for a clinician.

        Returns:
            The kind's own ``in_words``, else its line in ``MODEL_WORDS``, else its docstring's first line.
        """
        words = getattr(self.needs, "in_words", None) or MODEL_WORDS.get(self.kind)
        return words or ((self.needs.__doc__ or self.kind).strip().splitlines()[0])

    def describe(self) -> dict[str, Any]:
        """What the model is, in words and names (for outputs and reports).

        Returns:
            A dict: run folder name, kind, in words, training data source, version, encoders, CV metrics.
        """
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

        Args:
            nodules: one dict of arrays per nodule, as :func:`autorad.data.geometry.nodule_arrays` makes them.
            pixel_spacings: each nodule's in-plane pixel spacing in mm.
            jobs: radiomics processes.
            executor: ``local`` or ``ray``.

        Returns:
            The :class:`FeatureTable` the model kind reads.
        """
        n = len(nodules)
        table = FeatureTable(nodule_ids=np.array([f"new{i}" for i in range(n)]), patient_ids=np.array(["new"] * n),
                             folds=np.zeros(n, dtype=np.int64), y=np.zeros(n, dtype=np.int64))
        if self.needs.needs_radiomics:
            from autorad.core.tasks import run_tasks
            from autorad.radiomics.extract import NoduleTask, compute_task, radiomics_inputs

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
        """Probabilities of nodules given as their stored arrays (the low-level form; see :meth:`predict`).

        Args:
            nodules: one dict of arrays per nodule, as :func:`autorad.data.geometry.nodule_arrays` makes them
                (``slice_hu``, ``slice_mask``, ``crop_hu``, ``crop_mask``; ``volume_*`` for 3D features).
            pixel_spacings: each nodule's in-plane pixel spacing in mm.
            jobs: radiomics processes.
            executor: ``local`` or ``ray``.
            calibrated: scale by the run's temperature when it has one (:mod:`autorad.train.calibration`).

        Returns:
            (N, 3) probabilities in ``classes_`` order, and each nodule's radiomics status (``ok`` ...).
        """
        table = self.featurize(nodules, pixel_spacings, jobs, executor)
        status = [str(s) for s in table.radiomics_status] if table.radiomics_status is not None \
            else ["not used"] * len(nodules)
        proba = self._proba(table)
        return (self.calibrate(proba) if calibrated else proba), status

    def _proba(self, table: FeatureTable) -> np.ndarray:
        """(N, 3) probabilities of a feature table: the one place where probabilities leave the model."""
        return np.asarray(self.model.predict_proba(table), dtype=np.float64)

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """``proba`` scaled by the run's temperature, or unchanged when the run has none.

        Args:
            proba: (N, 3) probabilities of the model.

        Returns:
            (N, 3) probabilities, same argmax.
        """
        if self.temperature is None:
            return proba
        from autorad.train.calibration import apply_temperature

        return apply_temperature(proba, self.temperature)

    # ------------------------------------------------------------------------------------------ masks
    def nodule_mask(self, vol: CTVolume, mask: str | Path | np.ndarray | None = None,
                    center: tuple[int, int, int] | None = None, diameter_mm: float | None = None,
                    label: int | None = None, disk: bool = False) -> NoduleMask:
        """The mask to predict from: given (file or array), segmented from ``center``, or an explicit disk.

        Args:
            vol: the CT.
            mask: a mask file or (D, H, W) array with the CT's geometry (binary, or a label map with ``label``).
            center: (x, y, z) voxel indices of a click inside the nodule (instead of ``mask``).
            diameter_mm: with ``center``: a size hint for the segmentation, or the disk's diameter with ``disk``.
            label: with ``mask``: the nodule's label in a label map.
            disk: with ``center`` and ``diameter_mm``: a drawn disk instead of the segmentation.

        Returns:
            The :class:`NoduleMask` (mask, method, detail, warnings).
        """
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
    def predict_case(self, image: str | Path | CTVolume | np.ndarray, mask: str | Path | np.ndarray | None = None,
                     center: tuple[int, ...] | None = None, diameter_mm: float | None = None,
                     label: int | None = None, disk: bool = False,
                     spacing_mm: tuple[float, ...] | None = None) -> Prediction:
        """Predict one nodule, keeping what produced it (for reports, saved masks and DICOM outputs).

        Args: as :meth:`predict`.

        Returns:
            The :class:`Prediction` (its ``result`` is :meth:`PredictionResult.to_dict`'s dict).
        """
        flat = False  # a 2D slice, predicted as a one-slice volume
        if isinstance(image, np.ndarray):
            vol, flat = array_volume(image, spacing_mm)
            if flat:
                self._check_2d_model()
                mask, center = _flat_mask(mask, image.shape), _flat_center(center)
        elif not isinstance(image, (str, Path, CTVolume)):
            raise InputError(f"image must be a numpy array, a CT path (DICOM series folder, NIfTI, NRRD) or a "
                             f"CTVolume, got {type(image).__name__}")
        elif spacing_mm is not None:
            raise InputError("spacing_mm is for numpy arrays; a CT file or CTVolume carries its own spacing")
        else:
            vol = image if isinstance(image, CTVolume) else load_ct(image)
        if isinstance(mask, np.ndarray) and mask.shape != vol.hu.shape:
            raise InputError(f"mask shape {mask.shape} differs from the image's {vol.hu.shape}")
        if center is not None and (not isinstance(center, (tuple, list, np.ndarray)) or len(center) != 3):
            raise InputError(f"center must be (x, y, z) voxel indices (or (x, y) for a 2D slice), got {center!r}")
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
        if flat:  # no slice step, no z position, no volume: say nothing rather than something made up
            result["mask"]["volume_mm3"] = None
            result["slice_z_mm"] = None
            result["nodule_center_xyz"] = result["nodule_center_xyz"][:2]
        return Prediction(result, vol, nm, nod, arrays, proba=p, flat=flat)

    def predict(self, image: str | Path | CTVolume | np.ndarray, mask: str | Path | np.ndarray | None = None, *,
                spacing_mm: tuple[float, ...] | None = None, center: tuple[int, ...] | None = None,
                diameter_mm: float | None = None, label: int | None = None, disk: bool = False) -> PredictionResult:
        """Predict benign / unsure / malignant for one nodule.

        Args:
            image: the CT in Hounsfield units: a 2D slice (H, W) or a 3D volume (D, H, W, slices in position order)
                as a numpy array, or a DICOM series folder, a NIfTI / NRRD file, or a loaded ``CTVolume``.
            mask: the nodule: an array of the image's shape (binary, or a label map with ``label``) or a mask file
                with the CT's geometry. Give ``mask`` or ``center``.
            spacing_mm: for a numpy image only: the voxel size in mm, ``(dy, dx)`` for a 2D slice (row, column) or
                ``(dz, dy, dx)`` for a volume. Files and CTVolumes carry their own.
            center: a click inside the nodule as voxel indices ``(x, y, z)`` (column, row, slice; ``(x, y)`` for a
                2D slice); the nodule is segmented from it (:mod:`autorad.segment`).
            diameter_mm: with ``center``: the nodule's size as a hint (2-100 mm), or the disk's diameter with
                ``disk``.
            label: with a label-map ``mask``: the nodule's label.
            disk: with ``center`` and ``diameter_mm``: use a drawn disk instead of segmenting (stated in the
                result).

        Returns:
            A :class:`PredictionResult` (``classes_``, ``probabilities``, ``predicted_class``, ``mask``,
            ``warnings``; ``to_dict()`` is what ``autorad predict`` prints).

        Raises:
            InputError: for bad input (wrong dimensions, a mask of another shape, non-finite HU, missing or bad
                spacing, an empty mask, a click outside the image or in air ...), with a message saying which.
        """
        return self.predict_case(image, mask=mask, center=center, diameter_mm=diameter_mm, label=label, disk=disk,
                                 spacing_mm=spacing_mm).to_result()

    def predict_many(self, items: list[Any]) -> list[PredictionResult]:
        """Predict several nodules with the model loaded once.

        Args:
            items: one entry per nodule: a tuple ``(image, mask, spacing_mm)`` of numpy arrays and spacing, a tuple
                ``(image, mask)`` for CT files or CTVolumes, or a dict of :meth:`predict`'s keyword arguments
                (``{"image": hu, "center": (x, y, z), "spacing_mm": (dz, dy, dx)}``).

        Returns:
            One :class:`PredictionResult` per item, in order.

        Raises:
            InputError: for the first bad item, naming its index.
        """
        if isinstance(items, (np.ndarray, str, Path, dict)) or not hasattr(items, "__iter__"):
            raise InputError("items must be a list of (image, mask, spacing_mm) tuples or dicts of predict's "
                             f"arguments, got {type(items).__name__}")
        out = []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                kwargs = dict(item)
            elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
                kwargs = dict(zip(("image", "mask", "spacing_mm"), item, strict=False))
            else:
                raise InputError(f"item {i}: expected (image, mask, spacing_mm), (image, mask) or a dict of "
                                 f"predict's arguments, got {type(item).__name__}")
            if "image" not in kwargs:
                raise InputError(f"item {i}: no image")
            try:
                out.append(self.predict(kwargs.pop("image"), **kwargs))
            except InputError as err:
                raise InputError(f"item {i}: {err}") from None
            except TypeError as err:  # an unknown key in a dict item
                raise InputError(f"item {i}: {err}") from None
        return out

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        """Class probabilities of several nodules, as scikit-learn's ``predict_proba``.

        Args:
            items: as :meth:`predict_many`.

        Returns:
            (N, 3) float array; column j is the probability of ``classes_[j]``.
        """
        results = self.predict_many(items)
        return np.stack([r.probabilities for r in results]) if results else np.zeros((0, len(self.classes_)))

    def _check_2d_model(self) -> None:
        """Refuse a 2D slice for a model that needs a 3D sub-volume (3D radiomics or a 3D image encoder)."""
        if self.needs.needs_radiomics and self.cfg.radiomics.mode == "3d":
            raise InputError("this model uses 3D radiomics (radiomics.mode 3d): give a 3D volume, not a 2D slice")
        if self.encoder is not None and getattr(self.encoder.entry, "kind", "") == "vision3d":
            raise InputError("this model uses a 3D image encoder: give a 3D volume, not a 2D slice")


def array_volume(hu: np.ndarray, spacing_mm: tuple[float, ...] | None) -> tuple[CTVolume, bool]:
    """A numpy image in HU as a :class:`CTVolume`, checked; and whether it was a 2D slice.

    Args:
        hu: (H, W) or (D, H, W) Hounsfield units (any integer or float dtype, finite, within int16).
        spacing_mm: ``(dy, dx)`` for a slice or ``(dz, dy, dx)`` for a volume, in mm, each > 0.

    Returns:
        The volume (a slice becomes one slice) and ``True`` for a 2D slice.

    Raises:
        InputError: naming what is wrong.
    """
    if hu.ndim not in (2, 3):
        raise InputError(f"image must be a 2D slice (H, W) or a 3D volume (D, H, W), got shape {hu.shape}")
    if hu.dtype.kind not in "iuf":
        raise InputError(f"image must hold numbers (Hounsfield units), got dtype {hu.dtype}")
    if min(hu.shape) < 1:
        raise InputError(f"image is empty (shape {hu.shape})")
    want = "(dy, dx) for a 2D slice" if hu.ndim == 2 else "(dz, dy, dx) for a 3D volume"
    if spacing_mm is None:
        raise InputError(f"spacing_mm is missing: give the voxel size in mm, {want}")
    try:
        spacing = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise InputError(f"spacing_mm must be numbers in mm, {want}; got {spacing_mm!r}") from None
    if len(spacing) != hu.ndim:
        raise InputError(f"spacing_mm has {len(spacing)} value(s) for a {hu.ndim}D image; give {want}")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing_mm values must be finite and > 0 mm, got {spacing_mm!r}")
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        raise InputError("image holds NaN or infinite values; give finite Hounsfield units")
    lo, hi = float(hu.min()), float(hu.max())
    if lo < INT16_RANGE[0] or hi > INT16_RANGE[1]:
        raise InputError(f"image values range from {lo:g} to {hi:g}, outside {INT16_RANGE[0]}..{INT16_RANGE[1]}; "
                         "give Hounsfield units")
    flat = hu.ndim == 2
    vol_hu = hu[None] if flat else hu
    dz = ARRAY_2D_DZ_MM if flat else spacing[0]
    vol = CTVolume(hu=vol_hu, spacing_mm=(dz, spacing[-2], spacing[-1]),
                   z_positions=np.arange(vol_hu.shape[0], dtype=np.float64) * dz, sop_uids=[""] * vol_hu.shape[0],
                   series_uid="array", patient_id="", source="numpy array")
    return vol, flat


def _flat_mask(mask: Any, shape: tuple[int, ...]) -> Any:
    """A 2D slice's mask as the one-slice volume's (files are refused: they carry a 3D geometry)."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise InputError(f"for a 2D slice, mask must be a numpy array of shape {shape}, got {type(mask).__name__}")
    if mask.shape != shape:
        raise InputError(f"mask shape {mask.shape} differs from the image's {shape}")
    return mask[None]


def _flat_center(center: Any) -> tuple[int, int, int] | None:
    """A 2D slice's click ``(x, y)`` as the one-slice volume's ``(x, y, 0)``."""
    if center is None:
        return None
    if not isinstance(center, (tuple, list, np.ndarray)) or len(center) != 2:
        raise InputError(f"for a 2D slice, center must be (x, y) voxel indices, got {center!r}")
    return int(center[0]), int(center[1]), 0


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
