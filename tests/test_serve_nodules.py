"""The viewer's API for several nodules per series and series slice numbers (through the ASGI app): each click is
a numbered nodule with its own downloads, nodules can be removed, the oldest is dropped past the limit; slices
are numbered 1..N in the series' order; /api/health says how to read a prediction."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed (pip install 'autorad[serve]')")
pytest.importorskip("httpx", reason="httpx (dev extra) is needed to test the app")

from dicom_factory import make_ct_series  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from autorad.apps.reading import CLASS_CONTEXT  # noqa: E402
from autorad.apps.serve import create_app, volumes  # noqa: E402
from autorad.apps.serve.app import ServeSettings  # noqa: E402
from autorad.apps.serve.volumes import slice_numbers  # noqa: E402


@pytest.fixture(scope="module")
def client(phantom_logreg_run):
    return TestClient(create_app(phantom_logreg_run, ServeSettings(max_volumes=2, warm_up=False)),
                      base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture(scope="module")
def opened(client, tmp_path_factory):
    """A synthetic 12-slice series opened in the app: (volume info, its nodule's centre X, Y, Z)."""
    s = make_ct_series(tmp_path_factory.mktemp("ct") / "series", radius_mm=6.0)
    files = [("file", (f.name, f.read_bytes(), "application/dicom")) for f in sorted(s.folder.iterdir())]
    info = client.post("/api/volumes", files=files).json()
    r, c = s.center_rc
    return info, (int(round(c)), int(round(r)), s.center_index)


class _Header(dict):
    """A stand-in for a pydicom header: ``get`` is all slice_numbers uses."""


def test_slice_numbers_follow_the_series_order():
    class Vol:
        shape = (4, 8, 8)

    head_first = [_Header(InstanceNumber=n) for n in (53, 52, 51, 50)]  # index 0 = lowest = last image
    assert slice_numbers(Vol(), head_first) == ([4, 3, 2, 1], "instance number")
    assert slice_numbers(Vol(), [_Header(InstanceNumber=n) for n in (1, 2, 3, 4)]) == ([1, 2, 3, 4],
                                                                                      "instance number")
    for bad in (None, [], [_Header(InstanceNumber=1)] * 4, [_Header(), _Header(), _Header(), _Header()]):
        assert slice_numbers(Vol(), bad) == ([1, 2, 3, 4], "position")  # no, repeated or missing numbers


def test_open_volume_numbers_slices(opened):
    info, _ = opened
    assert info["slice_numbers"] == list(range(1, info["shape"][0] + 1))  # the factory numbers lowest first
    assert info["slice_order"] == "instance number"


def test_health_says_how_to_read_a_prediction(client):
    reading = client.get("/api/health").json()["reading"]
    assert reading["context"] == CLASS_CONTEXT and "not a medical device" in reading["not_a_device"]
    assert set(reading["class_meanings"]) == {"benign", "unsure", "malignant"}


def test_nodules_are_numbered_downloaded_removed_and_bounded(client, opened, monkeypatch):
    info, (x, y, z) = opened
    base = f"/api/volumes/{info['id']}"
    first = client.post(f"{base}/predict", data={"center": f"{x},{y},{z}"}).json()
    second = client.post(f"{base}/predict", data={"center": f"{x},{y},{z}", "diameter_mm": "9"}).json()
    assert (first["nodule"], second["nodule"]) == (1, 2)
    assert first["downloads"]["report.html"] == f"{base}/nodules/1/files/report.html"
    r1, r2 = (client.get(a["downloads"]["report.html"]) for a in (first, second))
    assert r1.status_code == r2.status_code == 200
    detail1, detail2 = (a["prediction"]["mask"]["detail"] for a in (first, second))
    assert "hint" in detail2 and "hint" not in detail1  # each nodule's own report
    assert detail1 in r1.text and detail2 in r2.text and detail2 not in r1.text
    assert client.get(f"{base}/files/report.html").text == r2.text  # the old route: the latest nodule
    assert client.delete(f"{base}/nodules/2").json() == {"removed": 2}
    assert client.get(second["downloads"]["mask.nii.gz"]).status_code == 404
    assert client.delete(f"{base}/nodules/2").status_code == 404
    assert client.get(f"{base}/files/report.html").text == r1.text  # latest is nodule 1 again
    monkeypatch.setattr(volumes, "MAX_NODULES", 2)
    third = client.post(f"{base}/predict", data={"center": f"{x},{y},{z}"}).json()
    fourth = client.post(f"{base}/predict", data={"center": f"{x},{y},{z}"}).json()
    assert (third["nodule"], fourth["nodule"]) == (3, 4)  # numbers are never reused
    gone = client.get(first["downloads"]["report.html"])
    assert gone.status_code == 404 and "no nodule 1" in gone.json()["error"]
    assert client.get(third["downloads"]["report.html"]).status_code == 200
    assert client.delete(f"{base}/nodules/x").status_code == 422
