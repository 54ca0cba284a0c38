"""Segment a nodule from one click: 2D on a slice, 3D by propagating the slice result to its neighbours.

A :class:`ClickSegmenter` holds one trained U-Net (load once, call many times, like nnU-Net's predictor). On a
slice it cuts the window centred on the seed (:mod:`autorad.segment.window`), thresholds the network's
probability at 0.5, keeps the connected part at (or nearest to) the seed and fills holes; when that part touches
the window's edge the slice is segmented again at half the resolution (up to 1/:data:`MAX_SCALE`). In 3D the seed
slice is segmented first, then each neighbouring slice in turn, seeded at the previous slice's mask centre and kept
inside that mask grown by one slice step (the previous slice is the prior), until the nodule ends: nothing found,
a slice under a tenth of the largest one, a slice that grows again after shrinking, a slice much fainter than the
seed slice (a partial-volume cap), or a z-extent beyond what the in-plane size makes plausible.

Seeds follow ``autorad predict --center``: X = column, Y = row, Z = slice index (0-based, position order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from autorad.core.errors import InputError
from autorad.data.crop import CropBox
from autorad.segment.window import WINDOW_PX, click_window, net_input, paste_window, window_box

MIN_HINT_MM, MAX_HINT_MM = 2.0, 100.0
AIR_MAX_HU = -920.0  # no 3x3-mean pixel above this within AIR_RADIUS_MM of the seed: the seed lies in air
AIR_RADIUS_MM = 1.0
MAX_SCALE = 4  # a nodule wider than the window is segmented at 1/2, then 1/4 of the resolution
THRESHOLD = 0.5
HINT_LIMIT = 1.0  # with a diameter hint, the mask is kept within hint x HINT_LIMIT mm of the seed
MAX_SEED_DISTANCE_MM = 3.0  # a network part farther than this from the seed is not the clicked nodule
Z_EXTENT_FACTOR = 0.75  # 3D: stop beyond this x the largest in-plane diameter (+ one slice) from the seed slice
MIN_SLICE_PX = 2  # 3D: a neighbouring slice with fewer pixels ends the nodule
MIN_AREA_FRACTION = 0.1  # 3D: so does a slice smaller than this fraction of the largest slice so far
MIN_CONTRAST_HU = 30.0  # a nodule is denser than the 2 mm ring around it (median HU), as 99.8% of dev nodules are
RING_MM = 2.0
LUNG_HU = -850.0  # typical lung parenchyma
CAP_CONTRAST = 0.2  # 3D: a slice whose median HU is this faint (relative to the seed slice, above lung) ends it


@dataclass
class SegmentResult:
    """A click segmentation: ``mask`` has the input's shape; ``method`` says how it was made."""

    mask: np.ndarray
    method: str
    warnings: list[str] = field(default_factory=list)


def check_hint(diameter_hint_mm: float | None) -> float | None:
    """``None``, or a finite diameter in [2, 100] mm; anything else is an :class:`InputError`."""
    if diameter_hint_mm is None:
        return None
    try:
        d = float(diameter_hint_mm)
    except (TypeError, ValueError):
        raise InputError(f"--diameter-mm must be a number, got {diameter_hint_mm!r}") from None
    if not math.isfinite(d) or not MIN_HINT_MM <= d <= MAX_HINT_MM:
        raise InputError(f"--diameter-mm must be a finite number of mm between {MIN_HINT_MM:g} and "
                         f"{MAX_HINT_MM:g}, got {diameter_hint_mm!r}")
    return d


def _check_spacing(spacing: tuple[float, ...], n: int) -> tuple[float, ...]:
    s = tuple(float(v) for v in spacing)
    if len(s) != n or not all(math.isfinite(v) and v > 0 for v in s):
        raise InputError(f"the pixel spacing must be {n} positive finite numbers (mm), got {spacing!r}")
    return s


def check_seed_in_air(slice_hu: np.ndarray, seed_rc: tuple[int, int], spacing_rc: tuple[float, float],
                       where: str) -> None:
    r, c = seed_rc
    rr, rc = (max(1, int(math.ceil(AIR_RADIUS_MM / s))) for s in spacing_rc)
    patch = np.asarray(slice_hu[max(r - rr - 1, 0):r + rr + 2, max(c - rc - 1, 0):c + rc + 2], dtype=np.float32)
    if ndi.uniform_filter(patch, 3, mode="nearest").max() <= AIR_MAX_HU:
        raise InputError(f"the seed {where} lies in air (nothing above {AIR_MAX_HU:g} HU within {AIR_RADIUS_MM:g} mm):"
                         " click on the nodule")


def seed_from_mask(mask: np.ndarray) -> tuple[int, ...]:
    """The click a user would give for a mask: its centroid, or the mask pixel nearest to it (index order).

    For a 2D mask it returns (row, column); for 3D (slice, row, column). Raises ``ValueError`` on an empty mask.
    """
    m = np.asarray(mask, dtype=bool)
    idx = np.argwhere(m)
    if idx.size == 0:
        raise ValueError("empty mask: no seed")
    centre = idx.mean(axis=0)
    rounded = tuple(int(v) for v in np.round(centre))
    if m[rounded]:
        return rounded
    return tuple(int(v) for v in idx[np.argmin(((idx - centre) ** 2).sum(axis=1))])


def _part_at_seed(mask: np.ndarray, seed_rc: tuple[int, int], max_dist_px: float) -> np.ndarray:
    """The connected part of ``mask`` holding the seed, else the nearest one within ``max_dist_px``, else empty."""
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    lab = labels[seed_rc]
    if lab == 0:
        dist, (ri, ci) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        if dist[seed_rc] > max_dist_px:
            return np.zeros_like(mask)
        lab = labels[ri[seed_rc], ci[seed_rc]]
    return labels == lab


def _touches_window_edge(part: np.ndarray, box: CropBox) -> bool:
    """True when ``part`` reaches an edge of the window ``box`` that lies inside the slice (it may be cut)."""
    h, w = part.shape
    r0, c0, r1, c1 = box.r0, box.c0, box.r0 + box.size - 1, box.c0 + box.size - 1
    rows, cols = slice(max(r0, 0), r1 + 1), slice(max(c0, 0), c1 + 1)
    return (any(0 <= r < h and part[r, cols].any() for r in (r0, r1))
            or any(0 <= c < w and part[rows, c].any() for c in (c0, c1)))


def _stands_out(mask: np.ndarray, slice_hu: np.ndarray, spacing_rc: tuple[float, ...]) -> bool:
    """True when the mask's median HU exceeds that of the ring of :data:`RING_MM` around it by
    :data:`MIN_CONTRAST_HU` (a click in uniform lung or uniform soft tissue gives no such object)."""
    if not mask.any():
        return False
    n = max(1, int(round(RING_MM / min(spacing_rc[-2:]))))
    ring = ndi.binary_dilation(mask, iterations=n) & ~mask
    if not ring.any():
        return True
    return float(np.median(slice_hu[mask])) - float(np.median(slice_hu[ring])) >= MIN_CONTRAST_HU


def _disk(shape: tuple[int, ...], centre_rc: tuple[int, int], spacing_rc: tuple[float, ...],
          radius_mm: float) -> np.ndarray:
    """A (H, W) disk of ``radius_mm`` around ``centre_rc`` (the last two spacings are row and column)."""
    rows, cols = np.ogrid[:shape[-2], :shape[-1]]
    return ((rows - centre_rc[0]) * spacing_rc[-2]) ** 2 + ((cols - centre_rc[1]) * spacing_rc[-1]) ** 2 <= \
        radius_mm ** 2


class ClickSegmenter:
    """A trained click segmenter (a U-Net on square windows around the seed) with its 2D and 3D steps."""

    def __init__(self, net: Any, meta: dict[str, Any] | None = None, tta: bool = True) -> None:
        self.net = net.eval()
        self.tta = tta  # average over the 8 flips/rotations (False: the window as it is, for comparison)
        self.meta = dict(meta or {})
        self.method = str(self.meta.get("method", "unet-click"))
        self.window_px = int(self.meta.get("window_px", WINDOW_PX))

    # ------------------------------------------------------------------------------------------------ network
    def probability(self, slice_hu: np.ndarray, seed_rc: tuple[int, int], scale: int = 1) -> np.ndarray:
        """Nodule probability in the window of ``window_px * scale`` pixels centred on the seed.

        The probability is the mean over the window's 8 flips and rotations (test-time augmentation, the same 8
        as in training). With ``scale`` > 1 the window is averaged down by ``scale`` (so the network always sees
        ``window_px`` pixels, as in training) and the probability is interpolated back.
        """
        import torch

        size = self.window_px
        hu = click_window(slice_hu, seed_rc, size * scale)
        if scale > 1:
            hu = hu.reshape(size, scale, size, scale).mean(axis=(1, 3))
        x = net_input(hu)
        n_rot = 4 if self.tta else 1
        views = [np.rot90(x, k, axes=(1, 2)) for k in range(n_rot)]
        if self.tta:
            views += [v[:, :, ::-1] for v in views]  # the 8 flips/rotations of training, in one batch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 48x48 window gains nothing from threads, and loses a lot on a busy machine
        try:
            with torch.inference_mode():
                out = torch.sigmoid(self.net(torch.from_numpy(np.ascontiguousarray(np.stack(views)))))[:, 0].numpy()
        finally:
            torch.set_num_threads(threads)
        back = [np.rot90(out[k], -k) for k in range(n_rot)]
        if self.tta:
            back += [np.rot90(out[4 + k][:, ::-1], -k) for k in range(4)]
        prob = np.mean(back, axis=0)
        if scale > 1:
            prob = ndi.zoom(prob, scale, order=1, mode="nearest", grid_mode=True)
        return prob

    def _window_mask(self, slice_hu: np.ndarray, seed_rc: tuple[int, int], spacing_rc: tuple[float, float],
                     allowed: np.ndarray | None = None) -> np.ndarray:
        """The thresholded, seed-connected, hole-filled network mask on the whole slice.

        A nodule that reaches the window's edge is segmented again at half the resolution (up to
        :data:`MAX_SCALE`), so large nodules fit in the network's fixed window.
        """
        shape = slice_hu.shape
        max_dist = MAX_SEED_DISTANCE_MM / min(spacing_rc)
        scale = 1
        while True:
            box = window_box(seed_rc, self.window_px * scale)
            full = paste_window(self.probability(slice_hu, seed_rc, scale) >= THRESHOLD, box, shape)
            if allowed is not None:
                full &= allowed
            part = _part_at_seed(full, seed_rc, max_dist)
            if scale >= MAX_SCALE or not _touches_window_edge(part, box):
                return ndi.binary_fill_holes(part)
            scale *= 2

    # ------------------------------------------------------------------------------------------------ 2D
    def segment_2d(self, slice_hu: np.ndarray, spacing_rc_mm: tuple[float, float], seed_rc: tuple[int, int],
                   diameter_hint_mm: float | None = None) -> SegmentResult:
        """Segment the nodule under ``seed_rc`` (row, column) on one axial slice."""
        img = np.asarray(slice_hu)
        if img.ndim != 2:
            raise InputError(f"a slice must be a 2D array, got shape {img.shape}")
        spacing = _check_spacing(spacing_rc_mm, 2)
        hint = check_hint(diameter_hint_mm)
        r, c = (int(v) for v in seed_rc)
        if not (0 <= r < img.shape[0] and 0 <= c < img.shape[1]):
            raise InputError(f"the seed (row {r}, column {c}) lies outside the {img.shape[0]}x{img.shape[1]} slice")
        check_seed_in_air(img, (r, c), spacing, f"(row {r}, column {c})")  # type: ignore[arg-type]
        allowed = None if hint is None else _disk(img.shape, (r, c), spacing, HINT_LIMIT * hint)
        mask = self._window_mask(img, (r, c), spacing, allowed)  # type: ignore[arg-type]
        return self._finish(mask, img, spacing, hint, (r, c), f"(row {r}, column {c})")

    def _finish(self, mask: np.ndarray, slice_hu: np.ndarray, spacing: tuple[float, ...], hint: float | None,
                seed_rc: tuple[int, int], where: str) -> SegmentResult:
        warns: list[str] = []
        shape = slice_hu.shape
        if not _stands_out(mask, slice_hu, spacing):
            mask = np.zeros(shape, dtype=bool)
        if not mask.any():
            if hint is None:
                raise InputError(f"no nodule found at the seed {where}: click inside the nodule, or give "
                                 "--diameter-mm to draw a disk instead")
            warns.append(f"no nodule found at the seed {where}; the mask is a disk of the {hint:g} mm hint")
            return SegmentResult(_disk(shape, seed_rc, spacing, hint / 2.0), "disk-from-hint", warns)
        if hint is not None:
            d = 2.0 * math.sqrt(mask.sum() * spacing[-2] * spacing[-1] / math.pi)
            if not hint / 3.0 <= d <= hint * 1.5:
                warns.append(f"the segmented nodule's equivalent diameter ({d:.1f} mm) is far from the "
                             f"{hint:g} mm hint: check the seed")
        return SegmentResult(mask, self.method, warns)

    # ------------------------------------------------------------------------------------------------ 3D
    def segment_3d(self, image_hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                   seed_xyz: tuple[int, int, int], diameter_hint_mm: float | None = None) -> SegmentResult:
        """Segment the nodule under ``seed_xyz`` (column, row, slice index) in a (D, H, W) volume."""
        vol = np.asarray(image_hu)
        if vol.ndim != 3:
            raise InputError(f"the image must be a 3D (slices, rows, columns) array, got shape {vol.shape}")
        spacing = _check_spacing(spacing_zyx_mm, 3)
        hint = check_hint(diameter_hint_mm)
        x, y, z = (int(v) for v in seed_xyz)
        d, h, w = vol.shape
        if not (0 <= x < w and 0 <= y < h and 0 <= z < d):
            raise InputError(f"--center {x},{y},{z} lies outside the volume (X < {w}, Y < {h}, Z < {d})")
        where = f"--center {x},{y},{z}"
        inplane = spacing[1:]
        check_seed_in_air(vol[z], (y, x), inplane, where)  # type: ignore[arg-type]
        allowed = None if hint is None else _disk((h, w), (y, x), inplane, HINT_LIMIT * hint)
        first = self._window_mask(vol[z], (y, x), inplane, allowed)  # type: ignore[arg-type]
        res2d = self._finish(first, vol[z], inplane, hint, (y, x), where)
        mask = np.zeros(vol.shape, dtype=bool)
        mask[z] = res2d.mask
        if res2d.method != self.method:  # fell back to a disk on the seed slice
            return SegmentResult(mask, res2d.method, res2d.warnings)
        warns = list(res2d.warnings)
        for step in (1, -1):
            self._propagate(vol, mask, z, step, spacing, allowed)
        if mask[0].any() or mask[-1].any():
            warns.append("the segmented nodule reaches the first or last slice of the image: it may be cut")
        return SegmentResult(mask, self.method + "-3d", warns)

    def _propagate(self, vol: np.ndarray, mask: np.ndarray, z: int, step: int, spacing: tuple[float, ...],
                   allowed: np.ndarray | None) -> None:
        dz, inplane = spacing[0], spacing[1:]
        grow = ndi.generate_binary_structure(2, 1)
        grow_px = max(1, int(math.ceil(dz / min(inplane))))
        prev = mask[z]
        contrast_seed = max(float(np.median(vol[z][prev])) - LUNG_HU, 50.0)
        area_prev, shrinking = int(prev.sum()), False
        area_max = area_prev
        max_diam = 2.0 * math.sqrt(area_prev * inplane[0] * inplane[1] / math.pi)
        k = z + step
        while 0 <= k < vol.shape[0]:
            if abs(k - z) * dz > Z_EXTENT_FACTOR * max_diam + dz:
                break
            prior = ndi.binary_dilation(prev, grow, iterations=grow_px)
            if allowed is not None:
                prior &= allowed
            seed = seed_from_mask(prev)
            cur = self._window_mask(vol[k], seed, inplane, prior)  # type: ignore[arg-type]
            area = int(cur.sum())
            if area < max(MIN_SLICE_PX, MIN_AREA_FRACTION * area_max) or (shrinking and area > 1.2 * area_prev):
                break
            if float(np.median(vol[k][cur])) - LUNG_HU < CAP_CONTRAST * contrast_seed:
                break  # a faint partial-volume cap, which readers do not outline
            shrinking = shrinking or area < area_prev
            mask[k] = cur
            max_diam = max(max_diam, 2.0 * math.sqrt(area * inplane[0] * inplane[1] / math.pi))
            prev, area_prev, area_max = cur, area, max(area_max, area)
            k += step
