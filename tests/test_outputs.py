"""Output-path safety (autorad.core.outputs): what may be written, what is refused, what --overwrite may replace."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from autorad.core.errors import InputError, describe_os_error
from autorad.core.outputs import (
    MARKER,
    prepare_output_dir,
    prepare_output_file,
    read_marker,
    record_output_file,
    write_marker,
)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AUTORAD_HOME", str(home))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return home


def test_new_folder_is_created_and_marked(tmp_path: Path):
    out = prepare_output_dir(tmp_path / "a" / "b", kind="run")
    assert out.is_dir() and read_marker(out)["kind"] == "run"


def test_empty_folder_is_used(tmp_path: Path):
    (tmp_path / "e").mkdir()
    prepare_output_dir(tmp_path / "e", kind="evaluation")
    assert (tmp_path / "e" / MARKER).is_file()


def test_foreign_folder_refused_even_with_overwrite(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(InputError, match="--out .*did not make"):
            prepare_output_dir(victim, kind="dataset", overwrite=overwrite)
    assert (victim / "thesis.tex").read_text() == "years of work"


def test_autorad_folder_needs_overwrite(tmp_path: Path):
    out = prepare_output_dir(tmp_path / "r", kind="evaluation")
    (out / "metrics.json").write_text("{}")
    with pytest.raises(InputError, match="--overwrite"):
        prepare_output_dir(out, kind="evaluation")
    prepare_output_dir(out, kind="evaluation", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_resume_keeps_same_kind_only(tmp_path: Path):
    out = prepare_output_dir(tmp_path / "r", kind="run")
    (out / "config.yaml").write_text("x: 1")
    prepare_output_dir(out, kind="run", resume=True)
    assert (out / "config.yaml").is_file()
    with pytest.raises(InputError, match=r"already holds autorad output \(run\)"):
        prepare_output_dir(out, kind="dataset", resume=True)


def test_file_refused_as_folder(tmp_path: Path):
    (tmp_path / "f.txt").write_text("keep")
    with pytest.raises(InputError, match="--out .*is a file"):
        prepare_output_dir(tmp_path / "f.txt", kind="dataset", overwrite=True)
    assert (tmp_path / "f.txt").read_text() == "keep"


@pytest.mark.parametrize("which", ["cwd", "parent", "dot"])
def test_cwd_and_parents_refused(tmp_path: Path, which: str):
    os.chdir(tmp_path / "cwd")
    Path("x").write_text("user file")
    path = {"cwd": tmp_path / "cwd", "parent": tmp_path, "dot": Path(".")}[which]
    with pytest.raises(InputError, match="current folder"):
        prepare_output_dir(path, kind="dataset", overwrite=True)
    assert Path("x").read_text() == "user file"


def test_inputs_refused(tmp_path: Path):
    src = tmp_path / "data" / "dicom"
    src.mkdir(parents=True)
    (src / "a.dcm").write_bytes(b"x")
    with pytest.raises(InputError, match="is the input"):
        prepare_output_dir(src, kind="dataset", inputs=(src,), overwrite=True)
    with pytest.raises(InputError, match="contains the input"):
        prepare_output_dir(tmp_path / "data", kind="dataset", inputs=(src,))
    with pytest.raises(InputError, match="inside the input"):
        prepare_output_dir(src / "out", kind="dataset", inputs=(src,))
    with pytest.raises(InputError, match="--report .*inside the input"):
        prepare_output_file(src / "r.html", inputs=(src,), option="--report")
    with pytest.raises(InputError, match="is the input"):
        prepare_output_file(src / "a.dcm", inputs=(src / "a.dcm",), overwrite=True)
    assert (src / "a.dcm").read_bytes() == b"x"


def test_state_folder_refused(tmp_path: Path, _home: Path):
    with pytest.raises(InputError, match="private state folder"):
        prepare_output_dir(_home / "x", kind="dataset")


def test_existing_file_needs_overwrite_and_autorad_authorship(tmp_path: Path):
    mine, theirs = tmp_path / "mine.html", tmp_path / "theirs.html"
    prepare_output_file(mine)
    mine.write_text("report")
    record_output_file(mine)
    theirs.write_text("user's")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        prepare_output_file(mine)
    prepare_output_file(mine, overwrite=True)  # autorad wrote exactly these bytes
    with pytest.raises(InputError, match="not written by autorad"):
        prepare_output_file(theirs, overwrite=True)
    mine.write_text("edited by the user")
    with pytest.raises(InputError, match="not written by autorad"):
        prepare_output_file(mine, overwrite=True)


def test_files_of_a_run_folder_are_never_replaced(tmp_path: Path):
    run = prepare_output_dir(tmp_path / "run", kind="run")
    (run / "report.html").write_text("run report")
    with pytest.raises(InputError, match="file of an autorad run folder"):
        prepare_output_file(run / "report.html", overwrite=True)
    sweep = prepare_output_dir(tmp_path / "sweep", kind="sweep")
    (sweep / "compare.md").write_text("old")
    prepare_output_file(sweep / "compare.md", overwrite=True)


def test_file_path_that_is_a_folder(tmp_path: Path):
    with pytest.raises(InputError, match="--report .*is a folder"):
        prepare_output_file(tmp_path, option="--report")


def test_marker_written_by_atomic_writers(tmp_path: Path):
    write_marker(tmp_path, "dataset")
    assert read_marker(tmp_path) == {"autorad_output": True, "kind": "dataset",
                                     "autorad_version": read_marker(tmp_path)["autorad_version"]}


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                             (errno.EACCES, "permission denied"), (errno.EISDIR, "is a folder")])
def test_os_errors_name_the_option(tmp_path: Path, code: int, words: str):
    err = OSError(code, os.strerror(code), str(tmp_path / "out" / "folds" / "0" / "model.json"))
    line = describe_os_error(err, {"--out": str(tmp_path / "out")})
    assert line.startswith(f"--out {tmp_path / 'out'} (") and words in line
    tmp_sibling = OSError(code, os.strerror(code), str(tmp_path / ".r.html.tmp-abc"))
    assert describe_os_error(tmp_sibling, {"--report": str(tmp_path / "r.html")}).startswith("--report")


def test_other_os_errors_are_not_user_faults():
    assert describe_os_error(OSError(errno.EBADF, "bad fd")) is None


def test_folders_from_before_the_marker_are_recognised(tmp_path: Path):
    """A run written before the marker existed (run.json with autorad_version beside metrics.json) counts as
    autorad's: resumed (and then marked), or replaced with --overwrite; a look-alike without those files does not."""
    old = tmp_path / "old_run"
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    (old / "run.json").write_text('{"autorad_version": "0.0.9", "model_kind": "coop"}')
    assert read_marker(old) == {"autorad_output": True, "kind": "run", "legacy": True}
    prepare_output_dir(old, kind="run", resume=True)
    assert read_marker(old)["kind"] == "run" and "legacy" not in read_marker(old)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.json").write_text('{"name": "mine"}')
    (fake / "metrics.json").write_text("{}")
    with pytest.raises(InputError, match="did not make"):
        prepare_output_dir(fake, kind="run", overwrite=True)
