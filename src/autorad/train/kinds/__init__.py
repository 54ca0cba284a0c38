"""The registry of model kinds: ``model.kind`` in a config names one entry here.

A model kind is one class in one module of this package, registered by name with :func:`register_kind`. The class
says which features it needs and follows the scikit-learn-like contract of :class:`~autorad.train.kinds.base.Model`:
``fit`` on training rows, ``predict_proba`` on any rows, ``to_tensors`` / ``from_tensors`` for the safetensors +
JSON checkpoint. Cross-validation, the final model, ``evaluate`` and ``predict`` only ever go through this
registry, so they need no change for a new kind.

How to add a kind (nothing else in autorad changes):

1. Write ``src/autorad/train/kinds/my_kind.py``::

       from autorad.train.kinds import register_kind
       from autorad.train.kinds.base import Model

       @register_kind("my_kind")
       class MyKind(Model):
           needs_radiomics = True      # raw radiomics in FeatureTable.radiomics
           needs_image = False         # frozen embeddings of model.vision_encoder in FeatureTable.image
           needs_text = False          # the frozen text encoder model.text_encoder

           def fit(self, train, tcfg, val=None, state_dir=None, fold=-1): ...
           def predict_proba(self, data): ...      # (N, 3) in CLASS_NAMES order
           def to_tensors(self): ...               # ({name: array}, {json metadata})
           @classmethod
           def from_tensors(cls, cfg, tensors, meta): ...

   Every public module of this package is imported on the first registry lookup, so the decorator runs by itself.
   A kind defined outside autorad registers when its module is imported, or by an ``autorad.kinds`` entry point.
2. Add ``src/autorad/configs/my_kind.yaml`` (``extends: autorad_lung`` + ``model: {kind: my_kind}``).
   Hyper-parameters a kind needs go into :class:`autorad.config.ModelConfig`; list the keys its ``fit`` reads in
   the class attribute ``hyperparameters`` (e.g. ``frozenset({"model.my_c", "train.class_weighting"})``) so that
   ``train.select`` may choose among their values (it refuses keys a kind does not read).
3. Test it like ``tests/test_model_kinds.py`` does for its toy kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from autorad.core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import numpy as np

    from autorad.config import ModelConfig
    from autorad.train.kinds.base import Model

ENTRY_POINT_GROUP = "autorad.kinds"
# in a combined model's checkpoint, each member's metadata holds its own model config under this key (seeds that
# selected their settings apart, train.select, may differ in e.g. n_ctx)
MEMBER_CONFIG = "model_config"
_REGISTRY: dict[str, type[Model]] = {}
_META_REGISTRY: dict[str, type[Model]] = {}
_discovered = False


def register_kind(name: str) -> Callable[[type[Model]], type[Model]]:
    """Class decorator: register a :class:`Model` subclass as ``model.kind: name``."""
    return _register(name, _REGISTRY)


def register_meta_kind(name: str) -> Callable[[type[Model]], type[Model]]:
    """Class decorator: register a combination of fitted models (a seed ensemble, a fusion) as the meta-kind
    ``name``. Not a ``model.kind`` of its own: training builds it from a config (``train.n_seeds``,
    ``model.fusion``); its checkpoint metadata holds its members under the key ``name``, which is how
    :func:`model_from_tensors` recognises it."""
    return _register(name, _META_REGISTRY)


def _register(name: str, registry: dict[str, type[Model]]) -> Callable[[type[Model]], type[Model]]:
    def add(cls: type[Model]) -> type[Model]:
        known = _REGISTRY.get(name) or _META_REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"model kind {name!r} is already registered by {known.__module__}.{known.__qualname__}")
        cls.kind = name
        registry[name] = cls
        return cls
    return add


def _discover() -> None:
    """Import every kind module of this package and every ``autorad.kinds`` entry point (once per process)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):  # shared modules (base, prompting) simply register nothing
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def kind_names() -> list[str]:
    """Every registered model kind, sorted.

    Returns:
        The names ``model.kind`` accepts.
    """
    _discover()
    return sorted(_REGISTRY)


def get_kind(name: str) -> type[Model]:
    """The class registered as ``name``; a :class:`ConfigError` naming the choices when there is none."""
    _discover()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model kind {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def meta_kind(name: str) -> type[Model]:
    """The meta-kind registered as ``name`` (``seed_ensemble``, ``fusion``)."""
    _discover()
    return _META_REGISTRY[name]


def make_model(cfg: ModelConfig) -> Model:
    """A fresh, unfitted model of ``cfg.kind`` (late-fused with the radiomics GBM when ``cfg.fusion`` is ``gbm``:
    the meta-kind ``fusion``, :mod:`autorad.train.kinds.fusion`)."""
    if cfg.fusion == "gbm":
        return meta_kind("fusion").for_config(cfg)
    return get_kind(cfg.kind)(cfg)


def tunable_keys(cfg: ModelConfig) -> frozenset[str]:
    """The dotted config keys whose value changes what :func:`make_model`'s model learns (``train.select``)."""
    if cfg.fusion == "gbm":
        return meta_kind("fusion").tunable_keys(cfg)
    return get_kind(cfg.kind).hyperparameters


def model_from_tensors(cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Model:
    """Rebuild a fitted model from checkpoint tensors and metadata; refuse tensors the model does not use.

    A meta-kind's checkpoint (a seed ensemble, a fusion) holds its members' checkpoints under its own name in the
    metadata: that key says which meta-kind rebuilds it; any other checkpoint is one of ``cfg.kind``.
    """
    from autorad.config import ModelConfig

    if MEMBER_CONFIG in meta:
        try:
            cfg = ModelConfig.model_validate(meta[MEMBER_CONFIG])
        except ValueError as err:
            raise CheckpointError(f"a member's model config in the checkpoint is invalid ({err})") from None
    _discover()
    metas = [c for name, c in _META_REGISTRY.items() if name in meta]
    cls: type[Model] = metas[0] if metas else get_kind(cfg.kind)
    model = cls.from_tensors(cfg, tensors, meta)
    extra = sorted(set(tensors) - set(model.to_tensors()[0]))
    if extra:
        raise CheckpointError(f"checkpoint has unexpected key(s) {', '.join(extra[:5])} for a {cfg.kind} model")
    return model


__all__ = ["get_kind", "kind_names", "make_model", "meta_kind", "model_from_tensors", "register_kind",
           "register_meta_kind"]
