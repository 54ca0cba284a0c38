"""Outputs are claimed when they are written, not only checked before the work; batches never lose or merge a
file and never quote a path; the crash log holds no path; third-party chatter stays off the terminal.

Every command line runs through the real CLI (:mod:`robustness.cli_batch`: one forked ``autorad`` process per
case; the race of two ``predict --report`` is two plain ``python -m autorad`` processes). Something that
"appears meanwhile" is created by the case's ``appear`` hook just before the writer runs, after every up-front
check, as another program writing there would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import make_ct_series, make_lidc_case

from robustness.cli_batch import CliResult, run_batch

CENTER = ["--center", "19,30,6", "--diameter-mm", "6"]
MINE = "the user's own file"
NAME = "Smith_John_MR"  # a folder named after a patient
PHI = "Doe_Jane_MRN4711"
PHANTOM = ["ingest", "phantom", "--n", "10", "--folds", "2"]


def _skewed_nrrd(path: Path) -> Path:
    """A NRRD CT with a round nodule and non-orthogonal axes: ITK warns when a mask is written with its geometry."""
    import SimpleITK as sitk  # noqa: N813

    z, y, x = np.mgrid[:12, :40, :40]
    hu = np.where((x - 20) ** 2 + (y - 20) ** 2 + ((z - 6) * 1.25 / 0.7) ** 2 <= 36, 40, -850).astype(np.int16)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.7, 0.7, 1.25))
    plain = path.with_name("plain.nrrd")
    sitk.WriteImage(img, str(plain))
    text = plain.read_bytes()
    start = text.index(b"space directions: ")
    end = text.index(b"\n", start)
    path.write_bytes(text[:start] + b"space directions: (0.7,0,0) (0.2,0.7,0) (0,0,1.25)" + text[end:])
    plain.unlink()
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, logreg_run: Path):
    """Build every situation, run every command line in one batch; return name -> result, and the context."""
    t = tmp_path_factory.mktemp("claims")
    run = t / "run"
    shutil.copytree(logreg_run, run)
    series = make_ct_series(t / "series").folder
    mr = make_ct_series(t / "cts" / NAME, modality="MR").folder
    (t / "empty_target").mkdir()
    os.symlink(t / "empty_target", t / "out_link")
    os.symlink(t / "nowhere.html", t / "dangling.html")
    (t / "user.html").write_text(MINE)
    os.symlink(t / "user.html", t / "link_to_user.html")
    # a batch: one good row, one CT that is an MR series in a folder named after a patient, one internal error
    nrrd = _skewed_nrrd(t / "skewed.nrrd")
    (t / "mixed.csv").write_text(f"id,ct,center\ngood,{series},\"19,30,6\"\nmr,{mr},\"19,30,6\"\n"
                                 f"bug,{nrrd},\"20,20,6\"\n")
    (t / "collide.csv").write_text(f"id,ct,center\na b,{series},\"19,30,6\"\na_b,{series},\"19,30,6\"\n")
    (t / "case.csv").write_text(f"id,ct,center\nN1,{series},\"19,30,6\"\nn1,{series},\"19,30,6\"\n")
    (t / "one.csv").write_text(f"id,ct,center\ngood,{series},\"19,30,6\"\n")
    # LIDC: a real patient folder, one linked in from elsewhere, a link to the first, a dangling link
    lidc, elsewhere = t / "lidc", t / "other_disk"
    make_lidc_case(lidc, patient_id="LIDC-IDRI-9001")
    make_lidc_case(elsewhere, patient_id="LIDC-IDRI-9002")
    os.symlink(elsewhere / "LIDC-IDRI-9002", lidc / "LIDC-IDRI-9002")
    os.symlink(lidc / "LIDC-IDRI-9001", lidc / "Again_Patient_Link")
    os.symlink(t / "gone", lidc / "Gone_Patient_Link")
    (t / "no_dicom").mkdir()
    (t / "run_cfg.yaml").write_text(f"extends: radiomics_logreg\ndata:\n  source: lidc\n  path: {t / 'no_dicom'}\n")
    phi = t / "phi_paths" / PHI
    phi.mkdir(parents=True)
    c = {
        # ---- files claimed at write time
        "report_appears": {"argv": ["predict", run, "--dicom", series, *CENTER, "--report", t / "r1.html"],
                           "appear": {"when": "autorad.apps.predict_report:write_prediction_report",
                                      "path": str(t / "r1.html"), "text": MINE}},
        "report_appears_overwrite": {
            "argv": ["predict", run, "--dicom", series, *CENTER, "--report", t / "r2.html", "--overwrite"],
            "appear": {"when": "autorad.apps.predict_report:write_prediction_report", "path": str(t / "r2.html"),
                       "text": MINE}},
        "mask_and_report_one_appears": {
            "argv": ["predict", run, "--dicom", series, *CENTER, "--save-mask", t / "m3.nii.gz", "--report",
                     t / "r3.html"],
            "appear": {"when": "autorad.apps.predict_report:write_prediction_report", "path": str(t / "r3.html"),
                       "text": MINE}},
        "report_dangling_symlink": ["predict", run, "--dicom", series, *CENTER, "--report", t / "dangling.html"],
        "report_symlink_overwrite": ["predict", run, "--dicom", series, *CENTER, "--report",
                                     t / "link_to_user.html", "--overwrite"],
        "report_bad_suffix_new_folder": ["predict", run, "--dicom", series, *CENTER, "--report",
                                         t / "new1" / "deep" / "r.txt"],
        "report_new_folder_failed_prediction": ["predict", run, "--dicom", series, "--center", "1,1,0",
                                                "--diameter-mm", "6", "--report", t / "new2" / "deep" / "r.html"],
        "report_new_folder": ["predict", run, "--dicom", series, *CENTER, "--report", t / "new3" / "deep" / "r.html"],
        # ---- folders claimed at write time
        "run_refused_in_new_folders": ["run", t / "run_cfg.yaml", "--out", t / "new_run" / "deep"],
        "ingest_out_symlink": [*PHANTOM, "--out", t / "out_link"],
        "ingest_out_symlink_overwrite": [*PHANTOM, "--out", t / "out_link", "--overwrite"],
        "ingest_out_appears": {"argv": [*PHANTOM, "--out", t / "ds_appears"],
                               "appear": {"when": "autorad.data.dataset:assign_folds", "path": str(t / "ds_appears"),
                                          "folder": True, "text": MINE}},
        # ---- batches
        "batch_ids_collide": ["predict", run, "--nodules", t / "collide.csv", "--out", t / "b_collide"],
        "batch_ids_differ_in_case": ["predict", run, "--nodules", t / "case.csv", "--out", t / "b_case"],
        "batch_bad_rows": {"argv": ["predict", run, "--nodules", t / "mixed.csv", "--out", t / "b_mixed"],
                           "inject": "autorad.data.dicom:load_image_file"},
        "batch_fails_at_the_end": {"argv": ["predict", run, "--nodules", t / "one.csv", "--out", t / "b_end"],
                                   "inject": "autorad.apps.predict:write_parquet"},
        "batch_out_appears": {"argv": ["predict", run, "--nodules", t / "one.csv", "--out", t / "b_appears"],
                              "appear": {"when": "autorad.apps.predict:_table_row", "path": str(t / "b_appears"),
                                         "folder": True, "text": MINE}},
        "batch_first": ["predict", run, "--nodules", t / "mixed.csv", "--out", t / "b_twice"],
        "batch_again_overwrite": ["predict", run, "--nodules", t / "one.csv", "--out", t / "b_twice", "--overwrite"],
        # ---- identifiers
        "crash_log": {"argv": ["predict", run, "--dicom", phi, *CENTER, "--report", phi.parent / "r.html"],
                      "inject": "autorad.apps.predict:load_predictor"},
        # ---- item 6: LIDC symlinks, third-party output, resume hint
        "lidc_symlinks": ["ingest", "lidc", lidc, "--out", t / "lidc_ds"],
        "itk_warning": ["segment", "--image", nrrd, "--center", "20,20,6", "--diameter-mm", "6", "--out",
                        t / "skew_mask.nii.gz"],
        "itk_warning_verbose": ["-v", "segment", "--image", nrrd, "--center", "20,20,6", "--diameter-mm", "6",
                                "--out", t / "skew_mask_v.nii.gz"],
    }
    # the final stage was interrupted: the run has everything but final/model
    unfinished = t / "unfinished"
    shutil.copytree(logreg_run, unfinished)
    shutil.rmtree(unfinished / "final" / "model")
    c["predict_unfinished_run"] = ["predict", unfinished, "--dicom", series, *CENTER]
    names = list(c)
    results = run_batch(list(c.values()), t / "batch")
    return dict(zip(names, results, strict=True)), {"t": t, "run": run, "series": series}


def refused(cases, name: str, *words: str) -> str:
    """Exit 2, one ``autorad: error:`` line holding every word (case-insensitive), no traceback."""
    return cases[0][name].refusal_line(*words)


def done(cases, name: str) -> CliResult:
    r = cases[0][name]
    r.assert_no_traceback()
    assert r.rc == 0, r.err[-2000:]
    return r


def _debris(folder: Path) -> list[str]:
    """Hidden scratch files or folders autorad left (``.NAME.tmp-*`` / ``.NAME.old-*``)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]


# ---- files claimed at write time


def test_report_that_appears_meanwhile_is_kept(cases):
    """A file that appears at the --report path after the up-front check (another program writing there): the
    report is not written over it: exit 2 naming --report and 'appeared'; the file keeps its bytes."""
    t = cases[1]["t"]
    refused(cases, "report_appears", "--report", "appeared", "did not replace")
    assert (t / "r1.html").read_text() == MINE
    assert not _debris(t)


def test_report_that_appears_meanwhile_is_kept_with_overwrite(cases):
    """The same with --overwrite: the file that appeared was not written by autorad, so it is still refused
    when the report is written (the check is repeated at write time)."""
    t = cases[1]["t"]
    refused(cases, "report_appears_overwrite", "--report", "not written by autorad")
    assert (t / "r2.html").read_text() == MINE


def test_outputs_appear_all_or_none(cases):
    """--save-mask and --report, the report path taken meanwhile: refused, and the mask already published by
    this command is taken back (no half set of outputs); the other file is untouched."""
    t = cases[1]["t"]
    refused(cases, "mask_and_report_one_appears", "--report", "appeared")
    assert (t / "r3.html").read_text() == MINE
    assert not (t / "m3.nii.gz").exists()
    assert not _debris(t)


def test_two_concurrent_reports_to_one_path(cases, tmp_path):
    """Two `predict --report` to one path at the same time (two real processes): one writes the report and
    exits 0, the other exits 2 with one line; the report is complete and nothing else is left."""
    ctx = cases[1]
    out = tmp_path / "race.html"
    argv = [sys.executable, "-m", "autorad", "predict", str(ctx["run"]), "--dicom", str(ctx["series"]), *CENTER,
            "--report", str(out)]
    env = {**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    got = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in got)
    assert codes == [0, 2], got
    loser = next(err for rc, _, err in got if rc == 2)
    lines = [ln for ln in loser.splitlines() if ln.strip() and not ln.startswith("[autorad]")]
    assert len(lines) == 1 and "--report" in lines[0] and "Traceback" not in loser, loser
    assert out.read_text().rstrip().endswith("</html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.html"]


def test_dangling_symlink_report_refused(cases):
    """--report naming a dangling symlink: refused (exit 2, 'symlink'); the link stays as it was and its
    target is not created."""
    t = cases[1]["t"]
    refused(cases, "report_dangling_symlink", "--report", "symlink", "dangling")
    assert os.path.islink(t / "dangling.html") and not (t / "nowhere.html").exists()


def test_symlink_report_refused_with_overwrite(cases):
    """--report naming a symlink to a user file, with --overwrite: refused (autorad writes neither through nor
    over a symlink); link and file unchanged."""
    t = cases[1]["t"]
    refused(cases, "report_symlink_overwrite", "--report", "symlink")
    assert os.path.islink(t / "link_to_user.html") and (t / "user.html").read_text() == MINE


def test_refusals_leave_no_empty_folders(cases):
    """A --report in new folders refused up front (wrong suffix) or after the work (a click outside the body):
    the folders it would have needed are not left behind; a report that is written gets them."""
    t = cases[1]["t"]
    refused(cases, "report_bad_suffix_new_folder", "--report", ".html")
    assert not (t / "new1").exists()
    assert cases[0]["report_new_folder_failed_prediction"].rc == 2
    assert not (t / "new2").exists()
    done(cases, "report_new_folder")
    assert (t / "new3" / "deep" / "r.html").is_file()


# ---- folders claimed at write time


def test_run_refused_leaves_no_folder(cases):
    """`autorad run` into new folders whose data turns out unusable (an LIDC root without DICOM): refused
    (exit 2, 'no DICOM series'), and the output folder and its new parents are not left behind."""
    t = cases[1]["t"]
    refused(cases, "run_refused_in_new_folders", "no DICOM series")
    assert not (t / "new_run").exists()


def test_out_symlink_refused(cases):
    """`ingest --out LINK` where LINK is a symlink to an empty folder, with and without --overwrite: refused
    (exit 2, 'symlink'); the link stays a link, its target stays empty, no .LINK.old-PID is left."""
    t = cases[1]["t"]
    refused(cases, "ingest_out_symlink", "--out", "symlink")
    refused(cases, "ingest_out_symlink_overwrite", "--out", "symlink")
    assert os.path.islink(t / "out_link") and list((t / "empty_target").iterdir()) == []
    assert not _debris(t)


def test_out_folder_that_appears_meanwhile_is_kept(cases):
    """A folder with a user's file that appears at --out while ingest works: refused at the rename (exit 2,
    naming --out and 'appeared'); the user's folder is untouched and the temporary dataset is gone."""
    t = cases[1]["t"]
    refused(cases, "ingest_out_appears", "--out", "appeared")
    assert sorted(p.name for p in (t / "ds_appears").iterdir()) == ["mine.txt"]
    assert (t / "ds_appears" / "mine.txt").read_text() == MINE
    assert not _debris(t)


# ---- batches


def test_batch_ids_that_give_one_file_name(cases):
    """Batch ids `a b` and `a_b` (one file name once sanitised), or `N1` and `n1` (one file on a
    case-insensitive disk): refused up front naming both lines and ids; no --out folder is made."""
    t = cases[1]["t"]
    refused(cases, "batch_ids_collide", "lines 2 and 3", "'a b'", "'a_b'", "same file name")
    refused(cases, "batch_ids_differ_in_case", "lines 2 and 3", "'N1'", "'n1'")
    assert not (t / "b_collide").exists() and not (t / "b_case").exists()


def test_batch_bad_rows_get_errors_without_paths(cases):
    """A batch with a good row, an MR series in a folder named after a patient and a row that hits an internal
    error: exit 0; each bad row gets an error naming the row and a reason class, none quotes the folder (not
    in the table, the parquet, the JSON or the terminal); the count printed equals the JSON files written."""
    t = cases[1]["t"]
    r = done(cases, "batch_bad_rows")
    out = t / "b_mixed"
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False).set_index("id")
    assert table.loc["good", "error"] == "" and table.loc["good", "predicted_class"]
    assert table.loc["mr", "error"].startswith("row mr: CT not usable:") and "MR" in table.loc["mr", "error"]
    assert table.loc["bug", "error"] == "row bug: CT not usable: internal error (RuntimeError)"
    files = sorted(p.name for p in (out / "nodules").iterdir())
    assert files == ["good.json"] and "1 of 3 nodules predicted" in r.out
    texts = [p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()] + [r.out, r.err]
    assert not [x for x in texts if NAME in x or "Smith" in x]


def test_batch_never_left_half_written(cases):
    """A batch that fails while writing its table (an injected internal error): exit 1, and no --out folder at
    all (it is built beside and renamed into place only when complete)."""
    t = cases[1]["t"]
    r = cases[0]["batch_fails_at_the_end"]
    assert r.rc == 1 and "unexpected internal error" in r.err
    assert not (t / "b_end").exists() and not _debris(t)


def test_batch_out_that_appears_meanwhile_is_kept(cases):
    """A folder with a user's file that appears at the batch's --out while it predicts: refused (exit 2,
    'appeared'); the user's folder is untouched."""
    t = cases[1]["t"]
    refused(cases, "batch_out_appears", "--out", "appeared")
    assert sorted(p.name for p in (t / "b_appears").iterdir()) == ["mine.txt"]


def test_batch_overwrite_replaces_its_own_folder(cases):
    """A batch folder written again with --overwrite (3 rows, then 1): replaced as a whole, no debris."""
    t = cases[1]["t"]
    done(cases, "batch_first")
    done(cases, "batch_again_overwrite")
    assert len(pd.read_csv(t / "b_twice" / "predictions.csv")) == 1
    assert sorted(p.name for p in (t / "b_twice" / "nodules").iterdir()) == ["good.json"]
    assert not _debris(t)


# ---- identifiers


def test_crash_log_holds_no_path(cases):
    """An internal error (injected) in `predict --dicom phi_paths/Doe_Jane_MRN4711`: exit 1, one line pointing
    at the log; the log says what it holds and keeps the command with option names and numbers but every path
    replaced: the folder name appears nowhere in it."""
    r = cases[0]["crash_log"]
    r.assert_no_traceback()
    assert r.rc == 1 and len(r.err_lines) == 1, r.err
    log = Path(r.err_lines[0].split("details in ")[1].split(";")[0])
    text = log.read_text()
    assert "This log holds" in text and "Traceback" in text and "injected fault" in text
    assert "command: autorad predict <path> --dicom <path> --center 19,30,6 --diameter-mm 6 --report <path>" in text
    assert PHI not in text and "phi_paths" not in text


# ---- symlinked LIDC folders, third-party output, the resume hint


def test_lidc_symlinked_patient_folders(cases):
    """An LIDC root with a real patient folder, one symlinked in from another disk, a symlink to the first and a
    dangling one: the linked-in patient is read; the duplicate and the dangling link are in skipped.csv with
    their reasons (never silently dropped), under pseudonyms, not their folder names."""
    t = cases[1]["t"]
    done(cases, "lidc_symlinks")
    ds = t / "lidc_ds"
    info = json.loads((ds / "dataset.json").read_text())
    assert info["n_patients"] == 2
    skipped = (ds / "skipped.csv").read_text()
    assert "already read" in skipped and "dangling symlink" in skipped
    assert "Again_Patient_Link" not in skipped and "Gone_Patient_Link" not in skipped


def test_itk_warnings_go_to_the_log(cases):
    """A mask written with a CT's non-orthogonal axes (ITK prints 'WARNING: In ...' from C++): nothing of it on
    stderr in a normal run; with -v it is shown as an [autorad] log line."""
    r = done(cases, "itk_warning")
    assert "WARNING: In" not in r.err and "coerced" not in r.err, r.err
    v = done(cases, "itk_warning_verbose")
    assert any(ln.startswith("[autorad]") and "ITK" in ln for ln in v.err.splitlines()), v.err[-2000:]
    assert "WARNING: In" not in "\n".join(ln for ln in v.err.splitlines() if not ln.startswith("[autorad]"))


def test_python_warnings_and_pyradiomics_logging_go_to_the_log(tmp_path):
    """numpy RuntimeWarnings and PyRadiomics' own log lines, after the CLI's logging set-up (a real process):
    not printed raw on stderr; with verbose logging they appear as [autorad] lines."""
    code = ("import sys, logging, numpy as np\n"
            "from autorad.apps.cli import configure_logging\n"
            "from autorad.radiomics.quiet import quiet_radiomics\n"
            "configure_logging(verbose=sys.argv[1] == 'v')\n"
            "quiet_radiomics()\n"
            "logging.getLogger('radiomics.imageoperations').warning('raw pyradiomics line')\n"
            "np.log(np.zeros(2))\n")
    for mode in ("q", "v"):
        p = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        raw = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("[autorad]")]
        assert raw == [], p.stderr
        shown = [ln for ln in p.stderr.splitlines() if ln.startswith("[autorad]")]
        if mode == "v":
            assert any("raw pyradiomics line" in ln for ln in shown) and any("RuntimeWarning" in ln for ln in shown)
        else:
            assert not shown, p.stderr


def test_unfinished_run_hint_says_rerun(cases):
    """A run whose final stage was interrupted (no final/model, config asks for one): refused with the hint to
    rerun the same command (it resumes), not to change train.final_model."""
    line = refused(cases, "predict_unfinished_run", "interrupted", "rerun the same")
    assert "final_model: true" not in line
