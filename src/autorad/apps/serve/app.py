"""The viewer's web app (FastAPI): the page, the model's health, and prediction on uploaded CTs.

Routes (JSON errors are always ``{"error": "..."}`` with a 4xx status; 5xx only for a bug):

=====================================  ===========================================================================
``GET /``                              the viewer page (static HTML + JS in ``autorad/apps/serve/static``)
``GET /api/health``                    model kind, encoders, data source, cross-validated metrics, autorad version
``POST /api/predict``                  form ``file`` (zip of one series, NIfTI/NRRD, or several DICOM files),
                                       ``center`` "X,Y,Z", optional ``diameter_mm`` -> the JSON ``autorad predict``
                                       prints
``POST /api/volumes``                  form ``file`` -> a volume id, its shape, spacing and slice positions
``GET /api/volumes/{id}/voxels``       the volume as little-endian int16 HU (the page windows it itself)
``POST /api/volumes/{id}/predict``     form ``center``, optional ``diameter_mm`` -> nodule number, prediction,
                                       mask, downloads (the volume keeps its last ``MAX_NODULES`` predictions)
``GET .../nodules/{n}/files/{name}``   nodule ``n``'s report (HTML), mask (NIfTI) and, for DICOM, SEG and SR
``DELETE .../{id}/nodules/{n}``        forget nodule ``n``
``GET /api/volumes/{id}/files/{name}`` the latest kept prediction's downloads
=====================================  ===========================================================================
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from autorad import __version__
from autorad.apps.serve.guard import HostGuard, allowed_host_names
from autorad.apps.serve.model import DICOM_DOWNLOADS, DOWNLOADS, ServedModel
from autorad.apps.serve.uploads import MB, UploadLimits, load_volume, private_workdir, stage_upload
from autorad.apps.serve.volumes import MAX_NODULES, VolumeStore, mask_payload, volume_info, voxels_int16
from autorad.core.errors import InputError
from autorad.data.ct_checks import VolumeTooLargeError
from autorad.data.dicom import CTVolume

log = logging.getLogger("autorad.apps.serve")
STATIC = Path(str(package_files("autorad.apps.serve") / "static"))
DOWNLOAD_TYPES = {"report.html": "text/html; charset=utf-8", "mask.nii.gz": "application/gzip",
                  "seg.dcm": "application/dicom", "sr.dcm": "application/dicom"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


DECODE_WAIT_S = 120.0  # how long an upload waits for a decoding slot before a 503


@dataclass(frozen=True)
class ServeSettings:
    """Server settings: upload limits, how many open volumes are kept in memory, how many uploads are decoded at
    once, and the host names requests may address the server by (besides the loopback names; see
    :mod:`autorad.apps.serve.guard`)."""

    limits: UploadLimits = UploadLimits()
    max_volumes: int = 4
    warm_up: bool = True
    max_decodes: int = 2
    allowed_hosts: tuple[str, ...] = ()


class BodySizeLimit:
    """ASGI middleware: answer 413 to a request body larger than ``max_bytes`` (declared or streamed), before the
    multipart parser spools it. Starlette has no such setting; this is the smallest way to bound what is read."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any) -> None:
        body = (b'{"error": "the upload is larger than the limit of %d MB"}' % (self.max_bytes // MB))
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            log.info("%s %s -> 413 (declared size over the limit)", scope["method"], scope["path"])
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # answer 413 now; the app sees a disconnect and its answer is dropped
                    log.info("%s %s -> 413 (streamed size over the limit)", scope["method"], scope["path"])
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_diameter(text: str | None) -> float | None:
    """The optional ``diameter_mm`` form field: empty -> None, else a positive finite number."""
    if text is None or not str(text).strip():
        return None
    try:
        d = float(text)
    except ValueError:
        raise InputError(f"diameter_mm must be a number, got {text!r}") from None
    if not math.isfinite(d) or d <= 0:
        raise InputError(f"diameter_mm must be a positive finite number, got {text!r}")
    return d


def create_app(run: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The app for one trained run (loaded here, once; raises InputError if ``run`` is not a trained run).

    Args:
        run: a run folder or a built-in model's name.
        settings: upload limits, volumes kept, warm-up (default :class:`ServeSettings`).

    Returns:
        The FastAPI app (serve it with any ASGI server).
    """
    from autorad.apps.predict import parse_center

    settings = settings or ServeSettings()
    model = ServedModel(run)
    if settings.warm_up:
        model.warm_up()
    store = VolumeStore(settings.max_volumes)
    app = FastAPI(title="autorad viewer", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model, app.state.store, app.state.settings = model, store, settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_upload_bytes)
    decode_slots = threading.BoundedSemaphore(settings.max_decodes)

    @app.middleware("http")
    async def _headers_and_log(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as err:  # a bug, not bad input: answer 500 and keep serving; log no message (may name files)
            log.error("%s %s -> 500 (unexpected %s)", request.method, request.url.path, type(err).__name__)
            response = _error(500, f"internal error ({type(err).__name__}); the server keeps running")
        response.headers.update(SECURITY_HEADERS)
        # one line per request: method, path (no query string; volume ids are random tokens), status, time
        log.info("%s %s -> %d (%.0f ms)", request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - t0))
        return response

    @app.exception_handler(VolumeTooLargeError)  # UploadTooLargeError too (a subclass)
    async def _too_large(_: Request, err: VolumeTooLargeError) -> JSONResponse:
        return _error(413, str(err))

    @app.exception_handler(InputError)
    async def _bad_input(_: Request, err: InputError) -> JSONResponse:
        return _error(400, str(err))

    @app.exception_handler(RequestValidationError)
    async def _bad_form(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    def _open(key: str):
        try:
            return store.get(key)
        except KeyError:
            raise StarletteHTTPException(404, "unknown volume id (it may have been closed: open the file again)") \
                from None

    def _decode(uploads: list[UploadFile], keep_sources: bool = False) -> tuple[CTVolume, list | None]:
        """The uploaded CT and, for a DICOM series when asked, its slices' headers (for DICOM SEG / SR). At most
        ``settings.max_decodes`` uploads are staged and decoded at once; the others wait for a slot."""
        if not decode_slots.acquire(timeout=DECODE_WAIT_S):
            raise StarletteHTTPException(503, f"the server is busy decoding {settings.max_decodes} other upload(s); "
                                              "try again in a moment")
        try:
            with private_workdir() as work:
                path = stage_upload([(u.filename, u.file) for u in uploads], work, settings.limits)
                vol = load_volume(path, settings.limits)
                sources = None
                if keep_sources and path.is_dir():
                    from autorad.apps.dicom_out import read_sources

                    sources = read_sources(path, vol.sop_uids, headers_only=True)
                return vol, sources
        finally:
            decode_slots.release()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # outermost: a request addressed by a name this server does not answer to (DNS rebinding), or posted from a
    # page of another origin, is refused before anything else reads it
    app.add_middleware(HostGuard, allowed=allowed_host_names(settings.allowed_hosts), headers=SECURITY_HEADERS)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {**model.health(), "limits": {"max_upload_mb": settings.limits.max_upload_bytes // MB,
                                             "max_unpacked_mb": settings.limits.max_unpacked_bytes // MB,
                                             "max_files": settings.limits.max_files,
                                             "max_voxels": settings.limits.max_voxels,
                                             "max_decoded_mb": settings.limits.max_decoded_bytes // MB,
                                             "max_decodes": settings.max_decodes}}

    @app.post("/api/predict")
    def predict(file: Annotated[list[UploadFile], File()], center: Annotated[str, Form()],
                diameter_mm: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        c, d = parse_center(center), parse_diameter(diameter_mm)
        vol, _ = _decode(file)
        return model.predict(vol, c, d).result

    @app.post("/api/volumes")
    def open_volume(file: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
        vol, sources = _decode(file, keep_sources=True)
        return volume_info(store.add(vol, sources), vol, sources)

    @app.get("/api/volumes/{key}/voxels")
    def voxels(key: str) -> Response:
        return Response(voxels_int16(_open(key).volume), media_type="application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/volumes/{key}/predict")
    def predict_open(key: str, center: Annotated[str, Form()],
                     diameter_mm: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        item = _open(key)
        c, d = parse_center(center), parse_diameter(diameter_mm)
        answer = model.predict(item.volume, c, d)
        n = item.add(answer)
        names = DOWNLOADS + (DICOM_DOWNLOADS if item.sources else ())
        return {"nodule": n, "prediction": answer.result, "mask": mask_payload(answer.mask),
                "downloads": {name: f"/api/volumes/{key}/nodules/{n}/files/{name}" for name in names}}

    def _nodule(item: Any, n: int) -> Any:
        try:
            return item.nodule(n)
        except KeyError:
            raise StarletteHTTPException(404, f"no nodule {n} on this volume (removed, or more than "
                                              f"{MAX_NODULES} were clicked since)") from None

    @app.delete("/api/volumes/{key}/nodules/{n}")
    def remove_nodule(key: str, n: int) -> dict[str, Any]:
        item = _open(key)
        _nodule(item, n)
        item.remove(n)
        return {"removed": n}

    @app.get("/api/volumes/{key}/files/{name}")
    def download_latest(key: str, name: str) -> Response:
        item = _open(key)
        answer = item.prediction
        if answer is None:
            _check_download(item, name)
            raise StarletteHTTPException(404, f"no {name} yet: click a nodule first")
        return _download(item, answer, name)

    @app.get("/api/volumes/{key}/nodules/{n}/files/{name}")
    def download(key: str, n: int, name: str) -> Response:
        item = _open(key)
        return _download(item, _nodule(item, n), name)

    def _check_download(item: Any, name: str) -> None:
        if name not in DOWNLOADS + DICOM_DOWNLOADS or (name in DICOM_DOWNLOADS and not item.sources):
            raise StarletteHTTPException(404, f"no download named {name!r} for this volume")

    def _download(item: Any, answer: Any, name: str) -> Response:
        _check_download(item, name)
        with private_workdir() as work:
            content = model.download(answer, name, work, item.sources)
        return Response(content, media_type=DOWNLOAD_TYPES.get(name, "application/octet-stream"),
                        headers={"Content-Disposition": f'attachment; filename="autorad-{name}"',
                                 "Cache-Control": "no-store"})

    return app
