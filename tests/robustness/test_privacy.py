"""Privacy: a DICOM set carrying names, birth date, institution, accession number, dates, hospital IDs and raw
UIDs goes through ingest, radiomics, embed, train, evaluate and predict --report; no file written and no log
line holds any of them (nor their usual variants)."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import IDENTIFIERS, ReaderSpec, make_lidc_case

from robustness.cli_batch import run_batch

PATIENTS = {"MRN-00417733": (1, 2, 1), "MRN-00417734": (3, 3, 3), "MRN-00417735": (5, 4, 5)}
RADII_MM = (3.5, 4.5, 5.5)  # different nodules, so radiomic features vary


def identifier_variants(uids: list[str]) -> list[str]:
    """Every identifying string of the synthetic set, with the spellings a leak would likely take."""
    name = IDENTIFIERS["PatientName"]  # Doe^Jane^Quincy
    family, given, middle = name.split("^")
    b = IDENTIFIERS["PatientBirthDate"]
    s = IDENTIFIERS["StudyDate"]
    out = [name, f"{family}^{given}", f"{given} {family}", f"{family}, {given}", f"{family} {given}", middle,
           b, f"{b[:4]}-{b[4:6]}-{b[6:]}", f"{b[6:]}.{b[4:6]}.{b[:4]}", f"{b[4:6]}/{b[6:]}/{b[:4]}",
           s, f"{s[:4]}-{s[4:6]}-{s[6:]}", f"{s[6:]}.{s[4:6]}.{s[:4]}",
           IDENTIFIERS["InstitutionName"], "Saint Example", "Teaching Hospital",
           IDENTIFIERS["AccessionNumber"], IDENTIFIERS["AccessionNumber"][3:], IDENTIFIERS["PatientID"]]
    for pid in PATIENTS:
        out += [pid, pid.split("-")[1]]
    return sorted(set(out + uids))


def _texts(path: Path) -> list[str]:
    """What a reader of ``path`` could see: its raw bytes, plus decoded contents of compressed containers."""
    raw = path.read_bytes()
    texts = [raw.decode("latin-1")]
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        texts.append(" ".join(map(str, df.columns)) + "\n" + df.to_csv(index=False))
        import pyarrow.parquet as pq

        texts.append(str(pq.read_schema(path).metadata))
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                texts.append(k)
                if z[k].dtype.kind in "US":
                    texts.append(" ".join(map(str, z[k].ravel().tolist())))
    elif path.suffix == ".gz":
        texts.append(gzip.decompress(raw).decode("latin-1"))
    elif zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            texts += [zf.read(n).decode("latin-1") for n in zf.namelist()] + zf.namelist()
    return texts


def find_identifiers(folders: list[Path], logs: list[str], needles: list[str]) -> list[str]:
    """``file: needle`` for every identifier found (case-insensitive) in a file name, a file or a log."""
    hits = []
    low = [n.lower() for n in needles]
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            rel = str(p.relative_to(folder.parent)).lower()
            hits += [f"{p} (name): {n}" for n in low if n in rel]
            if p.is_file():
                for text in _texts(p):
                    t = text.lower()
                    hits += [f"{p}: {n}" for n in low if n in t]
    for i, log in enumerate(logs):
        hits += [f"log {i}: {n}" for n in low if n in log.lower()]
    return sorted(set(hits))


@pytest.fixture(scope="module")
def identified(tmp_path_factory, logreg_run):
    t = tmp_path_factory.mktemp("privacy")
    root = t / "dicom"
    uids, series = [], []
    for (pid, ratings), radius in zip(PATIENTS.items(), RADII_MM, strict=True):
        s, _ = make_lidc_case(root, readers=[ReaderSpec(r) for r in ratings], patient_id=pid, radius_mm=radius)
        uids += [s.series_uid, s.study_uid, *s.sop_uids]
        series.append(s)
    ds, run, ev, pred = t / "out" / "ds", t / "out" / "run", t / "out" / "eval", t / "out" / "predict"
    nodules_csv = t / "nodules.csv"  # its CT paths hold the hospital patient ids and raw UIDs
    nodules_csv.write_text("ct,center,diameter_mm,disk\n" + "".join(f'{s.folder},"19,30,6",6,1\n' for s in series))
    argvs = [["ingest", "lidc", root, "--out", ds, "--folds", "3"],
             ["radiomics", ds],
             ["embed", ds, "--encoder", "tiny-vit-2d"],
             ["train", ds, "--config", "radiomics_logreg", "--out", run],
             ["evaluate", logreg_run, "--data", ds, "--out", ev],
             ["predict", run, "--dicom", series[0].folder, "--center", "19,30,6", "--diameter-mm", "6", "--disk",
              "--report", pred / "report.html"],
             ["predict", logreg_run, "--dicom", series[2].folder, "--center", "19,30,6", "--diameter-mm", "6",
              "--disk", "--report", pred / "report2.html"],
             # the mask, a batch over every series, and the DICOM outputs (which go to t / "pacs", outside "out")
             ["predict", run, "--dicom", series[1].folder, "--center", "19,30,6", "--diameter-mm", "6", "--disk",
              "--save-mask", pred / "mask.nii.gz", "--report", pred / "report3.html",
              "--dicom-seg", t / "pacs" / "seg.dcm", "--dicom-sr", t / "pacs" / "sr.dcm"],
             ["predict", run, "--nodules", nodules_csv, "--out", pred / "batch"],
             # failing commands print the input's problem: their messages must not leak either
             ["predict", run, "--dicom", root, "--center", "19,30,6", "--diameter-mm", "6", "--disk"]]
    other_home = t / "other_home"
    again = [["ingest", "lidc", root, "--out", t / "again" / "same_key", "--folds", "3"],  # same installation
             {"argv": ["ingest", "lidc", root, "--out", t / "again" / "other_key", "--folds", "3"],
              "env": {"AUTORAD_HOME": str(other_home)}}]  # another installation
    results = run_batch(argvs + again, t / "batch")
    return t, results[: len(argvs)], uids, results[len(argvs):], other_home


def test_identifiers_exist_in_the_input(identified):
    """(control) the DICOM input really carries every identifier, so the scan below could find them."""
    t, _, uids, _, _ = identified
    import pydicom

    f = next((t / "dicom").rglob("*.dcm"))
    ds = pydicom.dcmread(f)
    assert str(ds.PatientName) == IDENTIFIERS["PatientName"] and ds.PatientID in PATIENTS
    assert ds.PatientBirthDate == IDENTIFIERS["PatientBirthDate"] and ds.AccessionNumber == "ACC5550123"
    assert find_identifiers([t / "dicom"], [], identifier_variants(uids))  # the scanner sees them there


def test_no_identifier_in_any_output_or_log(identified):
    """Every file under the dataset, radiomics/embedding caches, run, evaluation and prediction report, and
    every command's stdout/stderr: zero names, birth dates, study dates, institution, accession numbers,
    hospital patient IDs or raw DICOM UIDs."""
    t, results, uids, _, _ = identified
    assert [r.rc for r in results[:-1]] == [0] * (len(results) - 1), [r.err[-800:] for r in results if r.rc]
    assert results[-1].rc == 2
    logs = [r.out + r.err for r in results]
    hits = find_identifiers([t / "out"], logs, identifier_variants(uids))
    assert hits == []
    manifest = pd.read_parquet(t / "out" / "ds" / "manifest.parquet")
    assert len(manifest) == 3 and manifest["patient_id"].str.startswith("anon-").all()


def test_dicom_seg_and_sr_carry_the_source_patient_and_reference_the_series(identified):
    """--dicom-seg / --dicom-sr are the exception by design: they go back to the archive, so they carry the
    source's patient and study modules and reference its series (and nothing else of autorad's outputs does)."""
    import highdicom as hd
    import pydicom

    t = identified[0]
    src = pydicom.dcmread(next(p for p in sorted((t / "dicom").rglob("*.dcm")) if "MRN-00417734" in str(p)))
    seg = hd.seg.segread(t / "pacs" / "seg.dcm")
    sr = hd.sr.srread(t / "pacs" / "sr.dcm")
    for ds in (seg, sr):
        assert ds.PatientID == src.PatientID and ds.StudyInstanceUID == src.StudyInstanceUID
        assert str(ds.PatientName) == str(src.PatientName)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID


def _patient_ids(ds: Path) -> list[str]:
    return sorted(pd.read_parquet(ds / "manifest.parquet")["patient_id"])


def test_pseudonyms_cannot_be_reversed_by_hashing_guesses(identified):
    """Hospital patient IDs become keyed pseudonyms (HMAC-SHA256 with this installation's secret key): hashing
    the true IDs (SHA-256, SHA-1, MD5; with or without the 'no-patient-id' fallback prefix; any prefix length)
    matches none of them."""
    import hashlib

    t, results, _, _, _ = identified
    pseudonyms = [p.removeprefix("anon-") for p in _patient_ids(t / "out" / "ds")]
    assert len(pseudonyms) == 3 and all(len(p) == 16 for p in pseudonyms)
    for pid in PATIENTS:
        for algo in ("sha256", "sha1", "md5"):
            for text in (pid, f"no-patient-id:{pid}", pid.lower()):
                digest = hashlib.new(algo, text.encode()).hexdigest()
                assert not any(digest.startswith(p) or p.startswith(digest[:12]) for p in pseudonyms)


def test_pseudonyms_stable_per_installation(identified):
    """The same data ingested twice with the same key gets the same pseudonyms (folds stay patient-level);
    another installation (another $AUTORAD_HOME, so another key) gets different ones."""
    t, _, _, again, _ = identified
    assert [r.rc for r in again] == [0, 0], [r.err[-500:] for r in again]
    first = _patient_ids(t / "out" / "ds")
    assert _patient_ids(t / "again" / "same_key") == first
    assert not set(_patient_ids(t / "again" / "other_key")) & set(first)


def test_pseudonym_key_stays_private(identified):
    """The key file is made with mode 0600 in autorad's state folder, and its bytes (hex or raw) appear in no
    output file and no log."""
    import os

    t, results, _, again, other_home = identified
    home = Path(os.environ["AUTORAD_HOME"])
    for folder in (home, other_home):
        key_file = folder / "pseudonym.key"
        assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
        hex_key = key_file.read_text().strip()
        needles = [hex_key, hex_key[:16], bytes.fromhex(hex_key).decode("latin-1")]
        logs = [r.out + r.err for r in results + again]
        assert find_identifiers([t / "out", t / "again"], logs, needles) == []
