"""The contract every model kind follows, and the radiomics preprocessing several kinds share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from autorad import CLASS_NAMES
from autorad.core.errors import CheckpointError, ConfigError
from autorad.train.checkpoint import split_prefix, with_prefix

if TYPE_CHECKING:
    from autorad.config import ModelConfig, TrainConfig
    from autorad.radiomics.preprocess import RadiomicsPreprocessor
    from autorad.train.loop import History
    from autorad.train.table import FeatureTable


class Model(ABC):
    """A trainable 3-class classifier with a safetensors + JSON checkpoint form (scikit-learn-like estimator).

    A kind declares the features it needs (class attributes below); :func:`autorad.train.features.build_features`
    computes exactly those. Preprocessing is fitted on the rows passed to ``fit`` only and saved with the model.
    """

    kind: ClassVar[str]  # set by register_kind
    needs_radiomics: ClassVar[bool] = False  # raw radiomics (FeatureTable.radiomics)
    needs_image: ClassVar[bool] = False  # frozen embeddings of model.vision_encoder (FeatureTable.image)
    needs_text: ClassVar[bool] = False  # the frozen text encoder model.text_encoder
    # the dotted config keys whose value changes what ``fit`` learns (what train.select may choose among)
    hyperparameters: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.history: History | None = None

    @abstractmethod
    def fit(self, train: FeatureTable, tcfg: TrainConfig, val: FeatureTable | None = None,
            state_dir: Path | None = None, fold: int = -1) -> None:
        """Fit on ``train`` (preprocessing included); ``val`` only for model selection; ``state_dir`` for
        resumable epoch checkpoints of long fits."""

    @abstractmethod
    def predict_proba(self, data: FeatureTable) -> np.ndarray:
        """(N, 3) class probabilities in CLASS_NAMES order."""

    @abstractmethod
    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Tensors and JSON-able metadata that rebuild the fitted model."""

    def to(self, device: str) -> Model:
        """Run later ``predict_proba`` calls on ``device`` (a resolved torch device); CPU-only kinds ignore it."""
        return self

    @classmethod
    @abstractmethod
    def from_tensors(cls, cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Model:
        """Rebuild a fitted model (strict: missing or extra tensors are errors)."""


def full_proba(estimator: Any, x: np.ndarray) -> np.ndarray:
    """A scikit-learn classifier's predict_proba with columns for all 3 classes, even those absent from training."""
    p = np.zeros((len(x), len(CLASS_NAMES)))
    p[:, estimator.classes_.astype(int)] = estimator.predict_proba(x)
    return p


def sklearn_class_weight(tcfg: TrainConfig) -> str | None:
    """``train.class_weighting`` in scikit-learn's spelling."""
    return "balanced" if tcfg.class_weighting == "balanced" else None


def fit_radiomics_pre(train: FeatureTable) -> RadiomicsPreprocessor:
    """Radiomics preprocessing fitted on the training rows; with ``radiomics.stability`` (the table carries the
    training rows' perturbed-mask radiomics and an agreement to reach) it keeps only the features that agree with
    them."""
    from autorad.radiomics.preprocess import RadiomicsPreprocessor

    if train.radiomics is None or train.radiomics_names is None:
        raise ConfigError("this model needs radiomics, but the feature table has none")
    p = train.radiomics_perturbed
    if p is None or p.min_agreement is None:
        return RadiomicsPreprocessor().fit(train.radiomics, train.radiomics_names)
    return RadiomicsPreprocessor().fit(train.radiomics, train.radiomics_names, perturbed=p.matrices,
                                       min_agreement=p.min_agreement)


def save_radiomics_pre(pre: RadiomicsPreprocessor, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Add a fitted preprocessor's state to a model's tensors and metadata."""
    tensors.update(with_prefix(pre.state_dict(), "radiomics_pre"))
    meta["radiomics_pre"] = pre.config()


def load_radiomics_pre(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> RadiomicsPreprocessor:
    """The preprocessor saved by :func:`save_radiomics_pre`."""
    from autorad.radiomics.preprocess import RadiomicsPreprocessor

    try:
        return RadiomicsPreprocessor.from_state(split_prefix(tensors, "radiomics_pre"), meta["radiomics_pre"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"radiomics preprocessing state is incomplete: {err}") from None
