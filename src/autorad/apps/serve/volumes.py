"""Decoded CT volumes kept in memory between the page's requests (open once, click many times).

Only the decoded Hounsfield array and its geometry are kept (no DICOM headers, no file names: a
:class:`~autorad.data.dicom.CTVolume` holds pseudonyms only); the uploaded files themselves are deleted when the
upload request ends. At most ``capacity`` volumes are kept; the least recently used is dropped first. Ids are
random (``secrets.token_urlsafe``), so one user cannot guess another's volume.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autorad.apps.serve.model import Answer
from autorad.core.errors import InputError
from autorad.data.dicom import CTVolume

MAX_NODULES = 10  # predictions kept per open volume (each holds a full-volume mask); the oldest is dropped first


@dataclass
class OpenVolume:
    volume: CTVolume
    sources: list[Any] | None = None  # a DICOM series' slice headers (identifiers: only for SEG / SR downloads)
    nodules: OrderedDict[int, Answer] = field(default_factory=OrderedDict)  # the page's nodule list, by number
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def prediction(self) -> Answer | None:
        """The latest prediction kept (``None`` before the first click or after all were removed)."""
        with self._lock:
            return next(reversed(self.nodules.values()), None)

    def add(self, answer: Answer) -> int:
        """Keep ``answer`` as a new nodule of this volume; its number (1, 2, ...; never reused)."""
        with self._lock:
            n = next(self._numbers)
            self.nodules[n] = answer
            while len(self.nodules) > MAX_NODULES:
                self.nodules.popitem(last=False)
            return n

    def nodule(self, n: int) -> Answer:
        """Nodule ``n`` (KeyError when unknown or dropped)."""
        with self._lock:
            return self.nodules[n]

    def remove(self, n: int) -> None:
        """Forget nodule ``n`` (KeyError when unknown)."""
        with self._lock:
            del self.nodules[n]


class VolumeStore:
    """A thread-safe least-recently-used store of open volumes."""

    def __init__(self, capacity: int = 4):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[str, OpenVolume] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, vol: CTVolume, sources: list[Any] | None = None) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._items[key] = OpenVolume(vol, sources)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> OpenVolume:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                raise KeyError(key)
            self._items.move_to_end(key)
            return item

    def __len__(self) -> int:
        return len(self._items)


def slice_numbers(vol: CTVolume, sources: list[Any] | None = None) -> tuple[list[int], str]:
    """Each slice's 1-based number in the series' own order, and what that order is.

    The volume's slices are in ascending position (index 0 lowest, as ``--center`` counts). A DICOM series whose
    slices all carry distinct Instance Numbers is numbered 1..N in that order (what a PACS shows; usually head
    first); otherwise slices are numbered 1..N from the lowest position.
    """
    d = vol.shape[0]
    inst = []
    for ds in sources or []:
        try:
            inst.append(int(ds.get("InstanceNumber")))
        except (TypeError, ValueError):
            break
    if len(inst) == d and len(set(inst)) == d:
        rank = {i: k + 1 for k, i in enumerate(sorted(inst))}
        return [rank[i] for i in inst], "instance number"
    return list(range(1, d + 1)), "position"


def volume_info(key: str, vol: CTVolume, sources: list[Any] | None = None) -> dict:
    """What the page needs to draw and address the slices (no identifiers). ``slice_numbers[i]`` is slice index
    ``i``'s 1-based number in the series (see :func:`slice_numbers`)."""
    d, h, w = vol.shape
    numbers, order = slice_numbers(vol, sources)
    return {"id": key, "shape": [d, h, w], "spacing_mm": [float(s) for s in vol.spacing_mm],
            "z_mm": [round(float(z), 3) for z in vol.z_positions], "slice_numbers": numbers, "slice_order": order,
            "gaps_mm": [[round(a, 3), round(b, 3)] for a, b in vol.gaps], "dtype": "int16-le"}


def voxels_int16(vol: CTVolume) -> bytes:
    """The whole volume as little-endian int16 HU, slice after slice (rows, then columns)."""
    hu = vol.hu
    if hu.dtype != np.int16:
        hu = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    return hu.astype("<i2", copy=False).tobytes()


def mask_payload(mask: np.ndarray) -> dict:
    """The mask's bounding box and its bits (``np.packbits``, row-major within the box), base64-encoded."""
    import base64

    idx = np.nonzero(mask)
    if idx[0].size == 0:
        raise InputError("the nodule mask is empty")
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    box = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return {"z0": lo[0], "y0": lo[1], "x0": lo[2], "depth": hi[0] - lo[0], "height": hi[1] - lo[1],
            "width": hi[2] - lo[2], "bits": base64.b64encode(np.packbits(box.astype(bool).ravel())).decode()}
