"""Write the sample CT that ships with autorad: LIDC-IDRI-0001's nodule, cropped from the shared DICOM sample.

    python docs/scripts/make_sample_ct.py [--src $AUTORAD_SHARED_DATA/lidc_dicom_sample] [--out src/autorad/samples]

Takes the 16 slices of the LIDC-IDRI-0001 series in the shared data (LIDC-IDRI, CC BY 3.0), crops each to a
192 x 192 pixel window around the nodule (its position in the patient, ImagePositionPatient, moves with the crop, so
the geometry stays true), keeps every other DICOM attribute, and writes them with the licence and attribution into
``OUT/lidc-idri-0001/``. The reader annotation XML is not copied. Run once; the output is committed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom

SAMPLE = "lidc-idri-0001"
CENTRE_COL_ROW = (314, 366)  # the consensus outline's centre on the full 512 x 512 slice (autorad's LIDC ingest)
SIZE = 192
OWN_FILE = re.compile(r"slice_\d{3}\.dcm|ATTRIBUTION\.txt")  # what this script writes into the sample folder


def crop_slice(src: Path, dst: Path, col0: int, row0: int) -> None:
    ds = pydicom.dcmread(src)
    px = ds.pixel_array[row0:row0 + SIZE, col0:col0 + SIZE]
    orient = np.array([float(v) for v in ds.ImageOrientationPatient])
    dy, dx = (float(v) for v in ds.PixelSpacing)  # DICOM: row spacing, then column spacing
    pos = np.array([float(v) for v in ds.ImagePositionPatient])
    pos = pos + orient[:3] * dx * col0 + orient[3:] * dy * row0
    ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
    ds.Rows, ds.Columns = px.shape
    ds.PixelData = np.ascontiguousarray(px).tobytes()
    ds.save_as(dst, enforce_file_format=True)


def main() -> int:
    shared = Path(os.environ.get("AUTORAD_SHARED_DATA", "../shared/data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=shared / "lidc_dicom_sample")
    ap.add_argument("--out", type=Path, default=Path("src/autorad/samples"))
    args = ap.parse_args()
    files = sorted((args.src / "LIDC-IDRI-0001").rglob("*.dcm"), key=lambda p: float(p.stem))
    out = args.out / SAMPLE
    ours = [p for p in out.glob("*") if OWN_FILE.fullmatch(p.name)] if out.is_dir() else []
    if out.is_symlink() or out.exists() and (not out.is_dir() or len(ours) != len(list(out.iterdir()))):
        print(f"make_sample_ct: error: --out {out} holds files this script did not write; remove them yourself or "
              "choose another folder", file=sys.stderr)
        return 2
    for p in ours:  # only this script's own files: slice_NNN.dcm and ATTRIBUTION.txt
        p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    col0, row0 = CENTRE_COL_ROW[0] - SIZE // 2, CENTRE_COL_ROW[1] - SIZE // 2
    for i, f in enumerate(files, 1):
        crop_slice(f, out / f"slice_{i:03d}.dcm", col0, row0)
    shutil.copy(args.src / "ATTRIBUTION.txt", out / "ATTRIBUTION.txt")
    print(f"wrote {len(files)} slices of {SIZE} x {SIZE} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
