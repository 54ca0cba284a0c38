"""Every classifier autorad trains, behind one interface: fit, predict_proba, to_checkpoint, from_checkpoint.

- ``radiomics_logreg`` / ``radiomics_gbm``: scikit-learn on preprocessed radiomics (the bar to clear).
- ``linear_probe``: logistic regression on standardised frozen image embeddings.
- ``coop`` / ``cocoop`` / ``autorad`` / ``autorad_image``: prompt learners over frozen encoders (autorad.prompts).

Preprocessing is fitted on the training rows passed to ``fit`` only and saved with the model.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from autorad import CLASS_NAMES
from autorad.config import ModelConfig, TrainConfig
from autorad.errors import CheckpointError, ConfigError
from autorad.train.checkpoint import split_prefix, with_prefix
from autorad.train.features import FeatureTable
from autorad.train.loop import History, TrainInputs, predict_logits, train_learner

N_CLASSES = len(CLASS_NAMES)


class Model(ABC):
    """A trainable 3-class classifier with a safetensors + JSON checkpoint form."""

    kind: ClassVar[str]

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.history: History | None = None

    @abstractmethod
    def fit(self, train: FeatureTable, tcfg: TrainConfig, val: FeatureTable | None = None,
            state_dir: Path | None = None, fold: int = -1) -> None:
        """Fit on ``train`` (preprocessing included); ``val`` only for model selection."""

    @abstractmethod
    def predict_proba(self, data: FeatureTable) -> np.ndarray:
        """(N, 3) class probabilities in CLASS_NAMES order."""

    @abstractmethod
    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Tensors and JSON-able metadata that rebuild the fitted model."""

    @classmethod
    @abstractmethod
    def from_tensors(cls, cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Model:
        """Rebuild a fitted model (strict: missing or extra tensors are errors)."""


# ----------------------------------------------------------------------------------------- preprocessing
def _fit_radiomics_pre(train: FeatureTable):
    from autorad.radiomics.preprocess import RadiomicsPreprocessor

    if train.radiomics is None or train.radiomics_names is None:
        raise ConfigError("this model needs radiomics, but the feature table has none")
    return RadiomicsPreprocessor().fit(train.radiomics, train.radiomics_names)


def _load_radiomics_pre(tensors: dict[str, np.ndarray], meta: dict[str, Any]):
    from autorad.radiomics.preprocess import RadiomicsPreprocessor

    try:
        return RadiomicsPreprocessor.from_state(split_prefix(tensors, "radiomics_pre"), meta["radiomics_pre"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"radiomics preprocessing state is incomplete: {err}") from None


def _save_radiomics_pre(pre, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Add a fitted preprocessor's state to a model's tensors and metadata."""
    tensors.update(with_prefix(pre.state_dict(), "radiomics_pre"))
    meta["radiomics_pre"] = pre.config()


class _Standardiser:
    """z-score with training mean and std (std of constant columns set to 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = mean.astype(np.float64), std.astype(np.float64)

    @classmethod
    def fit(cls, x: np.ndarray) -> _Standardiser:
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def _full_proba(model, x: np.ndarray) -> np.ndarray:
    """predict_proba with columns for all 3 classes, even those absent from training."""
    p = np.zeros((len(x), N_CLASSES))
    p[:, model.classes_.astype(int)] = model.predict_proba(x)
    return p


# ----------------------------------------------------------------------------------------- scikit-learn
class LogisticModel(Model):
    """Multinomial logistic regression on radiomics (``radiomics_logreg``) or embeddings (``linear_probe``)."""

    kind = "radiomics_logreg"

    def _inputs(self, data: FeatureTable) -> np.ndarray:
        if self.kind == "linear_probe":
            if data.image is None:
                raise ConfigError("linear_probe needs image embeddings")
            return self.scaler.transform(data.image)
        return self.pre.transform(data.radiomics)

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        if self.kind == "linear_probe":
            self.scaler = _Standardiser.fit(train.image)
        else:
            self.pre = _fit_radiomics_pre(train)
        cw = "balanced" if tcfg.class_weighting == "balanced" else None
        self.clf = LogisticRegression(C=self.cfg.logreg_c, max_iter=5000, class_weight=cw)
        self.clf.fit(self._inputs(train), train.y)

    def predict_proba(self, data):
        return _full_proba(self.clf, self._inputs(data))

    def to_tensors(self):
        t = {"coef": self.clf.coef_, "intercept": self.clf.intercept_, "classes": self.clf.classes_.astype(np.int64)}
        meta: dict[str, Any] = {}
        if self.kind == "linear_probe":
            t.update({"scaler.mean": self.scaler.mean, "scaler.std": self.scaler.std})
        else:
            _save_radiomics_pre(self.pre, t, meta)
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        m = cls(cfg)
        try:
            m.clf = LogisticRegression()
            m.clf.coef_, m.clf.intercept_ = tensors["coef"], tensors["intercept"]
            m.clf.classes_ = tensors["classes"]
            if cls.kind == "linear_probe":
                m.scaler = _Standardiser(tensors["scaler.mean"], tensors["scaler.std"])
            else:
                m.pre = _load_radiomics_pre(tensors, meta)
        except KeyError as err:
            raise CheckpointError(f"checkpoint lacks tensor {err}") from None
        n_in = len(m.scaler.mean) if cls.kind == "linear_probe" else m.pre.n_features_out
        n_cls = len(m.clf.classes_)
        for key, want in (("coef", (n_cls, n_in)), ("intercept", (n_cls,))):
            if tuple(tensors[key].shape) != want:
                raise CheckpointError(f"checkpoint key {key} has shape {list(tensors[key].shape)}, the model "
                                      f"needs {list(want)}")
        return m


class LinearProbe(LogisticModel):
    kind = "linear_probe"


# scikit-learn estimators are stored with skops (a pickle-free format that loads only listed types).
_SKOPS_TRUSTED = [
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "builtins.float", "builtins.int", "numpy.float64", "numpy.int64",
]


class GradientBoostingModel(Model):
    """Histogram gradient boosting on preprocessed radiomics (``radiomics_gbm``)."""

    kind = "radiomics_gbm"

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        self.pre = _fit_radiomics_pre(train)
        self.clf = HistGradientBoostingClassifier(
            max_iter=self.cfg.gbm_max_iter, learning_rate=self.cfg.gbm_learning_rate,
            max_leaf_nodes=self.cfg.gbm_max_leaf_nodes, max_bins=self.cfg.gbm_max_bins, l2_regularization=1.0,
            early_stopping=False,
            class_weight="balanced" if tcfg.class_weighting == "balanced" else None, random_state=tcfg.seed)
        self.clf.fit(self.pre.transform(train.radiomics), train.y)

    def predict_proba(self, data):
        return _full_proba(self.clf, self.pre.transform(data.radiomics))

    def to_tensors(self):
        import skops.io as sio

        t = {"sklearn_skops": np.frombuffer(sio.dumps(self.clf), dtype=np.uint8).copy()}
        meta: dict[str, Any] = {}
        _save_radiomics_pre(self.pre, t, meta)
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        import skops.io as sio

        m = cls(cfg)
        if "sklearn_skops" not in tensors:
            raise CheckpointError("checkpoint lacks tensor 'sklearn_skops'")
        data = tensors["sklearn_skops"].tobytes()
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in _SKOPS_TRUSTED]
        if untrusted:
            raise CheckpointError(f"refusing to load unexpected types from the checkpoint: {untrusted[:3]}")
        m.clf = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        m.pre = _load_radiomics_pre(tensors, meta)
        return m


# ----------------------------------------------------------------------------------------- prompt learners
_TEXT_ENCODERS: dict[tuple[str, str | None], Any] = {}


def load_text_encoder(name: str, weights: str | None):
    """Load (once per process) the frozen text encoder."""
    from autorad.encoders import load_encoder

    key = (name, weights)
    if key not in _TEXT_ENCODERS:
        enc = load_encoder(name, weights=weights)
        for p in getattr(enc, "parameters", lambda: [])():
            p.requires_grad_(False)
        _TEXT_ENCODERS[key] = enc
    return _TEXT_ENCODERS[key]


class PromptModel(Model):
    """CoOp, CoCoOp, AutoRad and AutoRad+image prompt learners (kind = cfg.kind)."""

    kind = "autorad"

    @property
    def uses_radiomics(self) -> bool:
        return self.cfg.kind in ("autorad", "autorad_image")

    def _build(self, image_dim: int, radiomics_dim: int) -> None:
        from autorad.prompts import build_prompt_learner

        self.image_dim, self.radiomics_dim = image_dim, radiomics_dim
        text = load_text_encoder(self.cfg.text_encoder, self.cfg.text_weights)
        self.learner = build_prompt_learner(
            self.cfg.kind, text, list(self.cfg.class_names), image_dim=image_dim, radiomics_dim=radiomics_dim,
            n_ctx=self.cfg.n_ctx, ctx_init=self.cfg.ctx_init, metanet_hidden=self.cfg.metanet_hidden,
            logit_scale_init=self.cfg.logit_scale_init, learn_logit_scale=self.cfg.learn_logit_scale)

    def _inputs(self, data: FeatureTable) -> TrainInputs:
        if data.image is None:
            raise ConfigError(f"{self.cfg.kind} needs image embeddings")
        rad = None
        if self.uses_radiomics:
            rad = torch.from_numpy(self.pre.transform(data.radiomics).astype(np.float32))
        def optional(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return TrainInputs(torch.from_numpy(np.ascontiguousarray(data.image, dtype=np.float32)), rad,
                           torch.from_numpy(data.y.astype(np.int64)), optional(data.soft), optional(data.attributes))

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        if self.uses_radiomics:
            self.pre = _fit_radiomics_pre(train)
        # load the frozen encoder before seeding: its first load draws random numbers (weight init before the
        # checkpoint is copied in), which would otherwise make the learner's init depend on what ran before
        load_text_encoder(self.cfg.text_encoder, self.cfg.text_weights)
        torch.manual_seed(tcfg.seed * 1000 + fold + 1)
        self._build(train.image.shape[1], self.pre.n_features_out if self.uses_radiomics else 0)
        fingerprint = hashlib.sha256(json.dumps(
            [self.cfg.model_dump(mode="json"), tcfg.model_dump(mode="json"), sorted(train.nodule_ids.tolist()),
             fold], sort_keys=True).encode()).hexdigest()
        self.history = train_learner(self.learner, self._inputs(train), tcfg, state_dir, fingerprint, fold,
                                     val=self._inputs(val) if val is not None else None)

    def predict_proba(self, data):
        return torch.softmax(predict_logits(self.learner, self._inputs(data)), dim=1).numpy().astype(np.float64)

    def to_tensors(self):
        t = with_prefix({k: v.detach().cpu().numpy() for k, v in self.learner.learnable_state_dict().items()},
                        "learner")
        meta: dict[str, Any] = {"image_dim": self.image_dim, "radiomics_dim": self.radiomics_dim}
        if self.uses_radiomics:
            _save_radiomics_pre(self.pre, t, meta)
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        m = cls(cfg)
        if m.uses_radiomics:
            m.pre = _load_radiomics_pre(tensors, meta)
        m._build(int(meta["image_dim"]), int(meta["radiomics_dim"]))
        state = {k: torch.from_numpy(v.copy()) for k, v in split_prefix(tensors, "learner").items()}
        try:
            m.learner.load_learnable_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"prompt learner state does not fit the model: {str(err).splitlines()[0]}") from None
        return m


MODEL_CLASSES: dict[str, type[Model]] = {
    "radiomics_logreg": LogisticModel, "radiomics_gbm": GradientBoostingModel, "linear_probe": LinearProbe,
    "coop": PromptModel, "cocoop": PromptModel, "autorad": PromptModel, "autorad_image": PromptModel,
}


def make_model(cfg: ModelConfig) -> Model:
    """A fresh, unfitted model of ``cfg.kind`` (fused with the radiomics GBM when ``cfg.fusion`` says so)."""
    if cfg.fusion == "gbm":
        from autorad.train.fusion import FusedModel

        return FusedModel(cfg, MODEL_CLASSES[cfg.kind](cfg), GradientBoostingModel(cfg))
    return MODEL_CLASSES[cfg.kind](cfg)


def model_from_tensors(cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Model:
    """Rebuild a fitted model from checkpoint tensors and metadata; refuse tensors the model does not use."""
    if "seed_ensemble" in meta:
        from autorad.train.seeds import SeedEnsemble

        return SeedEnsemble.from_tensors(cfg, tensors, meta)
    if "fusion" in meta:
        from autorad.train.fusion import FusedModel

        cls: type[Model] = FusedModel
    else:
        cls = MODEL_CLASSES[cfg.kind]
    model = cls.from_tensors(cfg, tensors, meta)
    extra = sorted(set(tensors) - set(model.to_tensors()[0]))
    if extra:
        raise CheckpointError(f"checkpoint has unexpected key(s) {', '.join(extra[:5])} for a {cfg.kind} model")
    return model
