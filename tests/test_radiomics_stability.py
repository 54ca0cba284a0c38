"""Stability-aware radiomics selection (``radiomics.stability: one_pixel``) and the one n-pixel mask perturbation:
the perturbation rule, Lin's concordance, selection fitted on training rows only, saved with the model, inference
without perturbed radiomics, every kind that reads radiomics, and nothing changed when the option is off."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from autorad.config import STABILITY_MASKS, DataConfig, RadiomicsConfig, dump_config
from autorad.core.errors import InputError
from autorad.data.mask_perturb import morph, perturb_mask
from autorad.radiomics.preprocess import RadiomicsPreprocessor
from autorad.radiomics.stability import concordance
from autorad.radiomics.table import radiomics_path
from autorad.train.resolve import load_config

STABLE = ["radiomics.stability=one_pixel"]


# ---- the mask perturbation -------------------------------------------------------------------------------------
def test_one_pixel_is_the_4_connected_cross_and_an_eroded_away_mask_keeps_its_centre():
    m = np.zeros((9, 9), dtype=np.uint8)
    m[3:6, 3:6] = 1
    grown = perturb_mask(m, "grow1")
    assert grown.dtype == np.uint8 and grown.sum() == 9 + 4 * 3  # a cross adds one row/column per side, no corners
    assert not grown[2, 2] and grown[2, 3]
    shrunk = perturb_mask(m, "shrink1")
    assert shrunk.sum() == 1 and shrunk[4, 4]
    line = np.zeros((5, 9), dtype=bool)
    line[2, 1:8] = True  # erosion removes it entirely: the pixel nearest to the centroid stays
    out = perturb_mask(line, "shrink1")
    assert out.sum() == 1 and out[2, 4]
    assert perturb_mask(m, "grow2").sum() > grown.sum()


def test_3d_masks_change_in_plane_only():
    m = np.zeros((3, 7, 7), dtype=bool)
    m[1, 2:5, 2:5] = True
    g = morph(m, 1, grow=True)
    assert not g[0].any() and not g[2].any() and g[1].sum() == 21


def test_unknown_perturbation_is_refused():
    with pytest.raises(InputError, match="grow<n> or shrink<n>"):
        perturb_mask(np.ones((3, 3)), "grow0")


def test_robustness_uses_the_same_rule():
    from autorad.apps.robustness import variant_mask

    rng = np.random.default_rng(0)
    m = rng.random((20, 20)) > 0.4
    for v in ("grow1", "shrink1", "grow2", "shrink2"):
        assert np.array_equal(variant_mask(v, np.zeros((20, 20)), m, 0.7), perturb_mask(m, v))


# ---- the agreement statistic -----------------------------------------------------------------------------------
def test_concordance_is_lins_ccc_and_penalises_a_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + 0.5  # perfectly correlated, shifted: Pearson 1, CCC = 2 var / (2 var + 0.25)
    v = x.var()
    got = concordance(np.c_[x, x, y], np.c_[x, y, x])
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(2 * v / (2 * v + 0.25)) and got[2] == pytest.approx(got[1])


def test_concordance_skips_missing_pairs_and_needs_three():
    a = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 3.0], [np.nan, 5.0]])
    b = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan], [4.0, 5.0]])
    got = concordance(a, b)
    assert got[0] == pytest.approx(1.0) and np.isnan(got[1])


# ---- selection in the preprocessor -----------------------------------------------------------------------------
def _synthetic(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 1.0, 100.0]
    grow = X + rng.normal(scale=[0.02, 1.5, 2.0], size=(n, 3))  # column 1 made unstable on purpose
    shrink = X - rng.normal(scale=[0.02, 0.01, 2.0], size=(n, 3))
    return X, {"grow1": grow, "shrink1": shrink}, ["stable", "unstable", "stable_large"]


def test_selection_drops_the_unstable_feature_and_keeps_the_stable_ones():
    X, pert, names = _synthetic()
    pre = RadiomicsPreprocessor().fit(X, names, perturbed=pert, min_agreement=0.9)
    assert pre.kept_features == ["stable", "stable_large"]
    assert pre.agreement["grow1"][1] < 0.9 <= pre.agreement["shrink1"][1]  # unstable under one perturbation only
    assert pre.stability == {"perturbations": ["grow1", "shrink1"], "min_agreement": 0.9, "n_candidates": 3,
                             "n_kept": 2}
    assert pre.transform(X).shape == (len(X), 2)
    plain = RadiomicsPreprocessor().fit(X, names)
    assert np.array_equal(pre.transform(X), plain.transform(X)[:, [0, 2]])  # same transform, fewer columns
    with pytest.raises(InputError, match="min_agreement"):
        RadiomicsPreprocessor().fit(X, names, perturbed={"grow1": pert["grow1"][::-1]}, min_agreement=0.99)


def test_perturbed_values_of_failed_rows_do_not_count():
    X, pert, names = _synthetic()
    X[:5] = np.nan  # failed consensus extractions: dropped from fitting, their perturbed rows too
    pert["grow1"][:5, 0] = 1e9
    pert["shrink1"][10] = np.nan  # a failed perturbed extraction: that row is left out of the agreement
    pre = RadiomicsPreprocessor().fit(X, names, perturbed=pert, min_agreement=0.9)
    assert pre.kept_features == ["stable", "stable_large"]


# ---- end to end on a small phantom dataset ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_ds(tmp_path_factory):
    from autorad.data.ingest import ingest

    return ingest("phantom", tmp_path_factory.mktemp("stab") / "ds", None, DataConfig(source="phantom", phantom_n=40))


@pytest.fixture(scope="module")
def stable_run(phantom_ds, tmp_path_factory):
    from autorad.train.entry import train

    return train(phantom_ds.path, load_config("radiomics_logreg", STABLE), tmp_path_factory.mktemp("stab") / "run")


def test_dataset_stage_writes_one_table_per_perturbation_through_the_shared_cache(phantom_ds, stable_run):
    from autorad.radiomics.extract import run_radiomics
    from autorad.radiomics.table import load_radiomics, read_meta

    for v in STABILITY_MASKS["one_pixel"]:
        assert radiomics_path(phantom_ds.path, "2d", v).name == f"radiomics_mask-{v}.parquet"
        assert read_meta(phantom_ds.path, "2d", v)["mask_variant"] == v
    base = load_radiomics(phantom_ds.path)
    grow = load_radiomics(phantom_ds.path, mask_variant="grow1")
    area = "original_shape2D_PixelSurface"
    assert list(grow.columns) == list(base.columns) and (grow[area] > base[area]).all()
    run_radiomics(phantom_ds.path, RadiomicsConfig(), mask_variant="grow1")  # everything cached: nothing computed
    assert read_meta(phantom_ds.path, "2d", "grow1")["n_computed"] == 0


def _fold_model(run, k):
    from autorad.train.run import Run

    return Run(run).load_model(k)[0]


def test_selection_is_saved_with_every_model_and_reloaded(stable_run):
    for k in (0, None):
        pre = _fold_model(stable_run, k).pre
        assert pre.stability["perturbations"] == ["grow1", "shrink1"] and pre.stability["min_agreement"] == 0.9
        assert 0 < pre.n_features_out == pre.stability["n_kept"] < pre.stability["n_candidates"]


def test_selection_sees_the_training_folds_only(phantom_ds, stable_run, tmp_path):
    """Changing the perturbed radiomics of fold-0 nodules changes nothing in fold 0's model (trained on the other
    folds) and changes the selection of the models that train on fold 0."""
    from autorad.train.cv import cross_validate
    from autorad.train.features import build_features
    from autorad.train.run import Run
    from autorad.train.table import PerturbedRadiomics

    cfg = load_config("radiomics_logreg", [*STABLE, "train.final_model=false"])
    table = build_features(phantom_ds, cfg)
    rng = np.random.default_rng(0)
    mats = {k: v.copy() for k, v in table.radiomics_perturbed.matrices.items()}
    f0 = table.folds == 0
    mats["grow1"][f0] = mats["grow1"][f0] * rng.uniform(0.2, 5.0, size=mats["grow1"][f0].shape)
    changed = dataclasses.replace(table, radiomics_perturbed=PerturbedRadiomics(mats, 0.9))
    run = Run(tmp_path / "run")
    run.path.mkdir()
    cross_validate(run, phantom_ds, changed, cfg)
    ref, new = _fold_model(stable_run, 0), run.load_model(0)[0]
    assert new.pre.kept_features == ref.pre.kept_features
    assert np.array_equal(new.clf.coef_, ref.clf.coef_)
    assert any(run.load_model(k)[0].pre.kept_features != _fold_model(stable_run, k).pre.kept_features
               for k in range(1, 5))


def test_prediction_needs_no_perturbed_radiomics(phantom_ds, stable_run, tmp_path):
    import shutil

    from autorad.apps.predictor import Predictor
    from autorad.train.features import build_features

    table = build_features(phantom_ds, load_config("radiomics_logreg", STABLE))
    expect = _fold_model(stable_run, None).predict_proba(table.subset(np.arange(3)))
    bare = tmp_path / "ds"  # the dataset without any perturbed table or cache: only the nodules' arrays
    shutil.copytree(phantom_ds.path, bare, ignore=shutil.ignore_patterns("radiomics*", "cache"))
    predictor = Predictor.from_run(stable_run)
    rows = [(bare / r["array_file"], float(r["pixel_spacing_mm"]))
                             for _, r in phantom_ds.manifest.iloc[:3].iterrows()]
    arrays = [dict(np.load(p)) for p, _ in rows]
    proba, status = predictor.predict_proba_arrays(arrays, [s for _, s in rows])
    assert status == ["ok"] * 3 and np.allclose(proba, expect, atol=1e-6)
    assert not any(bare.glob("radiomics*"))


def test_evaluating_a_stable_model_extracts_no_perturbed_radiomics(phantom_ds, stable_run, tmp_path):
    """Applying trained models (evaluate, out-of-fold) reads only the consensus radiomics: the perturbed tables
    are training-only data, so another dataset pays for no extra extraction."""
    import shutil

    from autorad.evaluate.apply import evaluate, out_of_fold

    other = tmp_path / "other"
    shutil.copytree(phantom_ds.path, other, ignore=shutil.ignore_patterns("radiomics_mask-*"))
    evaluate(stable_run, other, tmp_path / "ev")
    pred = out_of_fold(stable_run, other)
    assert len(pred) == len(phantom_ds) and not any(other.glob("radiomics_mask-*"))


@pytest.mark.parametrize("kind", ["autorad", "autorad_image", "radiomics_gbm", "fusion"])
def test_every_kind_that_reads_radiomics_selects(kind, phantom_ds):
    from autorad.train.features import build_features
    from autorad.train.kinds import make_model, model_from_tensors

    tiny = ["model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=1",
            "model.gbm_max_iter=5"]
    extra = ["model.kind=coop", "model.fusion=gbm"] if kind == "fusion" else [f"model.kind={kind}"]
    cfg = load_config("offline", [*tiny, *extra, *STABLE])
    table = build_features(phantom_ds, cfg)
    model = make_model(cfg.model)
    model.fit(table.subset(table.folds != 0), cfg.train)
    pre = model.gbm.pre if kind == "fusion" else model.pre
    assert pre.stability is not None and pre.n_features_out == pre.stability["n_kept"]
    test = dataclasses.replace(table.subset(table.folds == 0), radiomics_perturbed=None)  # inference: none
    again = model_from_tensors(cfg.model, *model.to_tensors())
    assert np.allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)


# ---- off by default --------------------------------------------------------------------------------------------
def test_off_by_default_changes_nothing(phantom_ds, phantom_logreg_run):
    from autorad.train.features import build_features
    from autorad.train.kinds.base import fit_radiomics_pre

    cfg = load_config("radiomics_logreg")
    assert cfg.radiomics.stability == "none" and "stability" not in dump_config(cfg)  # run fingerprints as before
    assert "stability" not in (phantom_logreg_run / "config.yaml").read_text()
    meta = json.loads((phantom_logreg_run / "final" / "model" / "model.json").read_text())
    assert "stability" not in json.dumps(meta["model_state"])
    table = build_features(phantom_ds, cfg)
    assert table.radiomics_perturbed is None
    # perturbed values equal to the consensus ones: every feature agrees, the fit is the plain one exactly
    same = dataclasses.replace(table, radiomics_perturbed=build_features(phantom_ds, load_config(
        "radiomics_logreg", STABLE)).radiomics_perturbed)
    same.radiomics_perturbed.matrices = {k: table.radiomics.copy() for k in same.radiomics_perturbed.matrices}
    plain, selected = fit_radiomics_pre(table), fit_radiomics_pre(same)
    assert selected.kept_features == plain.kept_features
    assert np.array_equal(selected.transform(table.radiomics), plain.transform(table.radiomics))


def test_cli_extracts_a_perturbed_table_and_refuses_a_bad_variant(phantom_ds, stable_run):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "autorad", "radiomics", str(phantom_ds.path), *args],
                              capture_output=True, text=True)

    bad = cli("--mask-variant", "bigger")
    assert bad.returncode == 2 and "grow<n> or shrink<n>" in bad.stderr and "Traceback" not in bad.stderr
    ok = cli("--mask-variant", "shrink1")  # already extracted by the run: read from the cache
    assert ok.returncode == 0 and "radiomics_mask-shrink1.parquet" in ok.stdout
