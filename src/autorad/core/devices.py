"""``train.device``: where embedding, training and prediction run (``cpu``, ``cuda``, ``cuda:N`` or ``auto``)."""

from __future__ import annotations

import re

from autorad.core.errors import ConfigError

DEVICE_PATTERN = r"^(cpu|auto|cuda(:\d+)?)$"


def resolve_device(name: str, option: str = "train.device") -> str:
    """The torch device for ``name``: ``auto`` is the first GPU when torch sees one, else the CPU.

    Asking for ``cuda`` on a machine without a usable GPU is an error (naming ``option``), never a silent
    fall-back to the CPU.
    """
    if not re.match(DEVICE_PATTERN, name):
        raise ConfigError(f"{option} must be cpu, cuda, cuda:N or auto, got {name!r}")
    if name == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise ConfigError(f"{option} is {name!r} but torch sees no CUDA GPU on this machine "
                          f"(torch {torch.__version__}); set {option} to cpu or auto")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{option} is {name!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    return name
