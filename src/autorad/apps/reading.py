"""How a prediction is read: what the three classes mean and the model's measured quality beside its confidence.

One home for the words the clinician report (``autorad predict --report``) and the viewer (``/api/health``) show,
so that neither leads with a bare "malignant (99.6%)". Everything here reads plain dicts (a prediction's JSON and
``Predictor.describe()``) and tolerates missing keys: a metric that was not measured is said to be so.
"""

from __future__ import annotations

from typing import Any

NOT_MEASURED = "not measured"
CLASS_MEANINGS = {
    "benign": "the readers' median malignancy rating is below 3",
    "unsure": "the median rating is exactly 3: indeterminate, the readers themselves were unsure",
    "malignant": "the median rating is above 3",
}
CLASS_CONTEXT = ("The three classes are what LIDC-IDRI radiologists said, not pathology: the median of 3-4 "
                 "radiologists' malignancy ratings (1 to 5); below 3 is benign, 3 is unsure (indeterminate), "
                 "above 3 is malignant. One radiologist agrees with the others' median about half the time.")
NOT_A_DEVICE = "Research software, not a medical device: the prediction is not a diagnosis."
ECE_WORDS = ("calibration error (ECE): how far, on average, the stated confidence was from how often the model was "
             "right in cross-validation; 0 = confidence matches accuracy")


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN counts as not measured


def metric_text(cv: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    """A cross-validated metric as text (``"0.718"``), or ``"not measured"`` when absent."""
    v = _number((cv or {}).get(key))
    return NOT_MEASURED if v is None else f"{v:.{digits}f}"


def calibration_words(result: dict[str, Any]) -> str:
    """Whether the probabilities were calibrated, from the prediction's ``calibrated`` flag (or the model's)."""
    flag = result.get("calibrated", (result.get("model") or {}).get("calibrated"))
    if flag is True:
        return "calibrated"
    if flag is False:
        return "not calibrated"
    return "calibration not stated"


def ece_key(result: dict[str, Any]) -> str:
    """Which cross-validated ECE belongs beside this prediction's confidence: the one after temperature scaling
    (``ece_calibrated``) when the probabilities were scaled and it was measured, else the model's own (``ece``)."""
    cv = (result.get("model") or {}).get("cross_validation") or {}
    return "ece_calibrated" if result.get("calibrated") is True and _number(cv.get("ece_calibrated")) is not None \
        else "ece"


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline pieces for a prediction's JSON: class, confidence (%), calibrated or not, the model's CV
    accuracy and ECE (text; "not measured" when missing), the nodule count, and the context lines."""
    probs = result.get("probabilities") or {}
    cls = result.get("predicted_class") or (max(probs, key=probs.get) if probs else None)
    conf = _number(probs.get(cls)) if cls else None
    cv = (result.get("model") or {}).get("cross_validation") or {}
    n = cv.get("n")
    return {"predicted_class": cls, "confidence_pct": None if conf is None else round(100 * conf, 1),
            "calibration": calibration_words(result), "accuracy": metric_text(cv, "accuracy"),
            "ece": metric_text(cv, ece_key(result)), "macro_auc": metric_text(cv, "macro_auc"),
            "unsure_f1": metric_text(cv, "unsure_f1"), "n": n if isinstance(n, int) else None,
            "class_meaning": CLASS_MEANINGS.get(cls or "", ""), "context": CLASS_CONTEXT,
            "not_a_device": NOT_A_DEVICE}


def headline(result: dict[str, Any]) -> str:
    """One line: the class, its confidence, and the model's cross-validated ECE and accuracy beside it."""
    s = summary(result)
    conf = "confidence not given" if s["confidence_pct"] is None else f"{s['confidence_pct']:.1f}%"
    return (f"{s['predicted_class']}: model confidence {conf} ({s['calibration']}); this model's cross-validated "
            f"calibration error (ECE) {s['ece']}, accuracy {s['accuracy']}")


def reading_guide() -> dict[str, Any]:
    """The context the viewer shows beside every result (served in ``/api/health``)."""
    return {"context": CLASS_CONTEXT, "class_meanings": dict(CLASS_MEANINGS), "not_a_device": NOT_A_DEVICE,
            "ece": ECE_WORDS, "not_measured": NOT_MEASURED}
