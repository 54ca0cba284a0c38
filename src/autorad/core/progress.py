"""Progress bars (tqdm) that stay quiet when output is not a terminal unless asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a progress bar on stderr (disabled when AUTORAD_NO_PROGRESS=1, and when there is nothing
    to do: ``total`` 0, e.g. everything cached, shows no empty bar)."""
    disable = os.environ.get("AUTORAD_NO_PROGRESS") == "1"
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if total == 0:
        yield from items
        return
    yield from tqdm(items, desc=desc, unit=unit, total=total, disable=disable, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)
