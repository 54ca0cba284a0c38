"""The clinician report's wording (``autorad predict --report``): the class with its confidence and, beside it, the
model's cross-validated ECE and accuracy, whether the probabilities are calibrated, what the classes mean, "not
measured" for what the run does not hold; never a bare "Most likely class: X (99.6%)"."""

from __future__ import annotations

import copy
import dataclasses
import html as html_lib
import json
import re

import pytest
from dicom_factory import make_ct_series

from autorad.apps.predict_report import render
from autorad.apps.predictor import Predictor
from autorad.apps.reading import CLASS_CONTEXT, NOT_MEASURED, headline, summary
from autorad.data.dicom import load_series


@pytest.fixture(scope="module")
def case(phantom_logreg_run, tmp_path_factory):
    """The phantom run's Predictor and its prediction on a synthetic series (a disk mask: no segmenter needed)."""
    s = make_ct_series(tmp_path_factory.mktemp("ct") / "series", radius_mm=6.0)
    r, c = s.center_rc
    predictor = Predictor.from_run(phantom_logreg_run)
    pred = predictor.predict_case(load_series(s.folder), center=(int(round(c)), int(round(r)), s.center_index),
                                  diameter_mm=8.0, disk=True)
    return predictor, pred, json.loads((phantom_logreg_run / "metrics.json").read_text())


def _with(pred, **changes):
    """A copy of the prediction whose result has ``changes`` (None removes a key) in its model description."""
    res = copy.deepcopy(pred.result)
    for k, v in changes.items():
        if k == "calibrated":
            res["calibrated"] = v
        elif v is None:
            res["model"].pop(k, None)
        else:
            res["model"][k] = v
    return dataclasses.replace(pred, result=res)


def _text(html: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_report_puts_ece_and_accuracy_beside_the_confidence(case):
    predictor, pred, metrics = case
    text = _text(render(pred, predictor))
    res = pred.result
    cls, p = res["predicted_class"], res["probabilities"][res["predicted_class"]]
    assert "Most likely class" not in text
    head = re.search(rf"{cls} : model confidence {100 * p:.1f}% \(([^)]*)\)", text)
    assert head, text[:800]
    assert head.group(1) == "not calibrated"  # the phantom run has no temperature
    after = text[head.end():head.end() + 400]  # ECE and accuracy follow the confidence, with the CV metrics' values
    assert f"calibration error (ECE) {metrics['pooled']['ece']:.3f}" in after
    assert f"accuracy {metrics['pooled']['accuracy']:.3f}" in after and f"on {metrics['n']} nodules" in after
    assert CLASS_CONTEXT in text and "not a medical device" in text
    assert "(0-based slice index" in text and "lowest position first" in text  # the index is labelled


def test_report_says_not_measured_and_calibrated(case):
    predictor, pred, _ = case
    bare = _text(render(_with(pred, cross_validation=None), predictor))
    assert f"calibration error (ECE) {NOT_MEASURED}" in bare and f"accuracy {NOT_MEASURED}" in bare
    partial = _with(pred, cross_validation={"accuracy": 0.7, "n": 12})  # e.g. an older run without ECE
    text = _text(render(partial, predictor))
    assert f"calibration error (ECE) {NOT_MEASURED}" in text and "accuracy 0.700" in text
    assert "(calibrated)" in _text(render(_with(pred, calibrated=True), predictor))
    assert "(not calibrated)" in _text(render(_with(pred, calibrated=False), predictor))


def test_calibrated_probabilities_get_the_ece_after_scaling(case):
    predictor, pred, _ = case
    cv = {**pred.result["model"]["cross_validation"], "ece": 0.0321, "ece_calibrated": 0.0242}
    text = _text(render(_with(pred, calibrated=True, cross_validation=cv), predictor))
    assert "calibration error (ECE) 0.024" in text and "after temperature scaling" in text
    raw = _text(render(_with(pred, calibrated=False, cross_validation=cv), predictor))
    assert "calibration error (ECE) 0.032" in raw and "after temperature scaling" not in raw


def test_headline_and_summary_tolerate_missing_keys():
    assert summary({})["ece"] == NOT_MEASURED and summary({})["confidence_pct"] is None
    line = headline({"probabilities": {"benign": 0.1, "unsure": 0.2, "malignant": 0.7}, "calibrated": True,
                     "model": {"cross_validation": {"ece": 0.0512, "accuracy": float("nan")}}})
    assert line == ("malignant: model confidence 70.0% (calibrated); this model's cross-validated calibration "
                    f"error (ECE) 0.051, accuracy {NOT_MEASURED}")
