"""Who may talk to the server: a Host header allow-list (against DNS rebinding) and an Origin check on writes.

A web page on any site can make the browser send requests to ``http://127.0.0.1:8000`` under a name of its own
that it points at 127.0.0.1 (DNS rebinding); its requests then carry that name in ``Host``. So requests are
answered only when ``Host`` names this machine's loopback (``localhost``, ``127.0.0.1``, ``[::1]``, any 127.x
address), the address the server is bound to, or a name given with ``autorad serve --allowed-host``: any other
gets 400. A request that changes state (POST and the like) that carries an ``Origin`` header must come from a page
of an allowed host (403 otherwise, ``null`` included); one without ``Origin`` (curl, scripts) is accepted.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("autorad.apps.serve")
LOOPBACK_HOSTS = ("localhost", "localhost.localdomain", "ip6-localhost", "127.0.0.1", "::1")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def normalise_host(name: str) -> str:
    """A host name as compared: lower case, no brackets around an IPv6 address, no trailing dot."""
    return name.strip().lower().strip("[]").rstrip(".")


def allowed_host_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """The loopback names plus ``extra`` (the bound address, ``--allowed-host`` values), normalised."""
    return frozenset(normalise_host(h) for h in (*LOOPBACK_HOSTS, *extra) if normalise_host(h))


def host_of(header: str) -> str:
    """The host part of a ``Host`` header value (``name``, ``name:port``, ``[v6]``, ``[v6]:port``)."""
    value = header.strip()
    if value.startswith("["):
        return normalise_host(value[1:value.find("]")] if "]" in value else value)
    return normalise_host(value.rsplit(":", 1)[0] if value.count(":") == 1 else value)


def is_allowed(host: str, allowed: frozenset[str]) -> bool:
    if host in allowed:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(allowed: frozenset[str]) -> str:
    return ", ".join(f"[{h}]" if ":" in h else h for h in sorted(allowed))


class HostGuard:
    """ASGI middleware: 400 for a ``Host`` not in ``allowed``, 403 for a state-changing request whose ``Origin`` is
    not an allowed host. Refusals are JSON ``{"error": ...}`` with ``headers`` (the security headers) added."""

    def __init__(self, app: Any, allowed: frozenset[str], headers: dict[str, str] | None = None):
        self.app, self.allowed = app, allowed
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def _refuse(self, send: Any, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                                *self.headers]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Any) -> tuple[int, str] | None:
        """(status, message) when the request must be refused, else None."""
        headers = dict(scope.get("headers") or [])
        raw_host = headers.get(b"host")
        if raw_host is None:
            return 400, "the request has no Host header"
        host_text = raw_host.decode("latin-1")
        if not is_allowed(host_of(host_text), self.allowed):
            return 400, (f"Host {host_text[:100]!r} is not a name this server answers to (a defence against DNS "
                         f"rebinding); allowed: {_shown(self.allowed)}; add a name with autorad serve "
                         "--allowed-host NAME")
        origin = headers.get(b"origin")
        if scope.get("method", "GET").upper() not in SAFE_METHODS and origin is not None:
            origin_text = origin.decode("latin-1")
            try:
                origin_host = normalise_host(urlsplit(origin_text).hostname or "")
            except ValueError:
                origin_host = ""
            if not origin_host or not is_allowed(origin_host, self.allowed):
                return 403, (f"cross-origin request refused: Origin {origin_text[:100]!r} is not an allowed host "
                             f"({_shown(self.allowed)})")
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refused = self.refusal(scope)
            if refused is not None:
                status, message = refused
                log.info("%s %s -> %d (%s)", scope.get("method"), scope.get("path"), status,
                         "Host not allowed" if status == 400 else "Origin not allowed")
                await self._refuse(send, status, message)
                return
        await self.app(scope, receive, send)
