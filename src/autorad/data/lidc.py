"""Source: LIDC-IDRI DICOM in the TCIA layout (``patient/study/series/*.dcm``), reader XML beside the slices.

For every series folder that holds an LIDC annotation XML, the readers' nodules (3 mm or more) are grouped
into physical nodules (pylidc's rule, see :mod:`autorad.data.consensus`), each reader's outlines are filled,
and the 50% consensus gives the nodule mask. The record holds the whole axial slice at the middle of the
consensus' z-extent (``slice_hu`` / ``slice_mask``), the padded 3D consensus sub-volume (``volume_hu`` /
``volume_mask``) and the readers' ratings. Nodule ids are ``<patient>-n<k>`` (k counts nodules per patient in
walk order, clusters ordered by z).

Skipped, with the reason: a symlink to a folder already read, a dangling symlink or a folder that cannot be
listed (symlinked folders are otherwise followed); a series without XML, whose XML does not parse or lists no
nodule of 3 mm or more, or that fails to load (mixed series, corrupt file ...); a nodule whose annotated slices
are missing from the (partial) series or cross a gap in it; a cluster with more than 4 annotations. A root with
no DICOM series at all is an :class:`InputError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autorad.core.errors import InputError
from autorad.data.consensus import CONSENSUS_LEVEL, cluster_outlines, consensus_mask, outline_mask
from autorad.data.dataset import NoduleRecord, Skip
from autorad.data.dicom import (
    CTVolume,
    _anon,
    _read_header,
    dicom_files,
    load_series,
    pseudonymize_patient_id,
)
from autorad.data.geometry import middle_slice_index, pixel_spacing_mm, subvolume_box
from autorad.data.labels import MAX_READERS
from autorad.data.lidc_xml import LidcAnnotations, ReaderNodule, parse_lidc_xml


@dataclass
class SeriesFolder:
    """A folder holding DICOM slices, and the annotation XML files beside them."""

    path: Path
    xml_files: list[Path]


def find_series_folders(root: str | Path) -> list[SeriesFolder]:
    """Every folder under ``root`` (itself included) that directly holds DICOM files, in sorted path order
    (symlinked folders followed, each real folder once; see :func:`walk_series_folders`)."""
    return walk_series_folders(root)[0]


def walk_series_folders(root: str | Path) -> tuple[list[SeriesFolder], list[tuple[Path, str]]]:
    """The series folders under ``root`` and the folders left out, each with the reason (for skipped.csv).

    Symlinked folders are followed (a patient folder linked in from another disk is read like the others); a
    symlink to a folder already read is left out as a duplicate, a dangling symlink and a folder that cannot be
    listed are left out, none silently. Hidden folders (``.name``) are not walked.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"LIDC root folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"not a folder: {root} (give the LIDC root holding patient/study/series folders)")
    found: list[SeriesFolder] = []
    left_out: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def unreadable(err: OSError) -> None:
        left_out.append((Path(err.filename or root), f"folder could not be listed ({type(err).__name__})"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        d = Path(dirpath)
        real = os.path.realpath(d)
        if real in seen:  # the same folder reached twice through a symlink (or a loop)
            dirnames[:] = []
            left_out.append((d, "symlink to a folder that is already read (duplicate left out)"))
            continue
        seen.add(real)
        # real folders before symlinks, so that a symlink, not the real folder, is the duplicate left out
        dirnames[:] = sorted((x for x in dirnames if not x.startswith(".")), key=lambda x: ((d / x).is_symlink(), x))
        for name in sorted(filenames):
            f = d / name
            if not name.startswith(".") and f.is_symlink() and not f.exists():
                left_out.append((f, "dangling symlink (its target is missing)"))
        if dicom_files(d):
            xmls = sorted(p for p in d.iterdir() if p.suffix.lower() == ".xml" and p.is_file()
                          and not p.name.startswith("."))
            found.append(SeriesFolder(d, xmls))
    return found, left_out


def _series_patient_id(folder: Path) -> str:
    """The pseudonymised patient id from the first readable DICOM header (for series-level skips)."""
    for p in dicom_files(folder)[:3]:
        try:
            ds = _read_header(p)
        except InputError:
            continue
        return pseudonymize_patient_id(ds.get("PatientID"), fallback=str(ds.get("SeriesInstanceUID", "")))
    return _anon("folder:" + folder.name)


def _fmt_z(values: list[float], n: int = 6) -> str:
    text = ", ".join(f"{v:g}" for v in values[:n])
    return text + (f" ... ({len(values)} in all)" if len(values) > n else "")


def _roi_slices(ann: ReaderNodule, vol: CTVolume, sop_index: dict[str, int]) -> tuple[list[int], list[float]]:
    """Series slice index of each outline (by SOP instance UID, else by z), and the z of those not found."""
    idx, missing = [], []
    for roi in ann.rois:
        i = sop_index.get(roi.sop_uid)
        if i is None:
            i = vol.slice_index(roi.z_mm)
        if i is None:
            missing.append(roi.z_mm)
            i = -1
        idx.append(i)
    return idx, missing


def _nodule_record(nodule_id: str, anns: list[ReaderNodule], vol: CTVolume,
                   sop_index: dict[str, int]) -> NoduleRecord | Skip:
    pid = vol.patient_id
    if len(anns) > MAX_READERS:
        return Skip(nodule_id, pid, f"{len(anns)} annotations grouped as one nodule (LIDC has at most "
                                    f"{MAX_READERS} readers): nodules too close to separate automatically")
    slices, missing = [], []
    for ann in anns:
        idx, miss = _roi_slices(ann, vol, sop_index)
        slices.append(idx)
        missing.extend(miss)
    if missing:
        needed = sorted({r.z_mm for a in anns for r in a.rois})
        miss = sorted(set(missing))
        zs = vol.z_positions
        return Skip(nodule_id, pid, f"{len(miss)} of the nodule's {len(needed)} annotated slices are missing "
                                    f"from the series (z = {_fmt_z(miss)} mm; the series holds {len(zs)} "
                                    f"slices, z {zs.min():g} to {zs.max():g} mm)")
    k_lo = min(min(s) for s in slices)
    k_hi = max(max(s) for s in slices)
    gaps = vol.gaps_between(float(vol.z_positions[k_lo]), float(vol.z_positions[k_hi]))
    if gaps:
        a, b = gaps[0]
        return Skip(nodule_id, pid, f"slices missing inside the nodule's z-range: the series jumps from "
                                    f"z {a:g} to {b:g} mm")
    pts = np.concatenate([r.xy for a in anns for r in a.rois])  # x = column, y = row
    c_lo, r_lo = pts.min(axis=0)
    c_hi, r_hi = pts.max(axis=0)
    depth, height, width = vol.hu.shape
    if r_lo < 0 or c_lo < 0 or r_hi >= height or c_hi >= width:
        return Skip(nodule_id, pid, f"outline points fall outside the {height}x{width} image")

    shape = (k_hi - k_lo + 1, r_hi - r_lo + 1, c_hi - c_lo + 1)
    origin = (k_lo, int(r_lo), int(c_lo))
    masks = [outline_mask([(k, r.inclusion, r.xy[:, ::-1]) for k, r in zip(idx, a.rois, strict=True)],
                          shape, origin) for a, idx in zip(anns, slices, strict=True)]
    cons = consensus_mask(masks, CONSENSUS_LEVEL)
    full = np.zeros(vol.hu.shape, dtype=bool)
    full[k_lo:k_hi + 1, r_lo:r_hi + 1, c_lo:c_hi + 1] = cons
    if cons.any():
        ks, rs, cs = np.nonzero(full)
    else:  # no voxel reaches 50%: keep the annotated extent (write_dataset skips an empty consensus)
        ks, rs, cs = np.array([k_lo, k_hi]), np.array([r_lo, r_hi]), np.array([c_lo, c_hi])
    k_mid = middle_slice_index(full) if cons.any() else (k_lo + k_hi) // 2
    box = subvolume_box((int(ks.min()), int(rs.min()), int(cs.min())), (int(ks.max()), int(rs.max()), int(cs.max())),
                        vol.hu.shape, vol.gap_between_slices)
    ratings = np.stack([a.ratings for a in anns]).astype(np.int16)
    return NoduleRecord(
        nodule_id=nodule_id, patient_id=pid, series_uid=vol.series_uid, ratings=ratings,
        slice_hu=vol.hu[k_mid].copy(), slice_mask=full[k_mid].copy(),
        pixel_spacing_mm=pixel_spacing_mm(vol.spacing_mm[1], vol.spacing_mm[2]),
        slice_thickness_mm=float(vol.slice_thickness_mm),
        z_mm=float(vol.z_positions[k_mid]),
        volume_hu=vol.hu[box].copy(), volume_mask=full[box].copy(),
        volume_spacing_mm=tuple(float(s) for s in vol.spacing_mm),  # type: ignore[arg-type]
        extra={"manufacturer": vol.manufacturer, "n_annotations": len(anns),
               "consensus_slices": int(ks.max() - ks.min() + 1) if cons.any() else 0})


def _annotation_points(ann: ReaderNodule, vol: CTVolume) -> np.ndarray:
    """Outline points as (row, column, slice index) with the slice index counted in slice spacings from z=0.

    Differences equal pylidc's index differences on a complete, evenly spaced series, also when this series
    holds only part of the slices.
    """
    xyz = ann.points_xyz()
    return np.c_[xyz[:, 1], xyz[:, 0], np.round(xyz[:, 2] / vol.spacing_mm[0])]


def nodules_of_series(vol: CTVolume, ann: LidcAnnotations,
                      first_number: int = 1) -> Iterator[NoduleRecord | Skip]:
    """Cluster one series' annotations into nodules and yield a record (or a skip) per nodule."""
    sop_index = {uid: i for i, uid in enumerate(vol.sop_uids) if uid}
    tol = vol.slice_thickness_mm if np.isfinite(vol.slice_thickness_mm) else vol.spacing_mm[0]
    clusters = cluster_outlines([_annotation_points(a, vol) for a in ann.nodules], tol)
    for n, cl in enumerate(clusters, start=first_number):
        yield _nodule_record(f"{vol.patient_id}-n{n}", [ann.nodules[i] for i in cl], vol, sop_index)


def _read_annotations(xml_files: list[Path]) -> LidcAnnotations:
    parts = [parse_lidc_xml(p) for p in xml_files]
    merged = LidcAnnotations(series_uid=parts[0].series_uid)
    for part in parts:
        offset = merged.n_sessions
        for nod in part.nodules:
            nod.session += offset
            merged.nodules.append(nod)
        merged.n_sessions += part.n_sessions
        merged.n_small_nodules += part.n_small_nodules
        merged.n_non_nodules += part.n_non_nodules
    return merged


def iter_lidc(root: str | Path, limit: int | None = None) -> Iterator[NoduleRecord | Skip]:
    """Walk an LIDC-IDRI DICOM root and yield one :class:`NoduleRecord` (or :class:`Skip`) per nodule.

    ``limit`` stops after that many nodule records. Raises :class:`InputError` at once (before the first
    record is asked for) when the root is missing or holds no DICOM series; problems of one series are yielded
    as a :class:`Skip` of that series.
    """
    folders, left_out = walk_series_folders(root)
    if not folders:
        raise InputError(f"no DICOM series (folders with *.dcm files) found under {root}")
    return _iter_folders(folders, limit, left_out)


def _iter_folders(folders: list[SeriesFolder], limit: int | None,
                  left_out: list[tuple[Path, str]] = ()) -> Iterator[NoduleRecord | Skip]:
    for path, reason in left_out:  # the folder's name may be a patient's: only its pseudonym is kept
        pid = _anon("folder:" + path.name)
        yield Skip(f"{pid}-folder", pid, reason)
    n_records = 0
    per_patient: dict[str, int] = {}
    series_count: dict[str, int] = {}
    for sf in folders:
        pid = _series_patient_id(sf.path)
        series_count[pid] = series_count.get(pid, 0) + 1
        series_id = f"{pid}-series{series_count[pid]}"
        if not sf.xml_files:
            yield Skip(series_id, pid, "series has no LIDC annotation XML beside its slices")
            continue
        try:
            ann = _read_annotations(sf.xml_files)
            vol = load_series(sf.path) if ann.nodules else None  # the pixels only when there is a nodule
        except InputError as err:
            yield Skip(series_id, pid, f"series skipped: {err}")
            continue
        if vol is None:
            yield Skip(series_id, pid, f"annotation XML lists no nodule of 3 mm or more "
                                       f"({ann.n_small_nodules} marks of smaller nodules and "
                                       f"{ann.n_non_nodules} non-nodule marks ignored)")
            continue
        first = per_patient.get(vol.patient_id, 0) + 1
        for rec in nodules_of_series(vol, ann, first_number=first):
            per_patient[vol.patient_id] = per_patient.get(vol.patient_id, 0) + 1
            yield rec
            if isinstance(rec, NoduleRecord):
                n_records += 1
                if limit is not None and n_records >= limit:
                    return
