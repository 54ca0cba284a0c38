"""Keep PyRadiomics and its helpers quiet: only real warnings, no per-filter chatter."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from autorad.core.thirdparty import route_logs

# Known, harmless warnings: GLCM's (logged for every image type) and LBP2D's on 3D input (autorad_3d.yaml
# documents that LBP2D runs slice by slice).
_NOISE = ("GLCM is symmetrical", "Calculating Local Binary Pattern in 2D, but extracting features in 3D")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def quiet_radiomics() -> None:
    """Silence PyRadiomics below WARNING, drop its known-harmless log warnings and send the rest to autorad's log
    instead of PyRadiomics' own stderr handler (:func:`autorad.core.thirdparty.route_logs`; idempotent)."""
    import radiomics  # noqa: F401  (its import installs the stderr handler that route_logs replaces)

    route_logs()
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    for name in ("radiomics.glcm", "radiomics.imageoperations"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Hide Python warnings that PyRadiomics' dependencies raise on every call, by design."""
    with warnings.catch_warnings():
        # scikit-image: LBP on float images "may give unexpected results"; PyRadiomics hands it floats
        warnings.filterwarnings("ignore", message="Applying `local_binary_pattern` to floating-point images")
        # pykwalify loads PyRadiomics' schema extension with the deprecated importlib load_module()
        warnings.filterwarnings("ignore", message=r"the load_module\(\) method is deprecated",
                                category=DeprecationWarning)
        yield
