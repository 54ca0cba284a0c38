"""Keep PyRadiomics and its helpers quiet: only real warnings, no per-filter chatter."""

from __future__ import annotations

import logging
import warnings

# Known, harmless warnings: GLCM's (logged for every image type) and LBP2D's on 3D input (autorad_3d.yaml
# documents that LBP2D runs slice by slice).
_NOISE = ("GLCM is symmetrical", "Calculating Local Binary Pattern in 2D, but extracting features in 3D")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def quiet_radiomics() -> None:
    """Silence PyRadiomics below WARNING, drop its known-harmless warnings (idempotent)."""
    log = logging.getLogger("radiomics")
    log.setLevel(logging.WARNING)
    if not any(isinstance(f, _DropNoise) for f in log.filters):
        log.addFilter(_DropNoise())
        for name in ("radiomics.glcm", "radiomics.imageoperations"):
            logging.getLogger(name).addFilter(_DropNoise())
    # scikit-image warns that LBP on float images "may give unexpected results"; PyRadiomics hands it floats
    # by design, identically in every run.
    warnings.filterwarnings("ignore", message="Applying `local_binary_pattern` to floating-point images")
    # pykwalify loads PyRadiomics' schema extension with the deprecated importlib load_module()
    warnings.filterwarnings("ignore", message=r"the load_module\(\) method is deprecated",
                            category=DeprecationWarning)
