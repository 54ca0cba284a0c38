"""User data is never destroyed and every user or environment fault is one line with exit 2, through the real
CLI: output paths autorad must not touch, option values out of bounds, disk full, read-only file systems,
permission denied, hostile configs, edited or foreign run files, and unexpected internal errors.

Every command line of this file runs once, in one batch (:mod:`robustness.cli_batch`: each case is its own
forked ``autorad`` process); cases run in the order written, so a case can rely on the ones before it. The
tests below check one case each and are the table of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dicom_factory import make_ct_series, make_lidc_case

from autorad import __version__
from autorad.core.outputs import MARKER
from autorad.train.checkpoint import seal_meta
from robustness.cli_batch import CliResult, run_batch

CENTER = ["--center", "19,30,6", "--diameter-mm", "6"]
USER_TEXT = "the user's own work"
PHANTOM = ["ingest", "phantom", "--n", "10", "--folds", "2"]


CACHES = ("radiomics", "embeddings")  # a dataset's feature caches, which later commands legitimately update


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` (hidden ones included; a dataset's caches left out) with its mode and bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes())
            for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and not str(p.relative_to(folder)).startswith(CACHES)}


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text(USER_TEXT)
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def _edit_sidecar(run: Path, dest: Path, change, reseal: bool) -> Path:
    shutil.copytree(run, dest)
    f = dest / "final" / "model" / "model.json"
    meta = json.loads(f.read_text())
    change(meta)
    f.write_text(json.dumps(seal_meta(meta) if reseal else meta))
    return dest


def _has_option(command: str, option: str) -> bool:
    """Whether ``autorad COMMAND`` offers ``option`` (cases of commands still being built are skipped)."""
    import argparse

    from autorad.apps.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return any(option in a.option_strings for a in action.choices[command]._actions)
    return False


def _nifti_like(path: Path) -> Path:
    import numpy as np
    import SimpleITK as sitk  # noqa: N813

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 16, 16), np.int16)), str(path))
    return path


FILLER = "filler.bin"  # takes every free byte of the "full" file system


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # no space left: done
        pass
    finally:
        os.close(fd)


def _use_all_inodes(folder: Path) -> None:
    i = 0
    try:
        while True:
            (folder / f"{FILLER}.{i}").touch()
            i += 1
    except OSError:
        pass


def _try_mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path, logreg_run: Path):
    """Build every situation, run every command line in one batch; return name -> (result, context)."""
    t = tmp_path_factory.mktemp("safety")
    ds, run = small_dataset, t / "run"
    shutil.copytree(logreg_run, run)
    series = make_ct_series(t / "series").folder
    lidc_root = t / "lidc"
    make_lidc_case(lidc_root)
    user_file = t / "notes.txt"
    user_file.write_text(USER_TEXT)
    user_dir = _user_folder(t / "thesis")
    work = _user_folder(t / "work")  # the current folder of some cases
    old_ds = t / "old_ds"
    shutil.copytree(ds, old_ds)
    resume_run, other_run = t / "resume_run", t / "other_run"
    shutil.copytree(logreg_run, resume_run)
    shutil.copytree(logreg_run, other_run)
    (t / "cmp_user.md").write_text(USER_TEXT)
    (t / "user_mask.nii.gz").write_text(USER_TEXT)
    (t / "out_dir_dot.yaml").write_text("extends: radiomics_logreg\nout_dir: .\n")
    edited = {
        "classes": _edit_sidecar(logreg_run, t / "run_classes",
                                 lambda m: m["class_names"].reverse() or m["config"]["model"]["class_names"].reverse(),
                                 reseal=False),
        "no_version": _edit_sidecar(logreg_run, t / "run_no_version", lambda m: m.pop("autorad_version"),
                                    reseal=False),
        "other_version": _edit_sidecar(logreg_run, t / "run_other_version",
                                       lambda m: m.update(autorad_version="9.9.9"), reseal=True),
        "other_format": _edit_sidecar(logreg_run, t / "run_other_format",
                                      lambda m: m.update(format_version=3), reseal=True),
    }
    bomb = t / "bomb.yaml"
    bomb.write_text("".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
                            for p, c in zip(["", *"abcdefg"], "abcdefgh", strict=True))
                    + "name: [" + ", ".join(["*h"] * 9) + "]\n")
    (t / "dup.yaml").write_text("extends: radiomics_logreg\ntrain:\n  epochs: 3\n  epochs: 4\n")
    (t / "big.yaml").write_text("name: x\n" + "#" * (2 << 20) + "\n")

    # environment faults: a full disk and a read-only file system (tmpfs mounts; root only), a folder the
    # (unprivileged) user may not write
    full, ro, no_inodes = t / "full", t / "ro", t / "no_inodes"
    perm_base = Path(tempfile.mkdtemp(prefix="autorad-perm-", dir="/tmp"))
    os.chmod(perm_base, 0o755)
    locked = perm_base / "locked"
    locked.mkdir(mode=0o555)
    os.chmod(locked, 0o555)
    nobody_home = perm_base / "home"
    nobody_home.mkdir(mode=0o777)
    os.chmod(nobody_home, 0o777)
    shared_run = perm_base / "run"  # inputs readable by anyone, but for one file each
    shutil.copytree(logreg_run, shared_run)
    locked_series = make_ct_series(perm_base / "series")
    _nifti_like(perm_base / "ct.nrrd")
    (perm_base / "c.yaml").write_text("extends: radiomics_logreg\n")
    for p in perm_base.rglob("*"):
        if p != locked:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    for p in (locked_series.files[3], perm_base / "ct.nrrd", perm_base / "c.yaml"):
        os.chmod(p, 0)
    nobody = {"unprivileged": True, "env": {"AUTORAD_HOME": str(nobody_home)}}

    c: dict[str, dict | list] = {
        # ---- output folders
        "ingest_out_user_file": PHANTOM + ["--out", user_file],
        "ingest_out_user_folder": PHANTOM + ["--out", user_dir],
        "ingest_out_user_folder_overwrite": PHANTOM + ["--out", user_dir, "--overwrite"],
        "ingest_out_is_input": ["ingest", "lidc", lidc_root, "--out", lidc_root, "--overwrite"],
        "ingest_out_contains_input": ["ingest", "lidc", lidc_root, "--out", t, "--overwrite"],
        "ingest_out_dot": {"argv": PHANTOM + ["--out", ".", "--overwrite"], "cwd": work},
        "ingest_out_parent": {"argv": PHANTOM + ["--out", "..", "--overwrite"], "cwd": work},
        "ingest_out_cwd_absolute": {"argv": PHANTOM + ["--out", work], "cwd": work},
        "ingest_out_autorad_dataset": PHANTOM + ["--out", old_ds],
        "ingest_out_autorad_dataset_overwrite": PHANTOM + ["--out", old_ds, "--overwrite"],
        "train_out_is_dataset": ["train", ds, "--config", "radiomics_logreg", "--out", ds, "--overwrite"],
        "train_out_user_folder": ["train", ds, "--config", "radiomics_logreg", "--out", user_dir],
        "train_other_config": ["train", ds, "--config", "radiomics_logreg", "--set", "model.logreg_c=0.5",
                               "--out", other_run],
        "train_resume_same_config": ["train", ds, "--config", "radiomics_logreg", "--out", resume_run],
        "train_other_config_overwrite": ["train", ds, "--config", "radiomics_logreg", "--set",
                                         "model.logreg_c=0.5", "--set", "train.final_model=false", "--out",
                                         other_run, "--overwrite"],
        "sweep_out_user_folder": ["sweep", ds, "--config", "radiomics_logreg", "--param", "model.logreg_c",
                                  "--values", "0.1", "--out", user_dir],
        "run_out_dot": {"argv": ["run", "radiomics_logreg", "--out", ".", "--overwrite"], "cwd": work},
        "run_config_out_dir_dot": {"argv": ["run", t / "out_dir_dot.yaml"], "cwd": work},
        "evaluate_out_is_run": ["evaluate", run, "--data", ds, "--out", run, "--overwrite"],
        "evaluate_out_inside_run": ["evaluate", run, "--data", ds, "--out", run / "eval"],
        "evaluate_out_is_dataset": ["evaluate", run, "--data", ds, "--out", ds, "--overwrite"],
        "evaluate_new": ["evaluate", run, "--data", ds, "--out", t / "eval"],
        "evaluate_again": ["evaluate", run, "--data", ds, "--out", t / "eval"],
        "evaluate_again_overwrite": ["evaluate", run, "--data", ds, "--out", t / "eval", "--overwrite"],
        # ---- output files
        "compare_out_inside_run": ["compare", run, "--out", run / "metrics", "--overwrite"],
        "compare_out_user_file": ["compare", run, "--out", t / "cmp_user"],
        "compare_out_user_file_overwrite": ["compare", run, "--out", t / "cmp_user", "--overwrite"],
        "compare_new": ["compare", run, "--out", t / "cmp_new.md"],
        "compare_again_overwrite": ["compare", run, "--out", t / "cmp_new", "--overwrite"],
        "predict_report_inside_run": ["predict", run, "--dicom", series, *CENTER, "--report",
                                      run / "report.html", "--overwrite"],
        "predict_report_user_file": ["predict", run, "--dicom", series, *CENTER, "--report", user_file],
        "predict_report_user_file_overwrite": ["predict", run, "--dicom", series, *CENTER, "--report", user_file,
                                               "--overwrite"],
        "predict_report_is_folder": ["predict", run, "--dicom", series, *CENTER, "--report", user_dir],
        "predict_report_parent_is_file": ["predict", run, "--dicom", series, *CENTER, "--report",
                                          user_file / "r.html"],
        "predict_report_new": ["predict", run, "--dicom", series, *CENTER, "--report", t / "pred.html"],
        "predict_report_again_overwrite": ["predict", run, "--dicom", series, *CENTER, "--report",
                                           t / "pred.html", "--overwrite"],
        "segment_out_inside_input": ["segment", "--dicom", series, "--center", "19,30,6", "--out",
                                     series / "mask.nii.gz", "--overwrite"],
        "segment_out_user_file_overwrite": ["segment", "--dicom", series, "--center", "19,30,6", "--out",
                                            t / "user_mask.nii.gz", "--overwrite"],
        # ---- option values
        "option_n_zero": PHANTOM[:2] + ["--n", "0", "--out", t / "o1"],
        "option_limit_zero": ["ingest", "maxslice", t / "x.npz", "--limit", "0", "--out", t / "o2"],
        "option_folds_one": PHANTOM[:2] + ["--folds", "1", "--out", t / "o3"],
        "option_crop_factor_zero": PHANTOM + ["--crop-factor", "0", "--out", t / "o4"],
        "option_min_readers_nine": PHANTOM + ["--min-readers", "9", "--out", t / "o5"],
        "option_jobs_zero": ["radiomics", ds, "--jobs", "0"],
        "option_folds_not_a_number": PHANTOM[:2] + ["--folds", "many", "--out", t / "o6"],
        "option_diameter_zero": ["predict", run, "--dicom", series, "--center", "19,30,6", "--diameter-mm", "0"],
        "option_center_negative": ["predict", run, "--dicom", series, "--center", "-1,360,7", "--diameter-mm", "6"],
        "option_batch_size_zero": ["embed", ds, "--encoder", "tiny-vit-2d", "--batch-size", "0"],
        # ---- configs
        "config_yaml_bomb": ["train", ds, "--config", bomb, "--out", t / "r_bomb"],
        "config_duplicate_key": ["train", ds, "--config", t / "dup.yaml", "--out", t / "r_dup"],
        "config_too_large": ["train", ds, "--config", t / "big.yaml", "--out", t / "r_big"],
        "config_is_folder": ["train", ds, "--config", user_dir, "--out", t / "r_dir"],
        "npz_is_folder": ["ingest", "maxslice", user_dir, "--out", t / "ds_npz_dir"],
        "image_is_folder": ["predict", run, "--image", user_dir, "--center", "1,1,1", "--diameter-mm", "5"],
        "config_long_value": ["train", ds, "--config", "radiomics_logreg", "--set",
                              "name=[" + ",".join(["123456789"] * 3000) + "]", "--out", t / "r_long"],
        # ---- run integrity
        "sidecar_class_names_reversed": ["predict", edited["classes"], "--dicom", series, *CENTER],
        "sidecar_version_removed": ["predict", edited["no_version"], "--dicom", series, *CENTER],
        "sidecar_other_version": ["predict", edited["other_version"], "--dicom", series, *CENTER],
        "sidecar_other_format": ["predict", edited["other_format"], "--dicom", series, *CENTER],
        "sidecar_edited_evaluate": ["evaluate", edited["classes"], "--data", ds, "--out", t / "ev_edited"],
        # ---- environment
        "env_permission_denied": {"argv": PHANTOM + ["--out", locked / "ds"], **nobody},
        "env_unreadable_dicom": {"argv": ["predict", shared_run, "--dicom", locked_series.folder, *CENTER], **nobody},
        "env_unreadable_image": {"argv": ["predict", shared_run, "--image", perm_base / "ct.nrrd", "--center",
                                          "2,2,2", "--diameter-mm", "3"], **nobody},
        "env_unreadable_config": {"argv": ["train", ds, "--config", perm_base / "c.yaml", "--out", t / "r_perm"],
                                  **nobody},
        "env_unexpected_error": {"argv": ["train", ds, "--config", "radiomics_logreg", "--out", t / "r_bug"],
                                 "inject": "autorad.train.entry:train"},
        "baseline_version": ["--version"],
    }
    if _has_option("predict", "--save-mask"):  # the predictor's file outputs and batch / robustness folders
        (t / "nodules.csv").write_text(f"id,ct,center\nn1,{series},\"19,30,6\"\n")
        c.update({
            "predict_save_mask_inside_run": ["predict", run, "--dicom", series, *CENTER, "--save-mask",
                                             run / "mask.nii.gz", "--overwrite"],
            "predict_dicom_seg_over_user_file": ["predict", run, "--dicom", series, *CENTER, "--dicom-seg",
                                                 user_file, "--overwrite"],
            "predict_nodules_out_user_folder": ["predict", run, "--nodules", t / "nodules.csv", "--out", user_dir,
                                                "--overwrite"],
            "robustness_out_is_run": ["robustness", run, "--data", ds, "--out", run, "--overwrite"],
        })
    mounted = _try_mount(full, "size=64k")
    mounted = mounted and _try_mount(ro, "size=64k,ro") and _try_mount(no_inodes, "size=64k,nr_inodes=8")
    if mounted:
        c["env_disk_full_ingest"] = PHANTOM + ["--out", full / "ds"]
        c["env_disk_full_evaluate"] = ["evaluate", run, "--data", ds, "--out", full / "eval"]
        c["env_read_only"] = PHANTOM + ["--out", ro / "ds"]
        # tmpfs still takes a few bytes when its pages are all used: small files need a file system that is out
        # of inodes (also "no space left on device")
        c["env_disk_full_segment"] = ["segment", "--dicom", series, "--center", "19,30,6", "--out",
                                      no_inodes / "mask.nii.gz"]
        c["env_disk_full_report"] = ["predict", run, "--dicom", series, *CENTER, "--report", no_inodes / "p.html"]
    before = {"user_dir": _snapshot(user_dir), "work": _snapshot(work), "lidc": _snapshot(lidc_root),
              "run": _snapshot(run), "ds": _snapshot(ds), "user_file": user_file.read_bytes()}
    names = list(c)
    try:
        if mounted:
            _fill(full / FILLER)
            _use_all_inodes(no_inodes)
        results = run_batch([c[n] for n in names], t / "batch")
    finally:
        if mounted:
            full_left = sorted(p.name for m in (full, no_inodes) for p in m.rglob("*")
                               if not p.name.startswith(FILLER))
            ro_left = sorted(p.name for p in ro.rglob("*"))
        else:
            full_left = ro_left = []
        for m in (full, ro, no_inodes):
            if os.path.ismount(m):
                subprocess.run(["umount", str(m)], check=False)
        shutil.rmtree(perm_base, ignore_errors=True)
    ctx = {"t": t, "before": before, "user_dir": user_dir, "work": work, "lidc": lidc_root, "run": run, "ds": ds,
           "user_file": user_file, "old_ds": old_ds, "resume_run": resume_run, "other_run": other_run,
           "mounted": mounted, "full_left": full_left, "ro_left": ro_left}
    return {n: r for n, r in zip(names, results, strict=True)}, ctx


def refused(cases, name: str, *words: str) -> str:
    """Exit 2, one ``autorad: error:`` line holding every word (case-insensitive), no traceback."""
    results, _ = cases
    line = results[name].refusal_line(*words)
    assert len(line) < 1024
    return line


def done(cases, name: str) -> CliResult:
    results, _ = cases
    r = results[name]
    r.assert_no_traceback()
    assert r.rc == 0, r.err[-2000:]
    return r


def _unchanged(cases, key: str) -> None:
    _, ctx = cases
    now = ctx["user_file"].read_bytes() if key == "user_file" else _snapshot(ctx[key])
    assert now == ctx["before"][key], f"{key} was changed"


# ------------------------------------------------------------------------------------------ output folders


def test_ingest_into_an_existing_file(cases):
    """ingest --out naming a user's file: refused ('--out ... is a file'), the file keeps its bytes."""
    refused(cases, "ingest_out_user_file", "--out", "is a file")
    _unchanged(cases, "user_file")


def test_ingest_into_a_user_folder(cases):
    """ingest --out naming a non-empty folder autorad did not make: refused ('did not make'), untouched."""
    refused(cases, "ingest_out_user_folder", "--out", "did not make")
    _unchanged(cases, "user_dir")


def test_overwrite_never_touches_a_user_folder(cases):
    """The same with --overwrite: still refused; --overwrite only replaces autorad's own output."""
    refused(cases, "ingest_out_user_folder_overwrite", "--out", "did not make")
    _unchanged(cases, "user_dir")


def test_ingest_out_is_the_input(cases):
    """ingest lidc X --out X --overwrite: refused ('is the input'); the input DICOM is intact."""
    refused(cases, "ingest_out_is_input", "--out", "is the input")
    _unchanged(cases, "lidc")


def test_ingest_out_contains_the_input(cases):
    """--out naming a folder that contains the input: refused ('contains the input')."""
    refused(cases, "ingest_out_contains_input", "--out", "contains the input")
    _unchanged(cases, "lidc")


def test_out_is_the_current_folder(cases):
    """--out . (with --overwrite): refused ('the current folder'); nothing created or removed there, no
    temporary leftovers."""
    refused(cases, "ingest_out_dot", "--out .", "current folder")
    _unchanged(cases, "work")
    assert not [p for p in cases[1]["work"].parent.iterdir() if ".tmp-" in p.name]


def test_out_is_a_parent_of_the_current_folder(cases):
    """--out ..: refused ('a parent of the current folder')."""
    refused(cases, "ingest_out_parent", "--out ..", "parent of the current folder")


def test_out_is_the_current_folder_by_absolute_path(cases):
    """--out naming the current folder by its absolute path: refused."""
    refused(cases, "ingest_out_cwd_absolute", "current folder")
    _unchanged(cases, "work")


def test_earlier_dataset_needs_overwrite(cases):
    """ingest --out naming an earlier autorad dataset: refused ('pass --overwrite')."""
    refused(cases, "ingest_out_autorad_dataset", "--out", "already holds autorad output (dataset)", "--overwrite")


def test_earlier_dataset_replaced_with_overwrite(cases):
    """The same with --overwrite: replaced by the new (phantom) dataset, marked as autorad's."""
    done(cases, "ingest_out_autorad_dataset_overwrite")
    old = cases[1]["old_ds"]
    assert json.loads((old / "dataset.json").read_text())["source"] == "phantom"
    assert (old / MARKER).is_file()


def test_train_into_the_dataset(cases):
    """train --out naming its own dataset (with --overwrite): refused ('is the input'); dataset intact."""
    refused(cases, "train_out_is_dataset", "--out", "is the input")
    _unchanged(cases, "ds")


def test_train_into_a_user_folder(cases):
    """train --out naming a folder of the user's: refused, untouched (no merging into it)."""
    refused(cases, "train_out_user_folder", "--out", "did not make")
    _unchanged(cases, "user_dir")


def test_train_into_a_run_of_another_config(cases):
    """train --out naming a run of another config: refused ('another config', 'pass --overwrite')."""
    refused(cases, "train_other_config", "--out", "another config", "--overwrite")


def test_train_resumes_a_run_of_the_same_config(cases):
    """train --out naming a run of the same config: resumes; no fold is retrained (checkpoints unchanged)."""
    _, ctx = cases
    done(cases, "train_resume_same_config")
    run = ctx["resume_run"]
    # copied from the session run, whose checkpoints were written earlier: a retrain would rewrite them
    assert (run / "folds" / "0" / "model" / "model.json").stat().st_mtime < (run / "run.json").stat().st_mtime


def test_train_overwrite_replaces_an_earlier_run(cases):
    """train --overwrite into a run of another config: the folder is emptied and the new run written (no
    final model this time, so the old one is gone)."""
    _, ctx = cases
    done(cases, "train_other_config_overwrite")
    run = ctx["other_run"]
    assert "logreg_c: 0.5" in (run / "config.yaml").read_text()
    assert not (run / "final").exists()


def test_sweep_into_a_user_folder(cases):
    """sweep --out naming a user's folder: refused before training anything."""
    refused(cases, "sweep_out_user_folder", "--out", "did not make")
    _unchanged(cases, "user_dir")


def test_run_out_is_the_current_folder(cases):
    """autorad run --out . --overwrite: refused ('current folder')."""
    refused(cases, "run_out_dot", "--out .", "current folder")
    _unchanged(cases, "work")


def test_run_config_out_dir_is_the_current_folder(cases):
    """A config whose out_dir is '.': refused, naming out_dir."""
    refused(cases, "run_config_out_dir_dot", "out_dir", "current folder")
    _unchanged(cases, "work")


def test_evaluate_into_its_run(cases):
    """evaluate RUN --out RUN --overwrite: refused; the run's metrics, predictions and report are unchanged."""
    refused(cases, "evaluate_out_is_run", "--out", "is the input")
    _unchanged(cases, "run")


def test_evaluate_inside_its_run(cases):
    """evaluate RUN --out RUN/eval: refused ('inside the input'); nothing written into the run."""
    refused(cases, "evaluate_out_inside_run", "--out", "inside the input")
    _unchanged(cases, "run")


def test_evaluate_into_the_dataset(cases):
    """evaluate --out naming the dataset evaluated: refused."""
    refused(cases, "evaluate_out_is_dataset", "--out", "is the input")


def test_evaluate_again_needs_overwrite(cases):
    """A new evaluation folder is written; evaluating into it again is refused without --overwrite and
    replaces it with --overwrite."""
    done(cases, "evaluate_new")
    refused(cases, "evaluate_again", "--out", "already holds autorad output (evaluation)", "--overwrite")
    done(cases, "evaluate_again_overwrite")
    assert (cases[1]["t"] / "eval" / "metrics.json").is_file()


# -------------------------------------------------------------------------------------------- output files


def test_compare_into_a_run(cases):
    """compare RUN --out RUN/metrics --overwrite: refused ('inside the input'); the run is unchanged."""
    refused(cases, "compare_out_inside_run", "--out", "inside the input")
    _unchanged(cases, "run")


def test_compare_over_a_user_file(cases):
    """compare --out X when X.md is the user's: refused ('already exists'); with --overwrite refused ('not
    written by autorad'); the file keeps its text."""
    refused(cases, "compare_out_user_file", "--out", "already exists")
    refused(cases, "compare_out_user_file_overwrite", "--out", "not written by autorad")
    assert (cases[1]["t"] / "cmp_user.md").read_text() == USER_TEXT


def test_compare_says_where_and_overwrites_its_own(cases):
    """compare --out X.md writes X.md and X.csv and says so on stderr; --overwrite replaces them later."""
    r = done(cases, "compare_new")
    t = cases[1]["t"]
    assert f"{t / 'cmp_new.md'} and {t / 'cmp_new.csv'}" in r.err
    done(cases, "compare_again_overwrite")


def test_predict_report_into_the_run(cases):
    """predict RUN --report RUN/report.html --overwrite: refused; the run's own report is unchanged."""
    refused(cases, "predict_report_inside_run", "--report", "inside the input")
    _unchanged(cases, "run")


def test_predict_report_over_a_user_file(cases):
    """--report naming a user's file: refused ('already exists'), with --overwrite refused ('not written by
    autorad'); the file keeps its bytes."""
    refused(cases, "predict_report_user_file", "--report", "already exists")
    refused(cases, "predict_report_user_file_overwrite", "--report", "not written by autorad")
    _unchanged(cases, "user_file")


def test_predict_report_is_a_folder(cases):
    """--report naming a folder: refused ('is a folder; give a file name')."""
    refused(cases, "predict_report_is_folder", "--report", "is a folder")
    _unchanged(cases, "user_dir")


def test_predict_report_under_a_file(cases):
    """--report whose parent is a file: refused, naming it."""
    refused(cases, "predict_report_parent_is_file", "--report", "is a file, not a folder")


def test_predict_report_overwrites_its_own(cases):
    """A report autorad wrote is replaced with --overwrite."""
    done(cases, "predict_report_new")
    done(cases, "predict_report_again_overwrite")


def test_segment_mask_into_its_input(cases):
    """segment --out inside the DICOM series it reads (with --overwrite): refused ('inside the input')."""
    refused(cases, "segment_out_inside_input", "--out", "inside the input")
    assert not (cases[1]["t"] / "series" / "mask.nii.gz").exists()


def test_segment_mask_over_a_user_file(cases):
    """segment --out naming a user's file, with --overwrite: refused ('not written by autorad'), unchanged."""
    refused(cases, "segment_out_user_file_overwrite", "--out", "not written by autorad")
    assert (cases[1]["t"] / "user_mask.nii.gz").read_text() == USER_TEXT


def _needs(cases, name: str) -> None:
    if name not in cases[0]:
        pytest.skip("this autorad has no such output option yet")


def test_predict_outputs_never_enter_the_run(cases):
    """predict --save-mask inside the run (with --overwrite): refused ('inside the input'); run unchanged."""
    _needs(cases, "predict_save_mask_inside_run")
    refused(cases, "predict_save_mask_inside_run", "--save-mask", "inside the input")
    _unchanged(cases, "run")


def test_predict_dicom_seg_over_a_user_file(cases):
    """predict --dicom-seg naming a user's file, with --overwrite: refused ('not written by autorad')."""
    _needs(cases, "predict_dicom_seg_over_user_file")
    refused(cases, "predict_dicom_seg_over_user_file", "--dicom-seg", "not written by autorad")
    _unchanged(cases, "user_file")


def test_predict_batch_into_a_user_folder(cases):
    """predict --nodules CSV --out naming a user's folder (with --overwrite): refused ('did not make')."""
    _needs(cases, "predict_nodules_out_user_folder")
    refused(cases, "predict_nodules_out_user_folder", "--out", "did not make")
    _unchanged(cases, "user_dir")


def test_robustness_into_its_run(cases):
    """autorad robustness RUN --out RUN --overwrite: refused ('is the input'); the run is unchanged."""
    _needs(cases, "robustness_out_is_run")
    refused(cases, "robustness_out_is_run", "--out", "is the input")
    _unchanged(cases, "run")


# ------------------------------------------------------------------------------------------- option values


@pytest.mark.parametrize(("name", "words"), [
    ("option_n_zero", ["argument --n", ">= 10", "got 0"]),
    ("option_limit_zero", ["argument --limit", ">= 1"]),
    ("option_folds_one", ["argument --folds", ">= 2", "got 1"]),
    ("option_crop_factor_zero", ["argument --crop-factor", "> 0"]),
    ("option_min_readers_nine", ["argument --min-readers", ">= 1 and <= 4", "got 9"]),
    ("option_jobs_zero", ["argument --jobs", ">= 1"]),
    ("option_folds_not_a_number", ["argument --folds", "expected an integer", "many"]),
    ("option_diameter_zero", ["argument --diameter-mm", ">= 2", "got 0"]),
    ("option_batch_size_zero", ["argument --batch-size", "> 0"]),
])
def test_option_out_of_bounds(cases, name, words):
    """An option value out of its bounds: refused, naming the command-line flag and the bound."""
    refused(cases, name, *words)


def test_negative_center(cases):
    """--center -1,360,7 (a value starting with '-'): read as the value of --center and refused as outside
    the volume, not 'expected one argument'."""
    refused(cases, "option_center_negative", "--center -1,360,7", "outside the volume")


# ------------------------------------------------------------------------------------------------- configs


def test_yaml_bomb(cases):
    """A 400-byte config with nested aliases (9^9 values): refused ('expands to more than') in bounded time
    and memory with a short line."""
    results, _ = cases
    line = refused(cases, "config_yaml_bomb", "expands to more than")
    r, base = results["config_yaml_bomb"], results["baseline_version"]
    assert len(line) < 200 and r.seconds < 5
    assert r.max_rss_kb - base.max_rss_kb < 100 * 1024, (r.max_rss_kb, base.max_rss_kb)


def test_yaml_duplicate_key(cases):
    """A config repeating a key in one mapping: refused, naming the key and its line."""
    refused(cases, "config_duplicate_key", "duplicate key 'epochs'", "line 4")


def test_yaml_too_large(cases):
    """A 2 MiB config: refused before parsing ('larger than 1024 KiB')."""
    refused(cases, "config_too_large", "larger than 1024 KiB")


def test_config_is_a_folder(cases):
    """--config naming a folder: refused ('is a folder')."""
    refused(cases, "config_is_folder", "--config", "is a folder")


def test_folder_where_a_file_is_expected(cases):
    """ingest maxslice FOLDER and predict --image FOLDER: refused, naming the folder (and, for the NPZ, saying
    a file is needed)."""
    refused(cases, "npz_is_folder", "is a folder", ".npz")
    refused(cases, "image_is_folder", "thesis")


def test_error_quotes_a_short_excerpt(cases):
    """--set name=[3000 numbers]: refused naming the key; the line quotes a short excerpt (< 300 chars)."""
    line = refused(cases, "config_long_value", "name")
    assert len(line) < 300


# ----------------------------------------------------------------------------------------------- integrity


def test_sidecar_class_names_reversed(cases):
    """model.json with reversed class names (checksum not updated): refused ('changed after it was written'),
    never 'benign' for a malignant output."""
    refused(cases, "sidecar_class_names_reversed", "model.json", "changed after it was written")


def test_sidecar_version_removed(cases):
    """model.json with autorad_version deleted: refused the same way."""
    refused(cases, "sidecar_version_removed", "changed after it was written")


def test_run_from_another_version(cases):
    """A run written by autorad 9.9.9 (same format, consistent checksum): predicted, with a warning naming
    both versions on stderr and in the prediction's warnings."""
    r = done(cases, "sidecar_other_version")
    assert "autorad 9.9.9" in r.err and f"autorad {__version__}" in r.err
    assert any("9.9.9" in w and __version__ in w for w in json.loads(r.out)["warnings"])


def test_run_of_another_format(cases):
    """A run whose checkpoint format is 3: refused ('checkpoint format 3', 'reads format 2')."""
    refused(cases, "sidecar_other_format", "checkpoint format 3", "reads format 2")


def test_edited_sidecar_evaluate(cases):
    """evaluate on a run with an edited model.json: refused; no evaluation folder is left."""
    refused(cases, "sidecar_edited_evaluate", "changed after it was written")
    assert not (cases[1]["t"] / "ev_edited").exists()


# --------------------------------------------------------------------------------------------- environment


def test_disk_full(cases):
    """ingest and evaluate onto a full disk (a 64 KiB tmpfs, filled up): refused ('no space left'), naming --out; no
    half-written dataset, evaluation or temporary file remains."""
    results, ctx = cases
    if not ctx["mounted"]:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    refused(cases, "env_disk_full_ingest", "--out", "no space left")
    refused(cases, "env_disk_full_evaluate", "--out", "no space left")
    assert ctx["full_left"] == [], ctx["full_left"]


def test_disk_full_single_files(cases):
    """segment --out (a NIfTI mask) and predict --report onto a full disk (a tmpfs out of inodes): refused,
    naming the option; no partial file remains."""
    _, ctx = cases
    if not ctx["mounted"]:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    refused(cases, "env_disk_full_segment", "--out", "mask.nii.gz")
    refused(cases, "env_disk_full_report", "--report", "no space left")
    assert ctx["full_left"] == [], ctx["full_left"]


def test_read_only_file_system(cases):
    """ingest onto a read-only file system: refused ('read-only'), naming --out."""
    _, ctx = cases
    if not ctx["mounted"]:
        pytest.skip("mounting a read-only tmpfs needs root (CAP_SYS_ADMIN)")
    refused(cases, "env_read_only", "--out", "read-only")
    assert ctx["ro_left"] == []


def test_permission_denied(cases):
    """ingest into a folder the user may not write (mode 0555; run as 'nobody' when the suite runs as root):
    refused ('permission denied'), naming --out."""
    refused(cases, "env_permission_denied", "--out", "permission denied")


def test_unreadable_inputs(cases):
    """A DICOM slice, an NRRD image and a config the user may not read (mode 0000, as 'nobody'): refused, each
    naming the file and the cause."""
    refused(cases, "env_unreadable_dicom", "img0003.dcm", "PermissionError")
    refused(cases, "env_unreadable_image", "ct.nrrd", "permission denied")
    refused(cases, "env_unreadable_config", "c.yaml", "permission denied")


def test_unexpected_error_points_at_a_log(cases):
    """An internal error (a fault injected into train): exit 1, one line 'unexpected internal error' with the
    path of a log holding the traceback; no traceback on the terminal, no run folder."""
    results, ctx = cases
    r = results["env_unexpected_error"]
    r.assert_no_traceback()
    assert r.rc == 1 and len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert "unexpected internal error" in line and "injected fault" in line and "details in " in line
    log = Path(line.split("details in ")[1].split(";")[0])
    assert log.is_file() and "Traceback" in log.read_text() and "injected fault" in log.read_text()
    assert not (ctx["t"] / "r_bug").exists()


# -------------------------------------------------------------------------------------------------- --help


def _commands() -> list[list[str]]:
    import argparse

    from autorad.apps.cli import build_parser

    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        found.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    return found


def test_help_speaks_to_users(tmp_path):
    """`autorad --help` and every command's --help: exit 0, what the tool does, the exit codes, every option
    explained, no developer notes (no 'Thin', 'Python API', module or argparse names)."""
    import argparse

    from autorad.apps.cli import build_parser

    commands = _commands()
    results = run_batch([[*c, "--help"] for c in commands], tmp_path / "help")
    for cmd, r in zip(commands, results, strict=True):
        assert r.rc == 0 and r.err == "", (cmd, r.err)
        for word in ("Thin", "Python API", "argparse", "Namespace", "_cmd_", "autorad.apps.cli"):
            assert word not in r.out, (cmd, word)
    top = results[0].out
    assert "benign, unsure or malignant" in top and "Exit codes" in top and "--overwrite" in top

    def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    missing += undocumented(sub, f"{path} {name}")
            elif not a.help and not isinstance(a, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
        return missing

    assert undocumented(build_parser(), "autorad") == []
