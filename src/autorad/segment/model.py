"""Save and load the click segmenter's weights (safetensors + JSON sidecar, checked strictly).

The shipped weights live in ``autorad/segment/weights/`` (package data, written by ``bench/segment_train.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autorad.core.errors import CheckpointError
from autorad.segment.core import ClickSegmenter

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_DEFAULT: dict[Path, ClickSegmenter] = {}


def save_segmenter(net: Any, directory: str | Path, meta: dict[str, Any]) -> None:
    """Write a trained :class:`~autorad.segment.unet.UNet2d` (float32 tensors) and its metadata."""
    from autorad.train.checkpoint import save_checkpoint

    tensors = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    save_checkpoint(Path(directory), tensors, {**meta, "widths": list(net.widths)})


def load_segmenter(directory: str | Path | None = None) -> ClickSegmenter:
    """The segmenter saved in ``directory`` (default: the shipped weights), loaded once per process.

    Refuses a missing, corrupt or mismatching checkpoint with :class:`~autorad.core.errors.CheckpointError`.
    """
    import torch

    from autorad.segment.unet import UNet2d
    from autorad.train.checkpoint import load_checkpoint

    key = Path(directory or WEIGHTS_DIR).resolve()
    if key not in _DEFAULT:
        tensors, meta = load_checkpoint(key)
        net = UNet2d(widths=tuple(meta["widths"]))
        state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(f"{key}: the weights do not fit the segmenter: {first}") from None
        _DEFAULT[key] = ClickSegmenter(net, meta)
    return _DEFAULT[key]
