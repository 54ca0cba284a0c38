"""Builders of CTs with nonsense headers and of decompression bombs, shared by the CLI and the server tests.

Every builder writes small files (at most a few MB) quickly: the bombs are multi-member gzip files (or deflate streams
after a full flush) that repeat one compressed block of zeros, so a ~1 MB file decodes to more than 1 GiB.
"""

from __future__ import annotations

import gzip
import math
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from dicom_factory import make_ct_series, read_back

ZEROS = 1 << 24  # one repeated block: 16 MiB of zeros


def tweak(folder: Path, change: Callable[[int, object], None], **series_kw) -> Path:
    """A synthetic series in ``folder`` whose every slice ``i`` (position order) is edited by ``change(i, ds)``."""
    s = make_ct_series(folder, **series_kw)
    for i, f in enumerate(s.files):
        if f is None:
            continue
        ds = read_back(f)
        with warnings.catch_warnings():  # pydicom warns when writing the invalid DS values some cases need
            warnings.simplefilter("ignore")
            change(i, ds)
            ds.save_as(f)
    return s.folder


def set_raw(ds, keyword: str, text: str) -> None:
    """Set a DS/IS tag to a raw text that pydicom would refuse to write as a number ('nan', 'inf', '')."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    tag = tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, dictionary_VR(tag), text.encode("ascii"), is_undefined_length=False)


def nifti_header(path: Path, dims: tuple[int, int, int], spacing=(0.7, 0.7, 1.25), dtype=np.int16) -> bytes:
    """The header bytes (up to the voxels) of a NIfTI-1 file of ``dims`` (x, y, z) voxels, via SimpleITK."""
    import SimpleITK as sitk  # noqa: N813

    img = sitk.GetImageFromArray(np.zeros((2, 2, 2), dtype))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    raw = path.read_bytes()
    path.unlink()
    vox = int(struct.unpack_from("<f", raw, 108)[0])
    header = bytearray(raw[:vox])
    struct.pack_into("<4h", header, 40, 3, *dims)
    return bytes(header)


def _zero_members(n_bytes: int) -> bytes:
    block = gzip.compress(bytes(ZEROS), 9)
    full, rest = divmod(n_bytes, ZEROS)
    return block * full + (gzip.compress(bytes(rest), 9) if rest else b"")


def nifti_gz_bomb(path: Path, dims: tuple[int, int, int] = (1024, 1024, 520)) -> Path:
    """A .nii.gz of ~1 MB whose int16 voxels decode to math.prod(dims) * 2 bytes (default 1.02 GiB)."""
    header = nifti_header(path.with_name("tmp-header.nii"), dims)
    path.write_bytes(gzip.compress(header) + _zero_members(math.prod(dims) * 2))
    return path


def nifti_lying(path: Path, dims: tuple[int, int, int] = (1024, 1024, 520)) -> Path:
    """An uncompressed .nii whose header claims ``dims`` voxels but that holds 64 KiB of them."""
    path.write_bytes(nifti_header(path.with_name("tmp-header.nii"), dims) + bytes(1 << 16))
    return path


def nrrd_bomb(path: Path, sizes: tuple[int, int, int] = (1024, 1024, 520), encoding: str = "gzip") -> Path:
    """An NRRD of int16 ``sizes`` (x, y, z): gzip-encoded zeros (~1 MB), or raw with only 64 KiB of data."""
    head = (f"NRRD0004\ntype: short\ndimension: 3\nsizes: {sizes[0]} {sizes[1]} {sizes[2]}\n"
            "space: left-posterior-superior\nspace directions: (0.7,0,0) (0,0.7,0) (0,0,1.25)\n"
            f"kinds: domain domain domain\nendian: little\nencoding: {encoding}\nspace origin: (0,0,0)\n\n")
    body = _zero_members(math.prod(sizes) * 2) if encoding == "gzip" else bytes(1 << 16)
    path.write_bytes(head.encode() + body)
    return path


def deflated_dicom_bomb(folder: Path, inflated: int = 70 * ZEROS) -> Path:
    """A series folder holding one Deflated Explicit VR Little Endian CT slice whose dataset inflates to
    ``inflated`` bytes (default 1.1 GiB; the file is ~1 MB): a PixelData element of zeros far longer than its
    Rows x Columns."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    s = make_ct_series(folder, n_slices=1)
    f = s.files[0]
    ds = read_back(f)
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = c.compress(body.getvalue() + pixels) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(ZEROS)) + c.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every repeat
    assert inflated % ZEROS == 0
    stream = start + block * (inflated // ZEROS) + c.flush()
    f.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + stream)
    return s.folder
