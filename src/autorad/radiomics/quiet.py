"""Keep PyRadiomics and its helpers quiet: only real warnings, no per-filter chatter."""

from __future__ import annotations

import logging
import warnings

_NOISE = ("GLCM is symmetrical",)  # logged as a warning for every image type, though nothing is wrong


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def quiet_radiomics() -> None:
    """Silence PyRadiomics below WARNING, drop its known-harmless warnings (idempotent)."""
    log = logging.getLogger("radiomics")
    log.setLevel(logging.WARNING)
    if not any(isinstance(f, _DropNoise) for f in log.filters):
        log.addFilter(_DropNoise())
        for name in ("radiomics.glcm",):
            logging.getLogger(name).addFilter(_DropNoise())
    # scikit-image warns that LBP on float images "may give unexpected results"; PyRadiomics hands it floats
    # by design, identically in every run.
    warnings.filterwarnings("ignore", message="Applying `local_binary_pattern` to floating-point images")
