"""``autorad segment``: segment one nodule of a CT from a click and write the mask (NIfTI with the CT's geometry).

Everything the command needs is checked before segmenting: the output path (a NIfTI/NRRD name; an existing file
only with ``--overwrite`` and only if autorad wrote it, see :mod:`autorad.core.outputs`), the seed and the hint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from autorad.core.errors import InputError
from autorad.segment.core import check_hint


def segment(center: tuple[int, int, int], out: str | Path, dicom: str | Path | None = None,
            image: str | Path | None = None, diameter_mm: float | None = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Segment the nodule at ``center`` (X=column, Y=row, Z=slice index) and write the mask to ``out``.

    Returns a summary (no identifiers): mask file, method, warnings, voxel count, volume, slice extent, the
    middle slice and its equivalent diameter.

    Args:
        center: ``(x, y, z)`` voxel indices of the click.
        out: the mask file to write (.nii.gz, .nii or .nrrd).
        dicom: a folder holding one CT series (or give ``image``).
        image: a NIfTI / NRRD volume in HU.
        diameter_mm: an optional size hint (2-100 mm).
        overwrite: let ``out`` replace a file autorad wrote earlier.
    """
    from autorad.core.outputs import claim_output_files, prepare_output_file
    from autorad.data.crop import equivalent_diameter_mm
    from autorad.data.dicom import MASK_WRITE_SUFFIXES, load_image_file, load_series, write_mask_file
    from autorad.data.geometry import middle_slice_index as middle_slice  # the one middle-slice rule
    from autorad.segment import segment_click

    if (dicom is None) == (image is None):
        raise InputError("give the CT as --dicom SERIES_DIR or --image FILE (one of them)")
    if not str(out).lower().endswith(MASK_WRITE_SUFFIXES):
        raise InputError(f"--out {out} must end in .nii.gz, .nii or .nrrd")
    out_path = prepare_output_file(out, inputs=(dicom, image), overwrite=overwrite, option="--out")
    check_hint(diameter_mm)
    vol = load_series(dicom) if dicom is not None else load_image_file(image)  # type: ignore[arg-type]
    res = segment_click(vol.hu, vol.spacing_mm, center, diameter_mm)
    warnings = list(res.warnings)
    if vol.gaps:
        warnings.append(f"the series has {len(vol.gaps)} gap(s) in z (missing slices); the 3D mask does not "
                        "cross them reliably")
    with claim_output_files([("--out", out_path)], overwrite=overwrite) as (tmp,):
        write_mask_file(res.mask, vol, tmp)
    slices = np.flatnonzero(res.mask.any(axis=(1, 2)))
    mid = middle_slice(res.mask)
    voxel_mm3 = math.prod(vol.spacing_mm)
    return {
        "mask": str(out_path), "method": res.method, "warnings": warnings,
        "voxels": int(res.mask.sum()), "volume_mm3": round(float(res.mask.sum()) * voxel_mm3, 2),
        "slices": [int(slices[0]), int(slices[-1])],
        "z_mm": [round(float(vol.z_positions[slices[0]]), 3), round(float(vol.z_positions[slices[-1]]), 3)],
        "middle_slice": mid,
        "middle_slice_equivalent_diameter_mm": round(
            equivalent_diameter_mm(res.mask[mid], (vol.spacing_mm[1], vol.spacing_mm[2])), 3),
    }
