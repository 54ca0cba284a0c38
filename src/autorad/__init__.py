"""autorad: AutoRad-Lung, radiomics-guided prompt learning for lung nodule malignancy on CT.

The Python API mirrors the command line: every ``autorad X`` command has a function twin
(see :mod:`autorad.apps.api`). ``autorad.Predictor`` is the numpy-first predictor
(``autorad.Predictor.load("lidc").predict(hu, mask=mask, spacing_mm=(dy, dx))``, docs/python_api.md).
"""

from typing import Any

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str, str] = ("benign", "unsure", "malignant")

_LAZY = {"Predictor": "autorad.apps.predictor", "PredictionResult": "autorad.apps.predictor"}  # imported on first use


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autorad' has no attribute {name!r}")
