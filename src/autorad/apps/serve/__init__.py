"""``autorad serve``: a local web viewer. Open a CT, scroll, click a nodule, see the mask and the prediction.

:func:`create_app` builds the FastAPI app for one trained run (see :mod:`autorad.apps.serve.app` for the routes);
:func:`serve` runs it with uvicorn. Needs the ``serve`` extra (``pip install "autorad[serve]"``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`autorad.apps.serve.app.create_app`."""
    from autorad.apps.serve.app import create_app as _create

    return _create(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> None:
    """See :func:`autorad.apps.serve.server.serve`."""
    from autorad.apps.serve.server import serve as _serve

    _serve(*args, **kwargs)
