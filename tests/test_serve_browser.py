"""The viewer in a real browser (Debian's chromium driven by playwright): open the LIDC-IDRI-0001 sample series,
scroll to the nodule, click it, read the probabilities; print the click -> result time; save a screenshot.

Skips with the reason when playwright, a chromium binary or the real data is missing. Set
``AUTORAD_WRITE_SCREENSHOT=1`` to (re)write docs/viewer.png; ``AUTORAD_CHROMIUM`` names another browser binary;
``AUTORAD_VIEWER_RUN=runs/demo/run`` serves that trained run instead of the small phantom run the test trains.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
CLICK_TARGET_S = 2.0


def _chromium() -> str:
    for cand in (os.environ.get("AUTORAD_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file():
            return cand
    pytest.skip("no chromium browser installed (apt-get install chromium, or set AUTORAD_CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_run(request) -> Path:
    """The run to serve: $AUTORAD_VIEWER_RUN (e.g. the demo run) or the small phantom run."""
    given = os.environ.get("AUTORAD_VIEWER_RUN")
    return Path(given) if given else request.getfixturevalue("phantom_logreg_run")


@pytest.fixture(scope="module")
def server(served_run, tmp_path_factory):
    """``autorad serve`` in a subprocess on a free port; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autorad", "serve", str(served_run), "--port",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"autorad serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def nodule_0001(lidc_dicom_root):
    """The LIDC-IDRI-0001 series and its nodule's consensus centre (X, Y, Z) and equivalent diameter."""
    from autorad.data.dicom import load_series
    from autorad.data.lidc import find_series_folders, iter_lidc

    series = next(f.path for f in find_series_folders(lidc_dicom_root) if "0001" in str(f.path))
    rec = next(r for r in iter_lidc(series.parents[1]) if hasattr(r, "slice_mask"))
    vol = load_series(series)
    rows, cols = np.nonzero(rec.slice_mask)
    d = 2 * np.sqrt(rec.slice_mask.sum() / np.pi) * rec.pixel_spacing_mm
    return series, vol.shape, (int(cols.mean()), int(rows.mean()), vol.slice_index(rec.z_mm)), float(d)


def test_viewer_in_chromium(server, nodule_0001, served_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from autorad.predict import predict

    executable = _chromium()
    series, shape, (x, y, z), d = nodule_0001
    files = sorted(str(p) for p in series.iterdir() if p.suffix == ".dcm")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 860})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server + "/")
        page.wait_for_function("!document.getElementById('model-line').textContent.startsWith('loading')")
        assert page.is_visible("#sim-banner")  # both the fixture run and the demo run learnt from phantom nodules
        page.set_input_files("#file", files)
        page.wait_for_selector("body[data-state=loaded]", timeout=60_000)
        assert f"{shape[0]} slices of {shape[2]}×{shape[1]}" in page.inner_text("#status")

        canvas = page.locator("#slice")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(shape[0]):  # scroll with the mouse wheel until the nodule's slice is shown
            current = int(page.input_value("#slider"))
            if current == z:
                break
            page.mouse.wheel(0, 100 if z > current else -100)
            page.wait_for_function(f"Number(document.getElementById('slider').value) !== {current}")
        assert int(page.input_value("#slider")) == z and f"slice {z} /" in page.inner_text("#slice-label")
        page.keyboard.press("s")
        assert "active" in page.get_attribute("#win-soft", "class")
        page.keyboard.press("l")

        assert page.input_value("#diameter") == ""  # a click is enough: the nodule is segmented from it
        t0 = time.perf_counter()
        page.mouse.click(box["x"] + (x + 0.5) * box["width"] / shape[2],
                         box["y"] + (y + 0.5) * box["height"] / shape[1])
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        wall = time.perf_counter() - t0
        in_page = page.evaluate("window.autoradViewer.lastClickMs") / 1000
        probs = {c: float(page.inner_text(f"#prob-{c}")) for c in ("benign", "unsure", "malignant")}
        orange = page.evaluate("""() => {
            const c = document.getElementById('slice'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
            let n = 0;
            for (let i = 0; i < d.data.length; i += 4)
                if (d.data[i] === 255 && d.data[i + 1] === 140 && d.data[i + 2] === 0) n++;
            return n; }""")
        downloads = page.locator("#downloads a").all_inner_texts()
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("AUTORAD_WRITE_SCREENSHOT") == "1":
            shutil.copyfile(shot, REPO / "docs" / "viewer.png")
        browser.close()

    print(f"\nviewer: click -> outline and probabilities in {wall:.2f} s (in-page {in_page:.2f} s; "
          f"target <= {CLICK_TARGET_S} s) after the series was loaded")
    assert not errors, errors
    expected = predict(served_run, dicom=series, center=(x, y, z))
    for c, p in probs.items():
        assert p == pytest.approx(expected["probabilities"][c], abs=1e-3)  # the page shows 3 decimals
    assert page_class_is_max(probs, expected)
    assert orange > 10  # the outline is drawn on the clicked slice
    assert abs(expected["equivalent_diameter_mm"] - d) < 0.3 * d  # the segmentation found the consensus nodule
    assert downloads == ["Report (HTML)", "Mask (NIfTI)", "DICOM SEG", "DICOM SR"]
    assert wall < 30  # the 2 s target is printed above; shared CI cores make a hard bound flaky


def page_class_is_max(probs: dict[str, float], expected: dict) -> bool:
    return max(probs, key=probs.get) == expected["predicted_class"]
