"""Synthetic CT DICOM series and LIDC reader XML for tests (no network, no real patient data).

Everything is written with pydicom (explicit VR little endian, uncompressed, unless asked otherwise). The
series carries *identifying* tags on purpose (``IDENTIFIERS``: PatientName, PatientBirthDate, InstitutionName,
AccessionNumber, StudyDate and a non-LIDC PatientID) so privacy tests can scan outputs for those strings.

Main entry points::

    from dicom_factory import IDENTIFIERS, ReaderSpec, make_ct_series, make_lidc_case, write_lidc_xml

    s = make_ct_series(tmp_path / "series")                 # 12 slices of 64x64, one round nodule
    s = make_ct_series(tmp_path / "s", missing_slices=[4])  # a gap in z (the volume still loads)
    series, xml = make_lidc_case(tmp_path / "root", readers=[ReaderSpec(4), ReaderSpec(5), ReaderSpec(4)])
    # -> root/<patient>/<study uid>/<series uid>/*.dcm plus the reader XML beside the slices

Knobs of :func:`make_ct_series` for broken inputs (each alone gives one problem):

==============================  ===========================================================================
``modality="MR"``               non-CT modality
``mixed_series=2``              2 extra files of another SeriesInstanceUID in the same folder
``truncate_slice=i``            slice i's file cut to 60% of its bytes (pixel data truncated)
``corrupt_slice=i``             slice i's file replaced by random bytes (still named ``.dcm``)
``duplicate_slice=i``           one more file at slice i's position (new SOP instance UID)
``missing_slices=[i, ...]``     slices not written (gaps in z); the XML still refers to them
``unsorted_names=True``         file names in shuffled order (position order != name order)
``transfer_syntax="rle"``       RLE Lossless compressed (pydicom decodes it natively)
``transfer_syntax="jpegls1"``   JPEG Lossless SV1 with a dummy frame (needs gdcm/pylibjpeg to decode)
``drop_pixel_spacing=True``     no PixelSpacing in any file
``odd_spacing_slice=i``         slice i has a different PixelSpacing
``odd_size_slice=i``            slice i has a different number of rows/columns
``rescale=(0.5, -1024)``        other RescaleSlope / RescaleIntercept (non-integral slope -> float32 HU)
==============================  ===========================================================================

The volume is air (-1000 HU) with a soft-tissue body (40 HU), two lungs (-850 HU) and one sphere of 30 HU
(``radius_mm``, centred at ``center_rc`` on the middle slice) inside the right lung. Stored pixels are
(HU - intercept) / slope, with RescaleSlope 1 / RescaleIntercept -1024 by default. Do not use
``pydicom.data.get_testdata_file`` in tests (it tries the network).
"""

from __future__ import annotations

import random
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLosslessSV1, RLELossless, generate_uid

IDENTIFIERS: dict[str, str] = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientBirthDate": "19480229",
    "InstitutionName": "Saint Example Teaching Hospital",
    "AccessionNumber": "ACC5550123",
    "StudyDate": "20190312",
    "PatientID": "MRN-00417733",
}


@dataclass
class SyntheticSeries:
    """What :func:`make_ct_series` wrote. Lists are over the *full* series (missing slices included)."""

    folder: Path
    files: list[Path | None]  # per slice in position order; None for a missing slice
    z_positions: list[float]
    sop_uids: list[str]
    series_uid: str
    study_uid: str
    patient_id: str
    size: int
    pixel_spacing: float
    slice_spacing: float
    center_rc: tuple[float, float]  # nodule centre (row, column) in pixels
    center_index: int  # slice index of the nodule centre
    radius_mm: float
    hu: np.ndarray  # (D, H, W) int16 HU of the full series

    @property
    def present(self) -> list[int]:
        return [i for i, f in enumerate(self.files) if f is not None]


def phantom_volume(n_slices: int, size: int, pixel_spacing: float, slice_spacing: float,
                   center_rc: tuple[float, float], center_index: int, radius_mm: float) -> np.ndarray:
    """The synthetic chest as int16 HU, shape (n_slices, size, size)."""
    rr, cc = np.mgrid[0:size, 0:size].astype(float)
    img = np.full((size, size), -1000.0)
    img[((rr - size / 2) / (0.45 * size)) ** 2 + ((cc - size / 2) / (0.48 * size)) ** 2 <= 1] = 40
    for side in (-1, 1):
        img[((rr - size / 2) / (0.33 * size)) ** 2 + ((cc - size / 2 - side * 0.22 * size) / (0.17 * size)) ** 2
            <= 1] = -850
    vol = np.repeat(img[None], n_slices, axis=0)
    zz = (np.arange(n_slices) - center_index)[:, None, None] * slice_spacing
    d2 = ((rr - center_rc[0]) * pixel_spacing) ** 2 + ((cc - center_rc[1]) * pixel_spacing) ** 2
    vol[d2[None] + zz ** 2 <= radius_mm ** 2] = 30
    return vol.astype(np.int16)


def _base_dataset(*, series_uid: str, study_uid: str, sop_uid: str, patient_id: str, modality: str,
                  z: float, index: int, rows: int, cols: int, pixel_spacing: float | None,
                  slice_spacing: float, identifiers: dict[str, str]) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame-of-reference"])  # one per series
    ds.Modality = modality
    ds.PatientName = identifiers["PatientName"]
    ds.PatientID = patient_id
    ds.PatientBirthDate = identifiers["PatientBirthDate"]
    ds.InstitutionName = identifiers["InstitutionName"]
    ds.AccessionNumber = identifiers["AccessionNumber"]
    ds.StudyDate = identifiers["StudyDate"]
    ds.SeriesDate = identifiers["StudyDate"]
    ds.Manufacturer = "SYNTHETIC"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-0.5 * cols * (pixel_spacing or 1.0), -0.5 * rows * (pixel_spacing or 1.0), z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if pixel_spacing is not None:
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.SliceThickness = slice_spacing
    ds.SliceLocation = z
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    return ds


def make_ct_series(folder: str | Path, *, n_slices: int = 12, size: int = 64, pixel_spacing: float = 0.7,
                   slice_spacing: float = 1.25, z0: float = -100.0, radius_mm: float = 4.0,
                   center_rc: tuple[float, float] | None = None, patient_id: str | None = None,
                   identifiers: dict[str, str] | None = None, modality: str = "CT", mixed_series: int = 0,
                   truncate_slice: int | None = None, corrupt_slice: int | None = None,
                   duplicate_slice: int | None = None, missing_slices: Sequence[int] = (),
                   unsorted_names: bool = False, transfer_syntax: str | None = None,
                   drop_pixel_spacing: bool = False, odd_spacing_slice: int | None = None,
                   odd_size_slice: int | None = None, rescale: tuple[float, float] = (1.0, -1024.0),
                   seed: int = 0) -> SyntheticSeries:
    """Write one synthetic CT series into ``folder`` (created) and describe it; see the module docstring."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = dict(IDENTIFIERS if identifiers is None else identifiers)
    pid = ids["PatientID"] if patient_id is None else patient_id
    rng = random.Random(seed)
    center = center_rc or (size / 2 - 2.0, size / 2 - 0.22 * size + 1.0)
    c_idx = n_slices // 2
    hu = phantom_volume(n_slices, size, pixel_spacing, slice_spacing, center, c_idx, radius_mm)
    series_uid, study_uid = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(n_slices)]
    zs = [z0 + i * slice_spacing for i in range(n_slices)]
    order = list(range(n_slices + 8))
    if unsorted_names:
        rng.shuffle(order)
    files: list[Path | None] = []

    def write(ds: Dataset, name: str, pixels: np.ndarray) -> Path:
        stored = np.round((pixels.astype(np.float64) - rescale[1]) / rescale[0]).astype(np.int16)
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        if transfer_syntax == "rle":
            ds.PixelData = stored.tobytes()
            ds.compress(RLELossless, stored)
        elif transfer_syntax == "jpegls1":
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(64) + b"\xff\xd9"])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        elif transfer_syntax is not None:
            raise ValueError(f"unknown transfer_syntax {transfer_syntax!r}")
        else:
            ds.PixelData = stored.tobytes()
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        return path

    for i in range(n_slices):
        if i in missing_slices:
            files.append(None)
            continue
        rows = cols = size + 2 if i == odd_size_slice else size
        ps = None if drop_pixel_spacing else (pixel_spacing * 1.1 if i == odd_spacing_slice else pixel_spacing)
        ds = _base_dataset(series_uid=series_uid, study_uid=study_uid, sop_uid=sops[i], patient_id=pid,
                           modality=modality, z=zs[i], index=i, rows=rows, cols=cols, pixel_spacing=ps,
                           slice_spacing=slice_spacing, identifiers=ids)
        pix = hu[i] if rows == size else np.full((rows, cols), -1000, dtype=np.int16)
        files.append(write(ds, f"img{order[i]:04d}.dcm", pix))

    extra = 0
    if duplicate_slice is not None:
        ds = _base_dataset(series_uid=series_uid, study_uid=study_uid, sop_uid=generate_uid(), patient_id=pid,
                           modality=modality, z=zs[duplicate_slice], index=n_slices, rows=size, cols=size,
                           pixel_spacing=pixel_spacing, slice_spacing=slice_spacing, identifiers=ids)
        write(ds, f"img{order[n_slices + extra]:04d}.dcm", hu[duplicate_slice])
        extra += 1
    if mixed_series:
        other_series = generate_uid()
        for j in range(mixed_series):
            ds = _base_dataset(series_uid=other_series, study_uid=study_uid, sop_uid=generate_uid(),
                               patient_id=pid, modality=modality, z=zs[0] + 0.5 + j, index=j, rows=size,
                               cols=size, pixel_spacing=pixel_spacing, slice_spacing=slice_spacing,
                               identifiers=ids)
            write(ds, f"img{order[n_slices + extra]:04d}.dcm", hu[0])
            extra += 1
    if truncate_slice is not None:
        p = files[truncate_slice]
        assert p is not None
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * 0.6)])
    if corrupt_slice is not None:
        p = files[corrupt_slice]
        assert p is not None
        p.write_bytes(bytes(rng.getrandbits(8) for _ in range(3000)))
    return SyntheticSeries(folder=folder, files=files, z_positions=zs, sop_uids=sops, series_uid=series_uid,
                           study_uid=study_uid, patient_id=pid, size=size, pixel_spacing=pixel_spacing,
                           slice_spacing=slice_spacing, center_rc=center, center_index=c_idx,
                           radius_mm=radius_mm, hu=hu)


# ------------------------------------------------------------------------------------------ reader XML


@dataclass
class ReaderSpec:
    """One synthetic reader: ratings and how their outline deviates from the true sphere."""

    malignancy: int = 4
    radius_scale: float = 1.0  # outline radius = radius_scale x true radius on each slice
    shift_px: tuple[float, float] = (0.0, 0.0)  # (row, column) shift of the outline
    ratings: dict[str, int] = field(default_factory=lambda: {
        "subtlety": 4, "internalStructure": 1, "calcification": 6, "sphericity": 4, "margin": 4,
        "lobulation": 2, "spiculation": 1, "texture": 5})
    hole: bool = False  # add an exclusion outline (a small hole) on the middle slice


def disk_edge(center_rc: tuple[float, float], radius_px: float) -> list[tuple[int, int]]:
    """LIDC-style edge map of a disk: the pixels just outside it, ordered around it, as (x, y) = (col, row)."""
    r = int(np.ceil(radius_px)) + 2
    cr, cc = center_rc
    rr, cc_ = np.mgrid[int(cr) - r:int(cr) + r + 2, int(cc) - r:int(cc) + r + 2]
    inside = (rr - cr) ** 2 + (cc_ - cc) ** 2 <= radius_px ** 2
    pad = np.pad(inside, 1)
    near = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
    edge = near & ~inside
    ys, xs = rr[edge], cc_[edge]
    ang = np.arctan2(ys - cr, xs - cc)
    order = np.argsort(ang, kind="stable")
    return [(int(xs[i]), int(ys[i])) for i in order]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def write_lidc_xml(path: str | Path, series: SyntheticSeries, readers: Sequence[ReaderSpec],
                   small_nodule: bool = True, non_nodule: bool = True) -> Path:
    """Write an LIDC ``LidcReadMessage`` XML: one reading session per reader outlining the synthetic nodule.

    Each session also gets a nodule under 3 mm (no characteristics) and a nonNodule mark when asked, which a
    parser must ignore. Outlines refer to the full series (also slices that were not written).
    """
    ET.register_namespace("", "http://www.nih.gov")
    ns = "{http://www.nih.gov}"
    root = ET.Element(f"{ns}LidcReadMessage", {"uid": generate_uid()})
    hdr = _sub(root, f"{ns}ResponseHeader")
    _sub(hdr, f"{ns}Version", "1.8.1")
    _sub(hdr, f"{ns}SeriesInstanceUid", series.series_uid)
    _sub(hdr, f"{ns}StudyInstanceUID", series.study_uid)
    for s_i, rd in enumerate(readers):
        sess = _sub(root, f"{ns}readingSession")
        _sub(sess, f"{ns}annotationVersion", "3.12")
        _sub(sess, f"{ns}servicingRadiologistID", f"reader{s_i}")
        nod = _sub(sess, f"{ns}unblindedReadNodule")
        _sub(nod, f"{ns}noduleID", f"Nodule {s_i:03d}")
        ch = _sub(nod, f"{ns}characteristics")
        for name, value in {**rd.ratings, "malignancy": rd.malignancy}.items():
            _sub(ch, f"{ns}{name}", str(value))
        for i, z in enumerate(series.z_positions):
            dz = (i - series.center_index) * series.slice_spacing
            r_mm2 = series.radius_mm ** 2 - dz ** 2
            if r_mm2 <= 0:
                continue
            r_px = rd.radius_scale * np.sqrt(r_mm2) / series.pixel_spacing
            if r_px < 1.0:
                continue
            center = (series.center_rc[0] + rd.shift_px[0], series.center_rc[1] + rd.shift_px[1])
            outlines = [(True, disk_edge(center, r_px))]
            if rd.hole and i == series.center_index and r_px > 4:
                outlines.append((False, disk_edge(center, 1.5)))
            for inclusion, pts in outlines:
                roi = _sub(nod, f"{ns}roi")
                _sub(roi, f"{ns}imageZposition", f"{z:.6f}")
                _sub(roi, f"{ns}imageSOP_UID", series.sop_uids[i])
                _sub(roi, f"{ns}inclusion", "TRUE" if inclusion else "FALSE")
                for x, y in pts:
                    em = _sub(roi, f"{ns}edgeMap")
                    _sub(em, f"{ns}xCoord", str(x))
                    _sub(em, f"{ns}yCoord", str(y))
        if small_nodule:
            small = _sub(sess, f"{ns}unblindedReadNodule")
            _sub(small, f"{ns}noduleID", f"small {s_i}")
            roi = _sub(small, f"{ns}roi")
            _sub(roi, f"{ns}imageZposition", f"{series.z_positions[1]:.6f}")
            _sub(roi, f"{ns}imageSOP_UID", series.sop_uids[1])
            _sub(roi, f"{ns}inclusion", "TRUE")
            em = _sub(roi, f"{ns}edgeMap")
            _sub(em, f"{ns}xCoord", str(series.size // 2 + 12))
            _sub(em, f"{ns}yCoord", str(series.size // 2))
        if non_nodule:
            nn = _sub(sess, f"{ns}nonNodule")
            _sub(nn, f"{ns}nonNoduleID", f"non {s_i}")
            _sub(nn, f"{ns}imageZposition", f"{series.z_positions[2]:.6f}")
            _sub(nn, f"{ns}imageSOP_UID", series.sop_uids[2])
            locus = _sub(nn, f"{ns}locus")
            _sub(locus, f"{ns}xCoord", "10")
            _sub(locus, f"{ns}yCoord", "10")
    path = Path(path)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def make_lidc_case(root: str | Path, readers: Sequence[ReaderSpec] = (ReaderSpec(4), ReaderSpec(5),
                                                                      ReaderSpec(4)),
                   patient_id: str = "LIDC-IDRI-9001", xml_name: str = "001.xml",
                   **series_kwargs) -> tuple[SyntheticSeries, Path]:
    """Write ``root/<patient>/<study uid>/<series uid>/*.dcm`` plus the reader XML beside the slices.

    ``patient_id`` is used both as the folder name and the DICOM PatientID; pass an identified one (e.g.
    ``IDENTIFIERS["PatientID"]``) for privacy tests. Extra keyword arguments go to :func:`make_ct_series`.
    """
    root = Path(root)
    tmp = root / patient_id / "_tmp_series"
    s = make_ct_series(tmp, patient_id=patient_id, **series_kwargs)
    final = root / patient_id / s.study_uid / s.series_uid
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp), str(final))
    s.files = [final / f.name if f is not None else None for f in s.files]
    s.folder = final
    xml = write_lidc_xml(final / xml_name, s, readers)
    return s, xml


def read_back(path: str | Path) -> Dataset:
    """Read one written file (for tests that tweak a tag after writing)."""
    return pydicom.dcmread(path)
