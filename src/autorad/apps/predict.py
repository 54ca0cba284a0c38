"""``autorad predict``: nodules of new CTs -> class probabilities (and a report, the mask, DICOM SEG / SR).

One nodule: the CT as a DICOM series folder or a NIfTI/NRRD volume; the nodule as a mask with the image's
geometry (``--label N`` picks one label of a label map), or a centre click (voxel indices X = column, Y = row,
Z = slice in position order) that :mod:`autorad.segment` turns into a mask (``--diameter-mm`` is then a hint), or
``--disk`` with ``--diameter-mm`` for an explicitly drawn disk. Many nodules: ``--nodules nodules.csv`` (see
:func:`predict_batch`), with the model loaded once. Everything runs through :class:`autorad.apps.predictor.Predictor`,
which featurises exactly as training does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from autorad import CLASS_NAMES
from autorad.apps.nodule_input import check_diameter, parse_center
from autorad.apps.predictor import Prediction, Predictor, warn_stderr
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_text, write_parquet
from autorad.core.outputs import claim_output_files, prepare_output_dir, prepare_output_file, replaceable_dir
from autorad.pretrained import resolve_run

__all__ = ["check_file_names", "check_output", "load_predictor", "parse_center", "predict", "predict_batch",
           "read_nodules_csv"]

log = logging.getLogger(__name__)
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
    (:func:`autorad.core.outputs.prepare_output_file`: never an existing file autorad did not write, never an input)."""
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
                  series=dicom, overwrite=overwrite)
    return pred.result


def write_outputs(pred: Prediction, predictor: Predictor, report: Path | None = None, save_mask: Path | None = None,
                  dicom_seg: Path | None = None, dicom_sr: Path | None = None,
                  series: str | Path | None = None, overwrite: bool = False) -> None:
    """Write the outputs asked for and list them in ``pred.result["outputs"]``.

    They are claimed when written (:func:`autorad.core.outputs.claim_output_files`): all appear or none, and a file that
    appeared at one of the paths since the check is never replaced without ``overwrite``."""
    wanted = [(key, option, path) for key, option, path in (
        ("mask", "--save-mask", save_mask), ("dicom_seg", "--dicom-seg", dicom_seg),
        ("dicom_sr", "--dicom-sr", dicom_sr), ("report", "--report", report)) if path is not None]
    if not wanted:
        return
    with claim_output_files([(option, path) for _, option, path in wanted], overwrite=overwrite) as scratch:
        tmp = {key: t for (key, _, _), t in zip(wanted, scratch, strict=True)}
        if "mask" in tmp:
            save_mask_file(pred, tmp["mask"])
        if "dicom_seg" in tmp or "dicom_sr" in tmp:
            from autorad.apps.dicom_out import source_datasets, write_dicom_seg, write_dicom_sr

            sources, seg = source_datasets(series, pred), None
            if "dicom_seg" in tmp:
                seg = write_dicom_seg(pred, sources, tmp["dicom_seg"])
            if "dicom_sr" in tmp:
                write_dicom_sr(pred, sources, tmp["dicom_sr"], seg)
        if "report" in tmp:
            from autorad.apps.predict_report import write_prediction_report

            write_prediction_report(tmp["report"], pred, predictor)
    pred.result["outputs"] = {key: str(path) for key, _, path in wanted}


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
        row["line"] = i
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


def check_file_names(rows: list[dict[str, Any]], nodules: str | Path) -> None:
    """Each row's id must give its own JSON file name: ids that the file-name rule (:func:`safe_id`) or a
    case-insensitive disk would merge (``a b`` and ``a_b``, ``N1`` and ``n1``) are refused, naming their lines."""
    from autorad.data.dataset import safe_id

    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = safe_id(row["id"]).casefold()
        other = first.setdefault(key, row)
        if other is not row:
            raise InputError(f"--nodules {Path(nodules).name} lines {other['line']} and {row['line']}: ids "
                             f"{other['id']!r} and {row['id']!r} give the same file name nodules/"
                             f"{safe_id(other['id'])}.json; make the ids differ in letters or digits")


def row_error(row: dict[str, Any], stage: str, err: BaseException) -> str:
    """The table's error text for a row: the row id, a reason class and (for autorad's own refusals) the reason
    with every part of the row's paths, every file name of its CT folder and any other path replaced, so that no
    folder or file name (which may hold a patient's name) reaches the table."""
    from autorad.core.errors import AutoradError

    what = {"ct": "CT not usable", "nodule": "nodule not usable"}[stage]
    if not isinstance(err, AutoradError):
        return f"row {row['id']}: {what}: internal error ({type(err).__name__})"
    return f"row {row['id']}: {what}: {redact_paths(str(err), row)}"


def redact_paths(text: str, row: dict[str, Any]) -> str:
    """``text`` with the row's CT and mask paths, their parts, the CT folder's file names and any other path-like
    word replaced by ``<ct>``, ``<mask>``, ``<file>`` or ``<path>``."""
    import contextlib
    import os
    import re

    names: dict[str, str] = {}
    for key in ("ct", "mask"):
        if row.get(key) is None:
            continue
        given = Path(row[key])
        for form in (given, given.absolute(), given.resolve()):
            names[str(form)] = f"<{key}>"
            names.update({part: "<path>" for part in form.parts if part not in (os.sep, ".", "..")})
        names[given.name] = f"<{key}>"
        if given.is_dir():
            with contextlib.suppress(OSError):
                names.update(dict.fromkeys(os.listdir(given), "<file>"))
    for name in sorted(names, key=len, reverse=True):
        if name:
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", names[name], text)
    return re.sub(r"[^\s'\"()]*[/\\][^\s'\"()]*", "<path>", text)


def predict_batch(run: str | Path, nodules: str | Path, out: str | Path, overwrite: bool = False) -> pd.DataFrame:
    """Predict every nodule of a nodules CSV with the model loaded once; write ``out/predictions.csv``,
    ``out/predictions.parquet`` and ``out/nodules/<id>.json``.

    A nodule that fails (air click, empty mask, a CT that cannot be read, even an internal error of one row) gets
    its error in the table (:func:`row_error`: no path) and no JSON; the others go on. ``out`` is built in a
    temporary folder beside it and renamed into place at the end, so it is complete or absent.

    Args:
        run: a run folder or a built-in model's name.
        nodules: the nodules CSV (see :func:`read_nodules_csv`).
        out: the output folder (new or empty, or an earlier one with ``overwrite``).
        overwrite: let ``out`` replace an earlier autorad predictions folder.

    Returns:
        The predictions table (one row per nodule, its error if it failed).
    """
    from autorad.core.io import atomic_dir
    from autorad.core.outputs import write_marker
    from autorad.data.dataset import safe_id
    from autorad.data.dicom import load_ct, load_image_file, load_series

    run = resolve_run(run)
    rows = read_nodules_csv(nodules)
    check_file_names(rows, nodules)
    inputs = (run, nodules, *{r["ct"] for r in rows}, *{r["mask"] for r in rows if r["mask"] is not None})
    prepare_output_dir(out, kind="predictions", inputs=inputs, overwrite=overwrite, create=False)
    predictor = load_predictor(run)
    table, last_ct, vol = [], None, None
    with atomic_dir(Path(out), replace=replaceable_dir(overwrite)) as tmp:
        write_marker(tmp, "predictions")
        (tmp / "nodules").mkdir()
        for row in rows:
            stage = "ct"
            try:
                if row["ct"] != last_ct:  # consecutive nodules of one CT load it once
                    loader = {"dicom": load_series, "image": load_image_file}.get(row["ct_kind"], load_ct)
                    vol, last_ct = None, None
                    vol = loader(row["ct"])
                    last_ct = row["ct"]
                stage = "nodule"
                result = predictor.predict(vol, mask=row["mask"], center=row["center"], diameter_mm=row["diameter_mm"],
                                           label=row["label"], disk=row["disk"]).to_dict()
            except Exception as err:  # one bad row (even a bug on its data) never ends the batch
                if not isinstance(err, InputError):
                    log.warning("row %s: %s (%s)", row["id"], "unexpected error", type(err).__name__)
                table.append(_table_row(row["id"], None, row_error(row, stage, err)))
                continue
            result = {"id": row["id"], **result}
            atomic_write_text(tmp / "nodules" / f"{safe_id(row['id'])}.json", json.dumps(result, indent=2) + "\n")
            table.append(_table_row(row["id"], result, None))
        df = pd.DataFrame(table, columns=TABLE_COLUMNS)
        atomic_write_text(tmp / "predictions.csv", df.to_csv(index=False))
        write_parquet(df, tmp / "predictions.parquet")
    if predictor.model_warnings():
        warn_stderr({"warnings": predictor.model_warnings()})
    return df
