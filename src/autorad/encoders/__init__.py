"""Frozen encoders: the registry (:mod:`autorad.encoders.registry`), loaders per family, embedding caches.

>>> enc = load_encoder("efficientnet-lite0")          # doctest: +SKIP
>>> enc.embed([crop_hu]).shape                         # doctest: +SKIP
(1, 1280)
"""

from __future__ import annotations

import importlib

from autorad.encoders.base import TextEncoder, VisionEncoder
from autorad.encoders.registry import EncoderEntry, get_entry, list_encoders

__all__ = ["EncoderEntry", "TextEncoder", "VisionEncoder", "get_entry", "list_encoders", "load_encoder",
           "check_tunable", "load_image_tail", "tunable_encoders"]


def load_encoder(name: str, weights: str | None = None, device: str = "cpu") -> VisionEncoder | TextEncoder:
    """Load the registered encoder ``name`` with frozen weights.

    ``weights``: a local file or directory, or a Hugging Face hub id; default: the entry's own source.
    Missing packages raise MissingDependencyError, missing or mismatched files CheckpointError; real weights
    are never silently replaced by random ones (only the ``tiny-*`` test encoders are random).

    Args:
        name: a registered encoder (``autorad encoders list``).
        weights: a local file or directory, or a hub id; default: the entry's source.
        device: the torch device.

    Returns:
        The frozen :class:`VisionEncoder` or :class:`TextEncoder`.
    """
    entry = get_entry(name)
    module = importlib.import_module(f"autorad.encoders.{entry.family}")
    return module.load(entry, weights, device=device)


def tunable_encoders() -> list[str]:
    """The registered vision encoders whose cached embeddings are a feature map a model can tune layers on
    (``model.image_tuning``)."""
    from autorad.encoders.registry import ENTRIES

    return [e.name for e in ENTRIES.values() if "map" in e.options]


def check_tunable(name: str) -> None:
    """A ConfigError naming the option unless encoder ``name`` caches a feature map (``model.image_tuning``)."""
    from autorad.core.errors import ConfigError

    if name not in tunable_encoders():
        raise ConfigError(f"model.image_tuning: tail needs a model.vision_encoder that caches a feature map "
                          f"({', '.join(tunable_encoders())}), not {name}")


def load_image_tail(name: str, weights: str | None = None, pretrained: bool = True):
    """The trainable layers after encoder ``name``'s cached feature map (``model.image_tuning: tail``), initialised
    from its weights when ``pretrained``; an encoder that caches pooled features is a ConfigError."""
    check_tunable(name)
    entry = get_entry(name)
    module = importlib.import_module(f"autorad.encoders.{entry.family}")
    return module.load_tail(entry, weights, pretrained=pretrained)
