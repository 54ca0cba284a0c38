"""autorad: AutoRad-Lung, radiomics-guided prompt learning for lung nodule malignancy on CT.

The Python API mirrors the command line: every ``autorad X`` command has a function twin
(see :mod:`autorad.api`).
"""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str, str] = ("benign", "unsure", "malignant")
