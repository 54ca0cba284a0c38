"""The original LIDC-IDRI reader annotation XML (``LidcReadMessage``, namespace http://www.nih.gov).

Each ``readingSession`` is one radiologist's read. Its ``unblindedReadNodule`` elements with
``characteristics`` are nodules of 3 mm or more, outlined slice by slice: every ``roi`` has
``imageZposition``, ``imageSOP_UID``, ``inclusion`` (TRUE = outline of the nodule, FALSE = a hole to remove)
and ``edgeMap`` points (x = column, y = row, in pixels). Nodules under 3 mm (no characteristics, a single
point) and ``nonNodule`` marks are counted but not returned. Element names are matched without their
namespace, so older files without one also read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autorad.core.errors import InputError
from autorad.data.dataset import RATING_NAMES

LIDC_NAMESPACE = "http://www.nih.gov"
# XML rating names, lower-cased (internalStructure -> internalstructure), to their RATING_NAMES index
_RATING_INDEX = {name: i for i, name in enumerate(RATING_NAMES)}


@dataclass
class Roi:
    """One outline on one slice."""

    z_mm: float
    sop_uid: str
    inclusion: bool
    xy: np.ndarray  # (n, 2) int: x = column, y = row


@dataclass
class ReaderNodule:
    """One reader's annotation of one nodule (>= 3 mm)."""

    session: int  # index of the reading session (reader) in the file, 0-based
    ratings: np.ndarray  # (9,) int16 in RATING_NAMES order, 0 = not rated
    rois: list[Roi]

    @property
    def z_values(self) -> list[float]:
        return sorted({r.z_mm for r in self.rois})

    def points_xyz(self) -> np.ndarray:
        """All edge points as (x, y, z_mm) rows."""
        return np.concatenate([np.c_[r.xy, np.full(len(r.xy), r.z_mm)] for r in self.rois], axis=0)


@dataclass
class LidcAnnotations:
    """Everything usable in one XML file."""

    series_uid: str
    nodules: list[ReaderNodule] = field(default_factory=list)
    n_sessions: int = 0
    n_small_nodules: int = 0  # marks of nodules under 3 mm (ignored)
    n_non_nodules: int = 0  # nonNodule marks (ignored)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str) -> str:
    c = _child(el, name)
    return (c.text or "").strip() if c is not None else ""


def _parse_roi(roi: ET.Element, where: str) -> Roi | None:
    try:
        z = float(_text(roi, "imageZposition"))
        pts = [(int(round(float(_text(e, "xCoord")))), int(round(float(_text(e, "yCoord")))))
               for e in _children(roi, "edgeMap")]
    except ValueError:
        raise InputError(f"{where}: an roi has a non-numeric imageZposition or edgeMap coordinate") from None
    if not pts:
        return None
    inclusion = _text(roi, "inclusion").upper() == "TRUE"
    return Roi(z_mm=z, sop_uid=_text(roi, "imageSOP_UID"), inclusion=inclusion,
               xy=np.asarray(pts, dtype=np.int64))


def _parse_ratings(chars: ET.Element, where: str) -> np.ndarray:
    ratings = np.zeros(len(RATING_NAMES), dtype=np.int16)
    for c in chars:
        i = _RATING_INDEX.get(_local(c.tag).lower())
        txt = (c.text or "").strip()
        if i is None or not txt:
            continue
        try:
            ratings[i] = int(float(txt))
        except ValueError:
            raise InputError(f"{where}: rating {_local(c.tag)} is not a number ({txt!r})") from None
    return ratings


def parse_lidc_xml(path: str | Path) -> LidcAnnotations:
    """Parse one LIDC reader XML; :class:`InputError` when it does not parse or is not an LIDC read message.

    Returns the nodules of 3 mm or more (with characteristics and at least one outline) of every reading
    session, in file order. An XML with no such nodule returns an empty ``nodules`` list (the caller decides).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise InputError(f"annotation XML {path.name} does not parse: {str(err).splitlines()[0]}") from None
    if _local(root.tag) != "LidcReadMessage":
        raise InputError(f"annotation XML {path.name} is not an LIDC read message "
                         f"(root <{_local(root.tag)}>)")
    header = _child(root, "ResponseHeader")
    series_uid = _text(header, "SeriesInstanceUid") if header is not None else ""
    out = LidcAnnotations(series_uid=series_uid)
    for s_i, session in enumerate(_children(root, "readingSession")):
        out.n_sessions += 1
        out.n_non_nodules += len(_children(session, "nonNodule"))
        for nod in _children(session, "unblindedReadNodule"):
            chars = _child(nod, "characteristics")
            where = f"{path.name} (reading session {s_i + 1})"
            if chars is None or len(chars) == 0:
                out.n_small_nodules += 1
                continue
            rois = [r for r in (_parse_roi(roi, where) for roi in _children(nod, "roi")) if r is not None]
            if not rois:
                out.n_small_nodules += 1
                continue
            out.nodules.append(ReaderNodule(session=s_i, ratings=_parse_ratings(chars, where), rois=rois))
    return out
