"""Keyed pseudonyms for patient IDs and UIDs that are not already public pseudonyms.

``pseudonym(text)`` is ``anon-`` + the first 16 hex digits of HMAC-SHA256(key, text). The key is 32 random bytes
made on first use and kept in autorad's private state folder (:func:`autorad.core.paths.state_dir`, file
``pseudonym.key``, mode 0600); it is never written into a dataset, run or report, and no output may be written
inside that folder.

Threat covered: someone who has autorad's outputs (a dataset, run, report or table) and a list of candidate
patient IDs cannot test the candidates, because without the key every guess gives an unrelated pseudonym (an
unkeyed hash, as before, could be reversed by hashing each candidate). Not covered: someone who also has the key
file (anyone with access to this account on this machine); image content itself; re-identification from the
CT pixels or from linking nodule sizes with other records.

Stability: the same installation (same key) gives the same pseudonym for the same ID, so folds stay
patient-level across re-ingests. Another machine makes another key, hence other pseudonyms for non-LIDC IDs; to
share pseudonyms across machines point ``$AUTORAD_HOME`` at a folder holding the same key file. Losing the key
only means new ingests get new pseudonyms. LIDC pseudonyms (``LIDC-IDRI-NNNN``) and TCIA-issued UIDs are public
already and kept as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from autorad.core.errors import InputError
from autorad.core.paths import state_dir

KEY_FILE = "pseudonym.key"
KEY_BYTES = 32
HEX_DIGITS = 16
_cache: dict[str, bytes] = {}


def pseudonym_key() -> bytes:
    """This installation's pseudonym key (created with mode 0600 on first use)."""
    path = state_dir() / KEY_FILE
    cached = _cache.get(str(path))
    if cached is not None:
        return cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:  # O_EXCL: two processes starting at once never make two keys
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except OSError as err:
        raise InputError(f"cannot read or create the pseudonym key {path} ({err.strerror}); set $AUTORAD_HOME "
                         f"to a private folder you can write") from None
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) < 16:  # an empty file from a crash between create and write, or a damaged file
        raise InputError(f"the pseudonym key {path} is damaged; restore it from a backup, or delete it to start "
                         f"new pseudonyms (earlier datasets then get other patient pseudonyms)")
    _cache[str(path)] = key
    return key


def pseudonym(text: str) -> str:
    """``anon-`` + 16 hex digits of HMAC-SHA256(installation key, ``text``)."""
    digest = hmac.new(pseudonym_key(), text.encode("utf-8"), hashlib.sha256).hexdigest()
    return "anon-" + digest[:HEX_DIGITS]
