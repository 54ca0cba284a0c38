"""Run the viewer app with uvicorn (``autorad serve``)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from pathlib import Path

from autorad.core.errors import AutoradError, MissingDependencyError
from autorad.pretrained import DEFAULT_MODEL, resolve_run

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can reach the server."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(host: str, port: int, max_upload_mb: int, max_volumes: int, max_decodes: int = 2,
                  allowed_hosts: tuple[str, ...] = ()) -> None:
    """Refuse bad ``serve`` options before anything loads (one line each, exit 2)."""
    if max_decodes < 1:
        raise AutoradError(f"--max-decodes must be at least 1, got {max_decodes}")
    for name in allowed_hosts:
        if not name.strip() or any(c in name for c in "/@ \t") or name.strip() == "*":
            raise AutoradError(f"--allowed-host must be a host name or address (no scheme, path or wildcard), "
                               f"got {name!r}")
    if not 1 <= port <= 65535:
        raise AutoradError(f"--port must be between 1 and 65535, got {port}")
    if max_upload_mb < 1:
        raise AutoradError(f"--max-upload-mb must be at least 1, got {max_upload_mb}")
    if max_volumes < 1:
        raise AutoradError(f"--max-volumes must be at least 1, got {max_volumes}")
    if not host.strip():
        raise AutoradError("--host must not be empty")


def check_bind(host: str, port: int) -> None:
    """Refuse a host that does not resolve or a port already in use, before the model loads."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise AutoradError(f"--host {host!r} cannot be resolved: {err.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as err:
            raise AutoradError(f"cannot serve on {host}:{port}: {err.strerror}") from None


def serve(run: str | Path = DEFAULT_MODEL, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: int = 1024,
          max_volumes: int = 4, max_decodes: int = 2, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Load a trained run once and serve the viewer on ``host:port`` until interrupted.

    Requests must address it by a loopback name, ``host`` or one of ``allowed_hosts``
    (:mod:`autorad.apps.serve.guard`); at most ``max_decodes`` uploads are decoded at once.

    Args:
        run: a run folder or a built-in model's name (default: the built-in ``lidc``).
        host: the address to bind (loopback by default; any other prints a warning).
        port: the TCP port, 1-65535.
        max_upload_mb: the largest upload accepted, in MB.
        max_volumes: how many open volumes are kept in memory.
        max_decodes: how many uploads are decoded at once.
        allowed_hosts: further Host names the server answers to (DNS-rebinding guard).

    Raises:
        AutoradError: for a bad option, an address that cannot be bound, or a run that cannot be loaded.
    """
    allowed_hosts = tuple(allowed_hosts or ())
    check_options(host, port, max_upload_mb, max_volumes, max_decodes, allowed_hosts)
    run = resolve_run(run)
    check_bind(host, port)
    try:
        import uvicorn

        from autorad.apps.serve.app import ServeSettings, create_app
        from autorad.apps.serve.uploads import MB, UploadLimits
    except ImportError as err:
        raise MissingDependencyError(f"autorad serve needs the 'serve' extra ({err.name} is missing): "
                                     'pip install "autorad[serve]"') from None
    limits = UploadLimits(max_upload_bytes=max_upload_mb * MB,
                          max_unpacked_bytes=max(2 * max_upload_mb, 2048) * MB)
    app = create_app(run, ServeSettings(limits=limits, max_volumes=max_volumes, max_decodes=max_decodes,
                                        allowed_hosts=(host, *allowed_hosts)))
    if not is_loopback(host):
        print(f"autorad: warning: serving on {host}, reachable from other machines; there is no login and no "
              "encryption (see docs/viewer.md before exposing CT data this way); requests must name this server "
              "by its address or an --allowed-host name", file=sys.stderr)
    if not logging.getLogger("autorad").handlers:  # the CLI has its own handler; a second would print lines twice
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    shown = f"[{host}]" if ":" in host else host
    print(f"autorad viewer for {Path(run).name}: http://{shown}:{port}/  (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="info", access_log=False, server_header=False)
