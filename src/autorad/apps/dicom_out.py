"""DICOM outputs for PACS: the nodule mask as DICOM SEG and the prediction as a TID 1500 measurement report (SR).

Both are written with highdicom from the source series' own files, so they reference it (SOP instance UIDs of
the slices, Frame of Reference) and carry its patient and study modules, as DICOM requires of objects that go back
into the same archive. **These two files therefore hold the patient's identifiers**; every other autorad output
stays free of them (see docs/predict.md).

The SR's measurement group holds, for the nodule: the mask volume (mm3, SCT "Volume"), the three class
probabilities and the predicted class (codes of the private scheme ``99AUTORAD``; DICOM has no standard code for
the LIDC benign / unsure / malignant classes). With a SEG written alongside, the group is a TID 1411 volumetric ROI
referencing the segment; otherwise a TID 1501 group referencing the nodule's middle slice.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from autorad import CLASS_NAMES, __version__
from autorad.apps.predictor import Prediction
from autorad.core.errors import InputError
from autorad.core.io import atomic_write_bytes

SCHEME = "99AUTORAD"
SCHEME_NAME = "autorad private codes"
SERIES_NUMBER_SEG = 9701
SERIES_NUMBER_SR = 9702
# Type 2 attributes of the patient and study modules (present, possibly empty) that highdicom copies from the
# source: some archives (and de-identified sets) drop them, so missing ones are added empty, never invented.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _code(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


def source_datasets(series: str | Path, pred: Prediction) -> list[Any]:
    """The series' DICOM datasets in the volume's slice order (matched by SOP instance UID)."""
    return read_sources(series, pred.volume.sop_uids)


def read_sources(series: str | Path, sop_uids: list[str], headers_only: bool = False) -> list[Any]:
    """The DICOM datasets of ``series`` in the order of ``sop_uids`` (a volume's slices), with the type 2 patient
    and study attributes present; ``headers_only`` skips the pixel data (enough for SEG and SR, which the viewer
    builds after the uploaded files are gone)."""
    import pydicom

    from autorad.data.dicom import dicom_files

    by_uid = {}
    for f in dicom_files(series):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, stop_before_pixels=headers_only)
        for kw in TYPE2_COPIED:
            if kw not in ds:
                setattr(ds, kw, "")
        by_uid[str(ds.SOPInstanceUID)] = ds
    try:
        return [by_uid[u] for u in sop_uids]
    except KeyError:
        raise InputError(f"the DICOM series {Path(series).name} changed since it was read") from None


def _algorithm() -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name="autorad", version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence)


def _write(ds: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())


def build_seg(pred: Prediction, sources: list[Any]) -> Any:
    """The DICOM SEG dataset of the prediction's mask (binary, one segment 'nodule')."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    method = pred.nodule_mask.method
    algo_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL if method == "given" else \
        hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule, algorithm_type=algo_type,
        algorithm_identification=None if method == "given" else _algorithm(),
        tracking_uid=hd.UID(), tracking_id="autorad nodule")
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pred.nodule_mask.mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[desc],
        series_instance_uid=hd.UID(), series_number=SERIES_NUMBER_SEG, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="autorad", manufacturer_model_name="autorad", software_versions=__version__,
        device_serial_number="none", series_description=f"autorad nodule mask ({method})")


def write_dicom_seg(pred: Prediction, sources: list[Any], path: Path) -> Any:
    """Write the mask as DICOM SEG referencing the source slices (:func:`source_datasets`); returns the dataset."""
    seg = build_seg(pred, sources)
    _write(seg, path)
    return seg


def build_sr(pred: Prediction, sources: list[Any], seg: Any | None = None) -> Any:
    """The TID 1500 measurement report of the prediction (see the module docstring)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    res = pred.result
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="autorad", model_name=f"autorad {__version__} run {res['model']['run']}"))
    context = hd.sr.ObservationContext(observer_device_context=observer)
    ucum_one = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Volume, value=float(res["mask"]["volume_mm3"]),
                          unit=hd.sr.CodedConcept(value="mm3", scheme_designator="UCUM", meaning="cubic millimeter"),
                          algorithm_id=hd.sr.AlgorithmIdentification(name="autorad", version=__version__)),
        *[hd.sr.Measurement(name=_code(f"p-{c}", f"Probability of class {c}"), value=float(res["probabilities"][c]),
                            unit=ucum_one, algorithm_id=hd.sr.AlgorithmIdentification(name="autorad",
                                                                                      version=__version__))
          for c in CLASS_NAMES]]
    evaluation = [hd.sr.QualitativeEvaluation(name=_code("class", "LIDC malignancy class (median reader rating)"),
                                              value=_code(res["predicted_class"], res["predicted_class"]))]
    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="autorad nodule")
    common = {"tracking_identifier": tracking, "finding_type": codes.SCT.Nodule, "measurements": measurements,
              "qualitative_evaluations": evaluation,
              "algorithm_id": hd.sr.AlgorithmIdentification(name="autorad", version=__version__)}
    if seg is not None:
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=1,
                source_series=hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID)), **common)
    else:
        middle = sources[pred.nodule.slice_index]
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(middle)], **common)
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=[group])
    evidence = list(sources) + ([seg] if seg is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER_SR,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="autorad", is_complete=True, is_final=False,
        series_description="autorad nodule prediction (research software, not a diagnosis)")


def write_dicom_sr(pred: Prediction, sources: list[Any], path: Path, seg: Any | None = None) -> Any:
    """Write the measurement report referencing the source slices (and ``seg``, written in the same call)."""
    sr = build_sr(pred, sources, seg)
    _write(sr, path)
    return sr
