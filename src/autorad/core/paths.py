"""Where things live: the shared real-data folder and safe output paths."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "AUTORAD_SHARED_DATA"
STATE_ENV = "AUTORAD_HOME"


def state_dir() -> Path:
    """autorad's private folder on this machine (the pseudonym key, the log of unexpected errors, the record of
    written output files): ``$AUTORAD_HOME``, else ``$XDG_STATE_HOME/autorad``, else ``~/.local/state/autorad``.
    Nothing in it is ever copied into an output, and no output may be written inside it."""
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "autorad"


def shared_data_dir() -> Path | None:
    """Return the real LIDC data folder, or None when it is absent.

    Looks at ``$AUTORAD_SHARED_DATA`` first, then at ``../shared/data`` next to the repository checkout
    (the layout used in development and CI).
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    repo_root = Path(__file__).resolve().parents[3]
    candidate = repo_root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None

