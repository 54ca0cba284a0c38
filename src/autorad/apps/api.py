"""The Python API: one function per ``autorad`` command.

=====================  =============================================
command                function
=====================  =============================================
autorad ingest         :func:`ingest`
autorad radiomics      :func:`run_radiomics`
autorad encoders list  :func:`list_encoders` (and :func:`load_encoder`)
autorad embed          :func:`embed_dataset`
autorad train          :func:`train`
autorad sweep          :func:`sweep`
autorad evaluate       :func:`evaluate`
autorad compare        :func:`compare`
autorad predict        :func:`predict` (one nodule), :func:`predict_batch` (``--nodules``), :class:`Predictor`
autorad robustness     :func:`robustness`
autorad serve          :func:`serve` (and :func:`create_app` for the ASGI app)
autorad segment        :func:`segment` (and :func:`segment_click`, :func:`segment_click_2d` on arrays)
autorad run            :func:`run`
autorad models list    :func:`builtin_models` (and :func:`resolve_run`: a built-in name or a run folder)
autorad configs list   :func:`list_configs`
=====================  =============================================

Imports are lazy, so ``import autorad.apps.api`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ingest": "autorad.data.ingest",
    "Dataset": "autorad.data.dataset",
    "load_config": "autorad.train.resolve",
    "run_radiomics": "autorad.radiomics.extract",
    "load_radiomics": "autorad.radiomics",
    "list_encoders": "autorad.encoders.registry",
    "load_encoder": "autorad.encoders",
    "embed_dataset": "autorad.encoders.embed",
    "read_embeddings": "autorad.encoders.embed",
    "train": "autorad.train.entry",
    "load_model": "autorad.train.run",
    "Run": "autorad.train.run",
    "kind_names": "autorad.train.kinds",
    "sweep": "autorad.train.sweep",
    "evaluate": "autorad.evaluate.apply",
    "compare": "autorad.evaluate.compare",
    "compute_metrics": "autorad.evaluate.metrics",
    "predict": "autorad.apps.predict",
    "predict_batch": "autorad.apps.predict",
    "Predictor": "autorad.apps.predictor",
    "PredictionResult": "autorad.apps.predictor",
    "builtin_models": "autorad.pretrained",
    "resolve_run": "autorad.pretrained",
    "list_configs": "autorad.config",
    "robustness": "autorad.apps.robustness",
    "segment": "autorad.segment.command",
    "segment_click": "autorad.segment",
    "segment_click_2d": "autorad.segment",
    "serve": "autorad.apps.serve.server",
    "create_app": "autorad.apps.serve.app",
    "run": "autorad.apps.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autorad.apps.api' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
