"""The numpy-first Python API: ``autorad.Predictor.load(...).predict(hu, mask=..., spacing_mm=...)`` on a small
trained run installed as the built-in model: the same probabilities ``evaluate`` gives, batch forms, refusals as
``InputError``, docstrings, a lazy ``import autorad``, and the docs page's examples executed."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import autorad
from autorad import CLASS_NAMES
from autorad.core.errors import InputError
from autorad.data.dataset import Dataset

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture()
def predictor(builtin_lidc):
    return autorad.Predictor.load("lidc")


@pytest.fixture()
def nodules(phantom_logreg_run):
    ds = Dataset(phantom_logreg_run.parent / "dataset")
    return ds, [(nid, ds.arrays(nid), float(ds.row(nid)["pixel_spacing_mm"])) for nid in ds.nodule_ids[:4]]


def test_dataset_nodules_as_numpy_get_the_evaluate_probabilities(predictor, nodules, phantom_logreg_run, tmp_path):
    from autorad.evaluate.apply import evaluate

    ds, rows = nodules
    ev = pd.read_parquet(evaluate("lidc", ds.path, tmp_path / "ev") / "predictions.parquet").set_index("nodule_id")
    for nid, arrays, ps in rows:
        want = ev.loc[nid, [f"prob_{c}" for c in CLASS_NAMES]].to_numpy(dtype=float)
        r = predictor.predict(arrays["slice_hu"], mask=arrays["slice_mask"], spacing_mm=(ps, ps))
        np.testing.assert_allclose(r.probabilities, want, atol=1e-6)
        assert r.classes_ == CLASS_NAMES and r.predicted_class == CLASS_NAMES[int(np.argmax(want))]
        assert r.mask.shape == arrays["slice_hu"].shape and r.mask.dtype == bool
        assert r.probabilities_by_class == {c: float(v) for c, v in zip(CLASS_NAMES, r.probabilities, strict=True)}
        d = r.to_dict()
        assert d["mask"]["method"] == "given" and d["slice_z_mm"] is None and d["mask"]["volume_mm3"] is None
        assert d["probabilities"] == {c: round(float(v), 6) for c, v in zip(CLASS_NAMES, r.probabilities, strict=True)}
        d["warnings"].append("changed")
        assert "changed" not in r.to_dict()["warnings"]  # to_dict gives a copy
        # the same slice inside a 3D volume (mask on its middle slice only): the same 2D features
        vol = np.stack([arrays["slice_hu"]] * 3)
        vmask = np.zeros(vol.shape, dtype=bool)
        vmask[1] = arrays["slice_mask"]
        r3 = predictor.predict(vol, mask=vmask, spacing_mm=(1.25, ps, ps))
        np.testing.assert_allclose(r3.probabilities, want, atol=1e-6)
        assert r3.mask.shape == vol.shape and r3.to_dict()["slice_index"] == 1


def test_batch_forms_equal_one_by_one(predictor, nodules):
    _, rows = nodules
    items = [(a["slice_hu"], a["slice_mask"], (ps, ps)) for _, a, ps in rows]
    single = np.stack([predictor.predict(hu, mask=m, spacing_mm=s).probabilities for hu, m, s in items])
    many = predictor.predict_many(items)
    assert len(many) == len(items)
    np.testing.assert_allclose(np.stack([r.probabilities for r in many]), single, atol=1e-12)
    proba = predictor.predict_proba([{"image": hu, "mask": m, "spacing_mm": s} for hu, m, s in items])
    assert proba.shape == (len(items), 3)
    np.testing.assert_allclose(proba, single, atol=1e-12)
    with pytest.raises(InputError, match="item 1: spacing_mm is missing"):
        predictor.predict_many([items[0], items[1][:2]])
    with pytest.raises(InputError, match="item 0: expected"):
        predictor.predict_many([items[0][0]])


@pytest.mark.parametrize(("make", "message"), [
    (lambda hu, m: dict(image=hu[None, None], mask=m, spacing_mm=(1, 1)), "2D slice .* or a 3D volume"),
    (lambda hu, m: dict(image=hu, mask=m[:-1], spacing_mm=(1, 1)), "mask shape"),
    (lambda hu, m: dict(image=np.where(m, np.nan, hu.astype(float)), mask=m, spacing_mm=(1, 1)), "NaN or infinite"),
    (lambda hu, m: dict(image=hu, mask=m), "spacing_mm is missing"),
    (lambda hu, m: dict(image=hu, mask=m, spacing_mm=(1, 1, 1)), "3 value"),
    (lambda hu, m: dict(image=hu, mask=m, spacing_mm=(0.7, -1)), "finite and > 0"),
    (lambda hu, m: dict(image=hu, mask=m, spacing_mm="0.7"), "3 value|must be numbers"),
    (lambda hu, m: dict(image=hu.tolist(), mask=m, spacing_mm=(1, 1)), "numpy array, a CT path"),
    (lambda hu, m: dict(image=hu.astype(float) * 1000, mask=m, spacing_mm=(1, 1)), "outside -32768"),
    (lambda hu, m: dict(image=m, mask=m, spacing_mm=(1, 1)), "must hold numbers"),
    (lambda hu, m: dict(image=hu, mask="mask.nii.gz", spacing_mm=(1, 1)), "for a 2D slice, mask must be"),
    (lambda hu, m: dict(image=hu, center=(1, 2, 3), spacing_mm=(1, 1)), "center must be \\(x, y\\)"),
    (lambda hu, m: dict(image=np.stack([hu] * 3), center=(1, 2), spacing_mm=(1, 1, 1)), "center must be"),
    (lambda hu, m: dict(image=hu, mask=np.zeros_like(m), spacing_mm=(1, 1)), "empty"),
    (lambda hu, m: dict(image=hu, mask=m, spacing_mm=(1, 1), center=(3, 3)), "either as --mask or as --center"),
])
def test_bad_input_is_an_input_error_saying_what(predictor, nodules, make, message):
    _, rows = nodules
    arrays = rows[0][1]
    kwargs = make(arrays["slice_hu"], arrays["slice_mask"])
    with pytest.raises(InputError, match=message):
        predictor.predict(kwargs.pop("image"), **kwargs)


def test_predictor_load_and_lazy_package_export(builtin_lidc, phantom_logreg_run):
    import autorad.apps.api
    from autorad.apps.predictor import Predictor

    assert autorad.Predictor is Predictor and autorad.apps.api.Predictor is Predictor
    assert Predictor.load("lidc").run_dir == builtin_lidc
    assert Predictor.from_run(phantom_logreg_run).run_dir == phantom_logreg_run
    code = "import sys, autorad; print('autorad.apps.predictor' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]  # import autorad stays fast: nothing heavy until Predictor is used
    with pytest.raises(AttributeError):
        autorad.NoSuchThing  # noqa: B018


def test_every_api_function_and_predictor_method_documents_args_and_returns():
    import autorad.apps.api as api
    from autorad.apps.predictor import PredictionResult, Predictor

    missing = []
    for name in api.__all__:
        obj = getattr(api, name)
        returns = inspect.isfunction(obj) and inspect.signature(obj).return_annotation not in (None, "None")
        if returns and "Returns" not in (obj.__doc__ or ""):
            missing.append(name)
        if inspect.isfunction(obj) and inspect.signature(obj).parameters and "Args" not in (obj.__doc__ or ""):
            missing.append(name)
    for cls in (Predictor, PredictionResult):
        for name, member in vars(cls).items():
            func = member.__func__ if isinstance(member, classmethod) else member
            if name.startswith("_") or not inspect.isfunction(func):
                continue
            doc = func.__doc__ or ""
            params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
            if "Returns" not in doc or (params and "Args" not in doc) or "module docstring" in doc:
                missing.append(f"{cls.__name__}.{name}")
    assert not missing, missing


def test_the_python_api_page_runs(builtin_lidc, tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/python_api.md, in order, in one namespace."""
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / "python_api.md").read_text(), flags=re.S | re.M)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python_api.md", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "('benign', 'unsure', 'malignant')" in out and "spacing_mm is missing" in out
