"""``autorad serve`` through its ASGI app: health, the page, predictions equal to ``autorad predict``, every bad
upload refused with a 4xx ``{"error"}`` (the server keeps answering), private temp folders removed, no identifiers
in the logs, concurrent requests correct."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed (pip install 'autorad[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is needed to test the app")

from dicom_factory import IDENTIFIERS, make_ct_series  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from autorad import __version__  # noqa: E402
from autorad.apps.predict import predict  # noqa: E402
from autorad.apps.serve import create_app  # noqa: E402
from autorad.apps.serve.app import ServeSettings  # noqa: E402
from autorad.apps.serve.uploads import MB, UploadLimits  # noqa: E402

VARYING = {"seconds", "report"}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A synthetic 12-slice CT series carrying identifying tags, with its nodule's centre as X,Y,Z."""
    s = make_ct_series(tmp_path_factory.mktemp("ct") / "Doe_Jane_series")
    r, c = s.center_rc
    return s, (int(round(c)), int(round(r)), s.center_index)


@pytest.fixture(scope="module")
def series_b(tmp_path_factory):
    """Another synthetic series with a larger nodule (its prediction differs from :func:`series`')."""
    s = make_ct_series(tmp_path_factory.mktemp("ct") / "Roe_Richard_series", radius_mm=6.0)
    r, c = s.center_rc
    return s, (int(round(c)), int(round(r)), s.center_index)


def _series_zip(s) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in s.folder.iterdir():
            zf.write(f, f"{s.folder.name}/{f.name}")
    return buf.getvalue()


@pytest.fixture(scope="module")
def series_zip(series) -> bytes:
    return _series_zip(series[0])


@pytest.fixture(scope="module")
def app(phantom_logreg_run):
    limits = UploadLimits(max_upload_bytes=8 * MB, max_unpacked_bytes=16 * MB, max_files=200)
    return create_app(phantom_logreg_run, ServeSettings(limits=limits, max_volumes=2))


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture(scope="module")
def reference(phantom_logreg_run, series, series_b):
    """What `autorad predict --center` gives for the synthetic nodules (a: without and with an 8 mm hint; b)."""
    (s, centre), (sb, centre_b) = series, series_b
    return {"a": predict(phantom_logreg_run, dicom=s.folder, center=centre),
            "a8": predict(phantom_logreg_run, dicom=s.folder, center=centre, diameter_mm=8.0),
            "b": predict(phantom_logreg_run, dicom=sb.folder, center=centre_b)}


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b) - {"report"}
    for k in set(a) - VARYING:
        if k == "probabilities":
            for c in b[k]:
                assert a[k][c] == pytest.approx(b[k][c], abs=1e-6)
        else:
            assert a[k] == b[k], k


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _post(client, files, center="10,10,1", diameter=None):
    data = {"center": center} if center is not None else {}
    if diameter is not None:
        data["diameter_mm"] = diameter
    return client.post("/api/predict", files=files, data=data)


def test_health_and_page(client, phantom_logreg_run):
    h = client.get("/api/health")
    assert h.status_code == 200
    body = h.json()
    assert body["autorad_version"] == __version__
    m = body["model"]
    assert m["kind"] == "radiomics_logreg" and m["vision_encoder"] is None and m["simulated_training_data"] is True
    metrics = json.loads((phantom_logreg_run / "metrics.json").read_text())
    cv = m["cross_validation"]
    assert cv["accuracy"] == metrics["pooled"]["accuracy"] and cv["n"] == metrics["n"]
    page = client.get("/")
    assert page.status_code == 200 and "autorad viewer" in page.text and 'id="sim-banner"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/static/viewer.js")
    assert js.status_code == 200 and "predictAt" in js.text


def test_predict_zip_matches_autorad_predict(client, series_zip, series, reference):
    _, (x, y, z) = series
    r = _post(client, {"file": ("series.zip", series_zip, "application/zip")}, f"{x},{y},{z}")
    assert r.status_code == 200, r.text
    _same(r.json(), reference["a"])
    assert r.json()["mask"]["method"] == "click" and r.json()["slice_index"] == z
    r = _post(client, {"file": ("series.zip", series_zip, "application/zip")}, f"{x},{y},{z}", "8")
    assert r.status_code == 200, r.text
    _same(r.json(), reference["a8"])


def test_predict_several_files_and_nifti(client, series, reference, tmp_path):
    import SimpleITK as sitk  # noqa: N813

    from autorad.data.dicom import load_series

    s, (x, y, z) = series
    files = [("file", (f.name, f.read_bytes(), "application/dicom")) for f in sorted(s.folder.iterdir())]
    r = client.post("/api/predict", files=files, data={"center": f"{x},{y},{z}"})
    assert r.status_code == 200, r.text
    _same(r.json(), reference["a"])
    sitk.WriteImage(load_series(s.folder).to_sitk(), str(tmp_path / "ct.nii.gz"))
    r = _post(client, {"file": ("ct.nii.gz", (tmp_path / "ct.nii.gz").read_bytes())}, f"{x},{y},{z}")
    assert r.status_code == 200, r.text
    _same(r.json(), reference["a"])


def test_open_volume_voxels_predict_and_downloads(client, series, reference):
    import pydicom
    import SimpleITK as sitk  # noqa: N813

    s, (x, y, z) = series
    files = [("file", (f.name, f.read_bytes(), "application/dicom")) for f in sorted(s.folder.iterdir())]
    info = client.post("/api/volumes", files=files).json()
    assert info["shape"] == list(s.hu.shape) and len(info["z_mm"]) == s.hu.shape[0]
    assert not any(v in json.dumps(info) for v in IDENTIFIERS.values())
    vox = client.get(f"/api/volumes/{info['id']}/voxels")
    assert np.array_equal(np.frombuffer(vox.content, "<i2").reshape(s.hu.shape), s.hu)
    assert client.get(f"/api/volumes/{info['id']}/files/report.html").status_code == 404  # no click yet
    r = client.post(f"/api/volumes/{info['id']}/predict", data={"center": f"{x},{y},{z}"})
    assert r.status_code == 200, r.text
    ans = r.json()
    _same(ans["prediction"], reference["a"])
    m = ans["mask"]
    # the click is segmented in 3D: the mask spans the clicked slice and its neighbours
    assert m["z0"] <= z < m["z0"] + m["depth"] and m["y0"] <= y < m["y0"] + m["height"]
    assert ans["prediction"]["mask"]["method"] == "click"
    report = client.get(ans["downloads"]["report.html"])
    assert report.status_code == 200 and ans["prediction"]["predicted_class"] in report.text
    assert "attachment" in report.headers["content-disposition"]
    nii = client.get(ans["downloads"]["mask.nii.gz"])
    path = Path(tempfile.mkdtemp()) / "m.nii.gz"
    path.write_bytes(nii.content)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert mask.shape == s.hu.shape and mask[z, y, x] == 1 and mask.sum() > 20
    seg = pydicom.dcmread(io.BytesIO(client.get(ans["downloads"]["seg.dcm"]).content))
    sr = pydicom.dcmread(io.BytesIO(client.get(ans["downloads"]["sr.dcm"]).content))
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert seg.SOPInstanceUID in str(sr)  # the SR references the SEG offered for download
    assert str(seg.PatientName) == IDENTIFIERS["PatientName"]  # DICOM objects carry the source's patient module
    assert client.get("/api/volumes/nope/voxels").status_code == 404
    assert client.post("/api/volumes/nope/predict", data={"center": "1,1,1"}).json()["error"].startswith("unknown")


def _lying_zip(real_size: int, claimed: int) -> bytes:
    """A zip whose headers claim ``claimed`` bytes for an entry that inflates to ``real_size`` bytes."""
    data = bytearray(_zip({"slices/a.dcm": b"\0" * real_size}))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.index(sig)
        data[i + off:i + off + 4] = struct.pack("<I", claimed)
    return bytes(data)


BAD_UPLOADS = {
    "absolute path": (_zip({"/tmp/autorad-abs-test.dcm": b"x"}), 400, "absolute or '..'"),
    "dot-dot path": (_zip({"../autorad-dotdot-test.dcm": b"x"}), 400, "absolute or '..'"),
    "backslash dot-dot": (_zip({"a\\..\\..\\autorad-bs-test.dcm": b"x"}), 400, "absolute or '..'"),
    "drive letter": (_zip({"C:/x.dcm": b"x"}), 400, "absolute or '..'"),
    "zip bomb (declared)": (_zip({"big.dcm": b"\0" * (40 * MB)}), 413, "unpack to 40 MB"),
    "zip bomb (sizes lie)": (_lying_zip(30 * MB, 1000), 400, "cannot be unpacked"),
    "too many entries": (_zip({f"s/{i}.dcm": b"" for i in range(201)}), 413, "201 entries"),
    "not a zip": (b"PK\x03\x04 this is not a zip at all", 400, "not a readable zip"),
    "truncated zip": (None, 400, "zip"),
    "empty zip": (_zip({}), 400, "no DICOM files"),
    "zip of text": (_zip({"notes/readme.txt": b"hello"}), 400, "no DICOM files"),
    "file and folder of one name": (_zip({"s/a.dcm": b"x", "s/a.dcm/b.dcm": b"y"}), 400, "cannot be unpacked"),
    "name too long": (_zip({"s/" + "x" * 300 + ".dcm": b"x"}), 400, "cannot be unpacked"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_zip_uploads_are_refused(client, series_zip, case):
    data, status, words = BAD_UPLOADS[case]
    if data is None:
        data = series_zip[: len(series_zip) // 2]
    t0 = time.time()
    r = _post(client, {"file": ("upload.zip", data, "application/zip")}, diameter="5")
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert time.time() - t0 < 10  # bounded time, nothing big is written
    for name in ("autorad-abs-test.dcm", "autorad-dotdot-test.dcm", "autorad-bs-test.dcm"):
        assert not (Path(tempfile.gettempdir()) / name).exists()
    assert client.get("/api/health").status_code == 200


def test_two_series_in_one_zip_and_other_bad_inputs(client, series, tmp_path):
    s, (x, y, z) = series
    two = {f"a/{f.name}": f.read_bytes() for f in s.folder.iterdir()}
    two.update({f"b/{f.name}": f.read_bytes() for f in s.folder.iterdir()})
    r = _post(client, {"file": ("two.zip", _zip(two))}, f"{x},{y},{z}", "5")
    assert r.status_code == 400 and "one series at a time" in r.json()["error"]
    mr = make_ct_series(tmp_path / "mr", modality="MR")
    files = [("file", (f.name, f.read_bytes())) for f in mr.folder.iterdir()]
    r = client.post("/api/predict", files=files, data={"center": "1,1,1", "diameter_mm": "5"})
    assert r.status_code == 400 and "not a CT series" in r.json()["error"]
    r = _post(client, {"file": ("ct.nii.gz", b"\x1f\x8b garbage")}, diameter="5")
    assert r.status_code == 400 and "ct.nii.gz" in r.json()["error"]
    r = _post(client, {"file": ("empty.dcm", b"")}, diameter="5")
    assert r.status_code == 400
    one = next(iter(s.folder.iterdir()))
    r = client.post("/api/predict", files=[("file", (one.name, one.read_bytes())), ("file", (one.name, b"x"))],
                    data={"center": "1,1,1", "diameter_mm": "5"})
    assert r.status_code == 400 and "two uploaded files" in r.json()["error"]


@pytest.mark.parametrize("center,diameter,status,words", [
    ("1,2", "5", 400, "X,Y,Z"),
    ("a,b,c", "5", 400, "three integers"),
    ("9999,1,1", "5", 400, "outside the volume"),
    ("10,10,1", "nan", 400, "diameter_mm"),
    ("10,10,1", "-3", 400, "diameter_mm"),
    ("10,10,1", "abc", 400, "diameter_mm"),
    (None, "5", 422, "center"),
])
def test_bad_form_fields(client, series_zip, center, diameter, status, words):
    r = _post(client, {"file": ("s.zip", series_zip)}, center, diameter)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_missing_file_field(client):
    r = client.post("/api/predict", data={"center": "1,1,1"})
    assert r.status_code == 422 and "file" in r.json()["error"]


def test_upload_size_limit_declared_and_streamed(client):
    r = client.post("/api/predict", files={"file": ("big.zip", b"\0" * (9 * MB))}, data={"center": "1,1,1"})
    assert r.status_code == 413 and "8 MB" in r.json()["error"]

    def chunks():  # no Content-Length: the middleware counts what streams in
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\n\r\n"
        for _ in range(10):
            yield b"\0" * MB

    r = client.post("/api/volumes", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 413
    assert client.get("/api/health").status_code == 200


def test_private_temp_folders_removed_and_no_identifiers_logged(client, series, series_zip, monkeypatch, tmp_path,
                                                                 caplog):
    s, (x, y, z) = series
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    caplog.set_level(logging.DEBUG)
    ok = _post(client, {"file": ("Doe_Jane_Quincy.zip", series_zip)}, f"{x},{y},{z}", "8")
    assert ok.status_code == 200
    assert not any(v in ok.text for v in IDENTIFIERS.values())
    bad = _post(client, {"file": ("Doe_Jane_Quincy.zip", series_zip[:500])}, f"{x},{y},{z}", "8")
    assert bad.status_code == 400
    info = client.post("/api/volumes", files={"file": ("Doe_Jane_Quincy.zip", series_zip)})
    assert info.status_code == 200
    assert list(tmp_path.iterdir()) == []  # every private folder is gone after its request
    assert "/api/predict -> 200" in caplog.text and "/api/predict -> 400" in caplog.text
    for secret in [*IDENTIFIERS.values(), "Doe_Jane", "Doe^Jane"]:
        assert secret not in caplog.text


def test_eight_concurrent_predictions_are_correct(app, series_zip, series, series_b, reference):
    (_, (x, y, z)), (sb, (xb, yb, zb)) = series, series_b
    zip_b = _series_zip(sb)
    assert reference["a"]["probabilities"] != reference["b"]["probabilities"]  # a mix-up would show

    async def one(client, i):
        if i % 4 == 3:  # a malformed upload among them
            r = await client.post("/api/predict", files={"file": ("x.zip", b"PK\x03\x04broken")},
                                  data={"center": f"{x},{y},{z}"})
            return i, None, r
        which = "b" if i % 2 else "a"
        upload, centre = (zip_b, f"{xb},{yb},{zb}") if which == "b" else (series_zip, f"{x},{y},{z}")
        r = await client.post("/api/predict", files={"file": ("s.zip", upload)}, data={"center": centre})
        return i, which, r

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=300) as client:
            results = await asyncio.gather(*(one(client, i) for i in range(10)))
            health = await client.get("/api/health")
        return results, health

    results, health = asyncio.run(main())
    good = [(d, r) for _, d, r in results if d is not None]
    assert len(good) == 8
    for d, r in good:
        assert r.status_code == 200, r.text
        _same(r.json(), reference[d])
    assert all(r.status_code == 400 for _, d, r in results if d is None)
    assert health.status_code == 200


@pytest.mark.shared_data
def test_predict_real_lidc_series_zip(client, phantom_logreg_run, lidc_dicom_root):
    from autorad.data.lidc import find_series_folders

    folder = next(f.path for f in find_series_folders(lidc_dicom_root) if "0001" in str(f.path))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in folder.iterdir():
            zf.write(f, f"{folder.name}/{f.name}")
    r = _post(client, {"file": ("0001.zip", buf.getvalue())}, "314,366,6")
    assert r.status_code == 200, r.text
    _same(r.json(), predict(phantom_logreg_run, dicom=folder, center=(314, 366, 6)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_cli_refuses_bad_options(tmp_path, phantom_logreg_run):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "autorad", "serve", *map(str, args)], capture_output=True,
                              text=True, timeout=120)

    for args, words in [((tmp_path, "--port", _free_port()), "not a trained run"),
                        ((phantom_logreg_run, "--port", "70000"), "--port"),
                        ((phantom_logreg_run, "--port", "8000", "--max-upload-mb", "0"), "--max-upload-mb")]:
        p = run(*args)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("autorad: error:") and words in lines[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        p = run(phantom_logreg_run, "--port", busy.getsockname()[1])
    assert p.returncode == 2 and "cannot serve on" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_one_log_line_per_request_without_query_strings(client, caplog):
    caplog.set_level(logging.INFO, logger="autorad.apps.serve")
    assert client.get("/api/health?patient=Doe_Jane").status_code == 200
    assert client.get("/").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "autorad.apps.serve"]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"GET /api/health -> 200 \(\d+ ms\)", lines[0]) and lines[1].startswith("GET / -> 200 (")
    assert "Doe_Jane" not in caplog.text
