"""Datasets of nodules: label rules, patient-level folds, crops, ingestion of LIDC sources and the phantom."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Dataset", "NoduleRecord", "write_dataset"]


def __getattr__(name: str) -> Any:  # lazy, so autorad.config can import autorad.data.crop without a cycle
    if name in __all__:
        return getattr(importlib.import_module("autorad.data.dataset"), name)
    raise AttributeError(f"module 'autorad.data' has no attribute {name!r}")
