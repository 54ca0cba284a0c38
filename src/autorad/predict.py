"""``autorad predict``: nodules of new CTs -> class probabilities (and a report, the mask, DICOM SEG / SR).

One nodule: the CT as a DICOM series folder or a NIfTI/NRRD volume; the nodule as a mask with the image's
geometry (``--label N`` picks one label of a label map), or a centre click (voxel indices X = column, Y = row,
Z = slice in position order) that :mod:`autorad.segment` turns into a mask (``--diameter-mm`` is then a hint), or
``--disk`` with ``--diameter-mm`` for an explicitly drawn disk. Many nodules: ``--nodules nodules.csv`` (see
:func:`predict_batch`), with the model loaded once. Everything runs through :class:`autorad.predictor.Predictor`,
which featurises exactly as training does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from autorad import CLASS_NAMES
from autorad.errors import InputError
from autorad.io import atomic_write_text, write_parquet
from autorad.nodule_input import check_diameter, parse_center
from autorad.outputs import prepare_output_dir, prepare_output_file, record_output_file
from autorad.predictor import Prediction, Predictor, warn_stderr
from autorad.pretrained import resolve_run

__all__ = ["check_output", "load_predictor", "parse_center", "predict", "predict_batch", "read_nodules_csv"]

_PREDICTORS: dict[Path, Predictor] = {}


def load_predictor(run: str | Path) -> Predictor:
    """The run's :class:`Predictor`, loaded once per process."""
    key = resolve_run(run).resolve()
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor.from_run(key)
    return _PREDICTORS[key]


def check_output(path: str | Path | None, option: str, suffixes: tuple[str, ...], inputs: tuple = (),
                 overwrite: bool = False) -> Path | None:
    """Check an output file before any computation: the suffix, then autorad's output rules
    (:func:`autorad.outputs.prepare_output_file`: never an existing file autorad did not write, never an input)."""
    if path is None:
        return None
    checked = prepare_output_file(path, inputs=inputs, overwrite=overwrite, option=option)
    if not Path(path).name.lower().endswith(suffixes):
        raise InputError(f"{option} {Path(path).name}: the file name must end with {' or '.join(suffixes)}")
    return checked


def predict(run: str | Path, dicom: str | Path | None = None, image: str | Path | None = None,
            mask: str | Path | None = None, center: tuple[int, int, int] | None = None,
            diameter_mm: float | None = None, label: int | None = None, disk: bool = False,
            report: str | Path | None = None, save_mask: str | Path | None = None,
            dicom_seg: str | Path | None = None, dicom_sr: str | Path | None = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Predict benign / unsure / malignant for one nodule of a new CT, given as files (as ``autorad predict``).

    Output files are checked before anything is loaded (:func:`check_output`); ``overwrite`` lets them replace
    files autorad wrote earlier, never anything else.

    Args:
        run: a run folder or a built-in model's name (``"lidc"``).
        dicom: a folder holding one CT series (or give ``image``).
        image: a NIfTI / NRRD volume in HU.
        mask: a mask file with the CT's geometry (or give ``center``).
        center: ``(x, y, z)`` voxel indices of a click inside the nodule; the nodule is segmented from it.
        diameter_mm: with ``center``: a size hint, or the disk's diameter with ``disk``.
        label: with a label-map ``mask``: the nodule's label.
        disk: with ``center`` and ``diameter_mm``: a drawn disk instead of the segmentation.
        report: write the HTML report here.
        save_mask: write the mask used here (.nii.gz / .nii / .nrrd).
        dicom_seg: with ``dicom``: write a DICOM SEG here.
        dicom_sr: with ``dicom``: write a DICOM SR here.
        overwrite: let outputs replace files autorad wrote earlier.

    Returns:
        The JSON dict ``autorad predict`` prints (for numpy arrays use :meth:`autorad.Predictor.predict`).
    """
    if (dicom is None) == (image is None):
        raise InputError("give the CT as --dicom SERIES_DIR or --image FILE (one of them)")
    if (dicom_seg or dicom_sr) and dicom is None:
        raise InputError("--dicom-seg / --dicom-sr need the CT as a DICOM series (--dicom), to reference it")
    check_diameter(diameter_mm)
    run = resolve_run(run)
    inputs = (run, dicom, image, mask)
    report = check_output(report, "--report", (".html", ".htm"), inputs, overwrite)
    save_mask = check_output(save_mask, "--save-mask", (".nii", ".nii.gz", ".nrrd"), inputs, overwrite)
    dicom_seg = check_output(dicom_seg, "--dicom-seg", (".dcm",), inputs, overwrite)
    dicom_sr = check_output(dicom_sr, "--dicom-sr", (".dcm",), inputs, overwrite)
    if len({Path(p).resolve() for p in (report, save_mask, dicom_seg, dicom_sr) if p is not None}) < \
            sum(p is not None for p in (report, save_mask, dicom_seg, dicom_sr)):
        raise InputError("two outputs (--report, --save-mask, --dicom-seg, --dicom-sr) name the same file")
    from autorad.data.dicom import load_image_file, load_series

    predictor = load_predictor(run)
    ct = load_series(dicom) if dicom is not None else load_image_file(image)  # type: ignore[arg-type]
    pred = predictor.predict_case(ct, mask=mask, center=center, diameter_mm=diameter_mm, label=label, disk=disk)
    write_outputs(pred, predictor, report=report, save_mask=save_mask, dicom_seg=dicom_seg, dicom_sr=dicom_sr,
                  series=dicom)
    return pred.result


def write_outputs(pred: Prediction, predictor: Predictor, report: Path | None = None, save_mask: Path | None = None,
                  dicom_seg: Path | None = None, dicom_sr: Path | None = None,
                  series: str | Path | None = None) -> None:
    """Write the outputs asked for and list them in ``pred.result["outputs"]``."""
    outputs = {}
    if save_mask is not None:
        save_mask_file(pred, save_mask)
        outputs["mask"] = str(save_mask)
    if dicom_seg is not None or dicom_sr is not None:
        from autorad.dicom_out import source_datasets, write_dicom_seg, write_dicom_sr

        sources, seg = source_datasets(series, pred), None
        if dicom_seg is not None:
            seg = write_dicom_seg(pred, sources, dicom_seg)
            outputs["dicom_seg"] = str(dicom_seg)
        if dicom_sr is not None:
            write_dicom_sr(pred, sources, dicom_sr, seg)
            outputs["dicom_sr"] = str(dicom_sr)
    if report is not None:
        from autorad.predict_report import write_prediction_report

        write_prediction_report(report, pred, predictor)
        outputs["report"] = str(report)
    for written in outputs.values():
        record_output_file(written)
    if outputs:
        pred.result["outputs"] = outputs


def save_mask_file(pred: Prediction, path: Path) -> None:
    """The mask used, as NIfTI / NRRD with the CT's geometry (:func:`autorad.data.dicom.write_mask_file`)."""
    from autorad.data.dicom import write_mask_file

    write_mask_file(pred.nodule_mask.mask, pred.volume, path)


# ------------------------------------------------------------------------------------------------ batch
CT_COLUMNS = ("ct", "dicom", "image")
TABLE_COLUMNS = ["id", "predicted_class", *(f"prob_{c}" for c in CLASS_NAMES), "mask_method", "mask_volume_mm3",
                 "slice_index", "slice_z_mm", "equivalent_diameter_mm", "radiomics_status", "n_warnings",
                 "warnings", "error", "seconds"]


def read_nodules_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a nodules CSV, checked and resolved (relative paths against the CSV's folder).

    Columns: ``ct`` (or ``dicom`` / ``image``: a series folder or NIfTI/NRRD file) and either ``center``
    (``X,Y,Z``) or ``mask`` (a file); optional ``id``, ``diameter_mm`` (hint, or the disk's diameter with
    ``disk`` = 1), ``label``. Raises :class:`InputError` naming the row for anything wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--nodules file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise InputError(f"--nodules {path.name}: cannot read it as CSV ({type(err).__name__})") from None
    cols = [c for c in CT_COLUMNS if c in df.columns]
    if len(cols) != 1 or not ({"center", "mask"} & set(df.columns)):
        raise InputError(f"--nodules {path.name} needs one CT column (ct, dicom or image) and a center or mask "
                         f"column; it has {', '.join(df.columns)}")
    unknown = set(df.columns) - {*CT_COLUMNS, "center", "mask", "id", "diameter_mm", "label", "disk"}
    if unknown:
        raise InputError(f"--nodules {path.name}: unknown column(s) {', '.join(sorted(unknown))}")
    if df.empty:
        raise InputError(f"--nodules {path.name} lists no nodule")
    rows, seen = [], set()
    for i, r in enumerate(df.to_dict("records"), start=2):  # line numbers as a spreadsheet shows them
        where = f"--nodules {path.name} line {i}"

        def cell(name: str, r: dict = r) -> str:
            return str(r.get(name, "") or "").strip()

        rid = cell("id") or f"nodule-{i - 1}"
        if rid in seen:
            raise InputError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        ct = cell(cols[0])
        if not ct:
            raise InputError(f"{where}: no CT given")
        ct_path = (path.parent / ct) if not Path(ct).is_absolute() else Path(ct)
        if not ct_path.exists():
            raise InputError(f"{where}: CT not found: {ct}")
        center, mask = cell("center"), cell("mask")
        if bool(center) == bool(mask):
            raise InputError(f"{where}: give either a center or a mask")
        row: dict[str, Any] = {"id": rid, "ct": ct_path, "ct_kind": cols[0], "mask": None, "center": None,
                               "diameter_mm": None, "label": None, "disk": cell("disk").lower() in ("1", "true", "yes")}
        try:
            if center:
                row["center"] = parse_center(center)
            if mask:
                row["mask"] = (path.parent / mask) if not Path(mask).is_absolute() else Path(mask)
                if not row["mask"].is_file():
                    raise InputError(f"mask not found: {mask}")
            if cell("diameter_mm"):
                row["diameter_mm"] = check_diameter(cell("diameter_mm"))
            if cell("label"):
                row["label"] = int(cell("label"))
        except (InputError, ValueError) as err:
            raise InputError(f"{where}: {err}") from None
        rows.append(row)
    return rows


def _table_row(rid: str, result: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TABLE_COLUMNS)
    row.update(id=rid, error=error or "")
    if result is not None:
        row.update({f"prob_{c}": result["probabilities"][c] for c in CLASS_NAMES})
        row.update(predicted_class=result["predicted_class"], mask_method=result["mask"]["method"],
                   mask_volume_mm3=result["mask"]["volume_mm3"], slice_index=result["slice_index"],
                   slice_z_mm=result["slice_z_mm"], equivalent_diameter_mm=result["equivalent_diameter_mm"],
                   radiomics_status=result["radiomics_status"], n_warnings=len(result["warnings"]),
                   warnings="; ".join(result["warnings"]), seconds=result["seconds"])
    return row


def predict_batch(run: str | Path, nodules: str | Path, out: str | Path, overwrite: bool = False) -> pd.DataFrame:
    """Predict every nodule of a nodules CSV with the model loaded once; write ``out/predictions.csv``,
    ``out/predictions.parquet`` and ``out/nodules/<id>.json``. A nodule that fails (air click, empty mask ...)
    gets its error in the table and no JSON; the others go on.

    Args:
        run: a run folder or a built-in model's name.
        nodules: the nodules CSV (see :func:`read_nodules_csv`).
        out: the output folder (new or empty, or an earlier one with ``overwrite``).
        overwrite: let ``out`` replace an earlier autorad predictions folder.

    Returns:
        The predictions table (one row per nodule, its error if it failed).
    """
    from autorad.data.dataset import safe_id
    from autorad.data.dicom import load_ct, load_image_file, load_series

    run = resolve_run(run)
    rows = read_nodules_csv(nodules)
    inputs = (run, nodules, *{r["ct"] for r in rows}, *{r["mask"] for r in rows if r["mask"] is not None})
    prepare_output_dir(out, kind="predictions", inputs=inputs, overwrite=overwrite, create=False)
    predictor = load_predictor(run)
    out = prepare_output_dir(out, kind="predictions", inputs=inputs, overwrite=overwrite)
    (out / "nodules").mkdir(parents=True, exist_ok=True)
    table, last_ct, vol = [], None, None
    for row in rows:
        try:
            if row["ct"] != last_ct:  # consecutive nodules of one CT load it once
                loader = {"dicom": load_series, "image": load_image_file}.get(row["ct_kind"], load_ct)
                vol, last_ct = loader(row["ct"]), None
                last_ct = row["ct"]
            result = predictor.predict(vol, mask=row["mask"], center=row["center"], diameter_mm=row["diameter_mm"],
                                       label=row["label"], disk=row["disk"]).to_dict()
        except InputError as err:
            table.append(_table_row(row["id"], None, str(err)))
            continue
        result = {"id": row["id"], **result}
        atomic_write_text(out / "nodules" / f"{safe_id(row['id'])}.json", json.dumps(result, indent=2) + "\n")
        table.append(_table_row(row["id"], result, None))
    df = pd.DataFrame(table, columns=TABLE_COLUMNS)
    atomic_write_text(out / "predictions.csv", df.to_csv(index=False))
    write_parquet(df, out / "predictions.parquet")
    if predictor.model_warnings():
        warn_stderr({"warnings": predictor.model_warnings()})
    return df
