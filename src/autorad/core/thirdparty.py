"""Third-party chatter goes to autorad's log, never raw onto stderr.

Three sources print on their own: ITK (through SimpleITK and PyRadiomics) writes ``WARNING: In ...`` lines
straight to file descriptor 2 from C++; PyRadiomics installs its own stderr handler on the ``radiomics``
logger; Python warnings (numpy ``RuntimeWarning`` ...) print through :mod:`warnings`. :func:`route_logs` sends
the last two, and :func:`itk_to_log` (around a SimpleITK / PyRadiomics call) the first, to the logger
``autorad.third_party`` at DEBUG level: ``autorad -v`` shows them as ``[autorad]`` lines, a normal run stays
clean. What matters to the user is checked and said by autorad itself (one line, or a warning in the result).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger("autorad.third_party")
ROUTED = ("py.warnings", "radiomics")
_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_capture: tempfile._TemporaryFileWrapper | None = None  # type: ignore[type-arg]


class _Forward(logging.Handler):
    """Re-log a third-party record on ``autorad.third_party`` at DEBUG, naming where it came from."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed third-party record: keep its raw text
            text = str(record.msg)
        log.debug("%s: %s", record.name, " ".join(text.split()))


def route_logs() -> None:
    """Send Python warnings and PyRadiomics' logging to autorad's log (idempotent; call it again after
    ``import radiomics``, which adds its own stderr handler)."""
    logging.captureWarnings(True)
    for name in ROUTED:
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if not isinstance(h, _Forward)]:
            logger.removeHandler(h)
        if not any(isinstance(h, _Forward) for h in logger.handlers):
            logger.addHandler(_Forward())
        logger.propagate = False


@contextlib.contextmanager
def itk_to_log() -> Iterator[None]:
    """While the block runs, what C/C++ code writes to file descriptor 2 (ITK's warnings) is captured and
    logged line by line at DEBUG. Nested and concurrent uses share one capture."""
    global _depth, _saved_fd, _capture
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
                _capture = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the last capture ends)
                _saved_fd = os.dup(2)
                os.dup2(_capture.fileno(), 2)
            except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to capture
                _saved_fd = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None and _capture is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None
                _capture.seek(0)
                text = _capture.read().decode("utf-8", errors="replace")
                _capture.close()
                _capture = None
                for line in text.splitlines():
                    if line.strip():
                        log.debug("ITK: %s", line.strip())
