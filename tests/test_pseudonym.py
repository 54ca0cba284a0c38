"""Keyed pseudonyms: HMAC-SHA256 with a per-installation key kept in autorad's state folder."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from autorad.core import pseudonym as ps
from autorad.core.errors import InputError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTORAD_HOME", str(tmp_path / "home"))
    ps._cache.clear()
    yield tmp_path / "home"
    ps._cache.clear()


def test_keyed_stable_and_private(home: Path):
    a = ps.pseudonym("HOSP12345678")
    assert a == ps.pseudonym("HOSP12345678") and a.startswith("anon-") and len(a) == 21
    key = bytes.fromhex((home / ps.KEY_FILE).read_text().strip())
    assert a == "anon-" + hmac.new(key, b"HOSP12345678", hashlib.sha256).hexdigest()[:16]
    assert a[5:] not in hashlib.sha256(b"HOSP12345678").hexdigest()  # the old, reversible form
    assert (home / ps.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_another_installation_gives_other_pseudonyms(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = ps.pseudonym("HOSP12345678")
    monkeypatch.setenv("AUTORAD_HOME", str(tmp_path / "other"))
    assert ps.pseudonym("HOSP12345678") != first


def test_unwritable_state_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("AUTORAD_HOME", str(blocker / "home"))
    ps._cache.clear()
    with pytest.raises(InputError, match="AUTORAD_HOME"):
        ps.pseudonym("x")


def test_damaged_key_is_refused(home: Path):
    home.mkdir(parents=True)
    (home / ps.KEY_FILE).write_text("")
    with pytest.raises(InputError, match="damaged"):
        ps.pseudonym("x")
