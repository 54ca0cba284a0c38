"""Per-nodule feature cache: one small JSON file per (image, mask, spacing, parameters) hash.

Layout: ``DATASET/cache/radiomics/<key[:2]>/<key>.json``. Every file is written through a temporary name and
an atomic rename, so a run killed at any moment (even SIGKILL) leaves only complete entries; a rerun skips them.
JSON keeps float64 values exactly (``repr`` round-trips) and writes NaN/inf as ``NaN``/``Infinity``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autorad.core.io import atomic_write_text, hash_arrays

CACHE_FORMAT = 1


def nodule_key(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], params_key: str) -> str:
    """Cache key of one extraction: image and mask bytes (with dtype and shape), spacing and parameters."""
    return hash_arrays(np.asarray(image), np.asarray(mask),
                       extra={"spacing": [float(s) for s in spacing], "params": params_key})


class FeatureCache:
    """Read and write cached extraction results under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[str, dict[str, float]] | None:
        """``(status, features)`` for ``key``, or None when absent or unreadable (then it is recomputed)."""
        p = self.path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
            return None
        names, values = entry.get("names", []), entry.get("values", [])
        if len(names) != len(values):
            return None
        return str(entry["status"]), {n: float(v) for n, v in zip(names, values, strict=True)}

    def put(self, key: str, status: str, features: dict[str, float]) -> None:
        """Store one result atomically."""
        entry: dict[str, Any] = {"format": CACHE_FORMAT, "key": key, "status": status,
                                 "names": list(features), "values": [float(v) for v in features.values()]}
        atomic_write_text(self.path(key), json.dumps(entry, allow_nan=True, separators=(",", ":")))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0

