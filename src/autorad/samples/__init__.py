"""Sample CTs that ship with autorad, for a first prediction without any data of your own.

>>> from autorad.samples import get_sample                                  # doctest: +SKIP
>>> s = get_sample("lidc-idri-0001"); s.path, s.center
(PosixPath('.../autorad/samples/lidc-idri-0001'), (96, 96, 6))

Each sample is a real DICOM series folder with its licence and attribution (``ATTRIBUTION.txt``), and the position
of one nodule inside it as a click (column, row, slice; 0-based, as ``autorad predict --center`` takes it).
``docs/scripts/make_sample_ct.py`` writes them from the shared LIDC-IDRI data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autorad.core.errors import InputError

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """A shipped CT series and one nodule in it."""

    name: str
    path: Path
    center: tuple[int, int, int]  # column, row, slice (0-based), inside the nodule
    description: str

    @property
    def attribution(self) -> str:
        return (self.path / "ATTRIBUTION.txt").read_text(encoding="utf-8")


SAMPLES: dict[str, Sample] = {
    "lidc-idri-0001": Sample(
        "lidc-idri-0001", _HERE / "lidc-idri-0001", (96, 96, 6),
        "LIDC-IDRI-0001 (CC BY 3.0): 16 axial slices, 2.5 mm apart, cropped to 192 x 192 pixels (0.70 mm) around "
        "its one large nodule (4 readers: malignancy 5, 5, 5, 4). This patient is in the LIDC training data of the "
        "built-in model `lidc`, so a prediction on it is not an external test."),
}


def sample_names() -> list[str]:
    return sorted(SAMPLES)


def get_sample(name: str) -> Sample:
    """The shipped sample ``name`` (:class:`InputError` naming the known ones otherwise)."""
    s = SAMPLES.get(name)
    if s is None:
        raise InputError(f"--sample {name!r} is not a shipped sample; known: {', '.join(sample_names())}")
    if not any(s.path.glob("*.dcm")):
        raise InputError(f"the sample {name!r} is not installed (no DICOM files in {s.path})")
    return s
