"""The network's view of a click: a square window of the slice centred on the seed, and its input channels.

Training and inference both cut windows with :func:`click_window` and scale them with :func:`net_input`, so the
segmenter sees the same thing in both. Parts of the window outside the slice are filled with air, as crops are
(:data:`autorad.data.crop.AIR_HU`).
"""

from __future__ import annotations

import numpy as np

from autorad.data.crop import AIR_HU, CropBox, apply_crop

WINDOW_PX = 48  # side of the window in pixels (native pixel spacing, as the training crops are not resampled)
WINDOWS_HU = ((-1000.0, 400.0), (-160.0, 240.0))  # lung window and soft-tissue window, one input channel each
DOWNSAMPLING = 8  # window sides must be multiples of this (three 2x poolings in the U-Net)


def window_box(seed_rc: tuple[int, int], size: int = WINDOW_PX) -> CropBox:
    """The ``size`` x ``size`` box whose centre pixel (``size // 2``) is the seed."""
    r, c = (int(v) for v in seed_rc)
    return CropBox(r - size // 2, c - size // 2, int(size))


def click_window(slice_hu: np.ndarray, seed_rc: tuple[int, int], size: int = WINDOW_PX) -> np.ndarray:
    """The window of ``slice_hu`` centred on the seed (air outside the slice), as float32 HU."""
    return apply_crop(np.asarray(slice_hu, dtype=np.float32), window_box(seed_rc, size), float(AIR_HU))


def net_input(window_hu: np.ndarray) -> np.ndarray:
    """HU window(s) of shape (..., H, W) -> float32 (..., 2, H, W): each HU window scaled to [-1, 1]."""
    hu = np.asarray(window_hu, dtype=np.float32)
    chans = [(np.clip(hu, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2) for lo, hi in WINDOWS_HU]
    return np.stack(chans, axis=-3).astype(np.float32)


def paste_window(window: np.ndarray, box: CropBox, shape: tuple[int, int]) -> np.ndarray:
    """Put a window back into an array of ``shape`` (the inverse of cutting it; outside parts are dropped)."""
    out = np.zeros(shape, dtype=window.dtype)
    h, w = shape
    r0, c0 = max(box.r0, 0), max(box.c0, 0)
    r1, c1 = min(box.r0 + box.size, h), min(box.c0 + box.size, w)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = window[r0 - box.r0:r1 - box.r0, c0 - box.c0:c1 - box.c0]
    return out
