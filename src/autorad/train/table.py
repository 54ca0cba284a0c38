"""The feature table: what a model sees per nodule (label, fold, raw radiomics, frozen image embeddings) and the
training-only targets, row-aligned with the dataset manifest. Plain data: it imports nothing of the model kinds or
the featurisation that fills it (:mod:`autorad.train.features`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np


@dataclass
class PerturbedRadiomics:
    """Training-only data of ``radiomics.stability`` and ``radiomics.mask_augment``: the raw radiomics of every
    nodule with its mask perturbed (perturbation name -> (N, F), rows and columns aligned with
    :attr:`FeatureTable.radiomics`). ``min_agreement``: the agreement each feature must reach with every one of
    them (:mod:`autorad.radiomics.stability`; None: no stability selection). ``augment``: prompt learners draw
    their training radiomics from these too (:func:`autorad.train.loop.train_learner`). Never a model input at
    prediction."""

    matrices: dict[str, np.ndarray]
    min_agreement: float | None
    augment: bool = False

    def subset(self, idx: np.ndarray) -> PerturbedRadiomics:
        return replace(self, matrices={k: v[idx] for k, v in self.matrices.items()})

    def concat(self, other: PerturbedRadiomics) -> PerturbedRadiomics:
        return replace(self, matrices={k: np.concatenate([v, other.matrices[k]]) for k, v in self.matrices.items()})


@dataclass
class FeatureTable:
    """Per-nodule model inputs, row-aligned with the dataset manifest."""

    nodule_ids: np.ndarray
    patient_ids: np.ndarray
    folds: np.ndarray
    y: np.ndarray  # class index in CLASS_NAMES order
    radiomics: np.ndarray | None = None  # (N, F) raw values, NaN where extraction failed
    radiomics_names: list[str] | None = None
    radiomics_status: np.ndarray | None = None
    image: np.ndarray | None = None  # (N, D) frozen embeddings, or (N, V, D): V dihedral views (model.views)
    soft: np.ndarray | None = None  # (N, 3) readers' class distribution: a training target, never an input
    attributes: np.ndarray | None = None  # (N, 8) mean radiologist attributes: a training target, never an input
    radiomics_perturbed: PerturbedRadiomics | None = None  # stability / mask_augment: training only, never an input

    def __len__(self) -> int:
        return len(self.nodule_ids)

    def _row_fields(self) -> dict[str, np.ndarray | PerturbedRadiomics]:
        """The fields with one entry per nodule (arrays and the perturbed radiomics; not the column names)."""
        return {f.name: v for f in fields(self)
                if isinstance(v := getattr(self, f.name), (np.ndarray, PerturbedRadiomics))}

    def subset(self, idx: np.ndarray) -> FeatureTable:
        """Rows ``idx`` (an index or boolean array)."""
        return replace(self, **{k: v.subset(idx) if isinstance(v, PerturbedRadiomics) else v[idx]
                                for k, v in self._row_fields().items()})

    def concat(self, other: FeatureTable) -> FeatureTable:
        """The rows of this table, then those of ``other`` (same columns; a field either table lacks is dropped)."""
        theirs = other._row_fields()
        return replace(self, **{k: (v.concat(theirs[k]) if isinstance(v, PerturbedRadiomics)
                                    else np.concatenate([v, theirs[k]])) if k in theirs else None
                                for k, v in self._row_fields().items()})
