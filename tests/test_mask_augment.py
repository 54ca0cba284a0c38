"""``radiomics.mask_augment``: prompt learners train on the radiomics of the dataset mask or of its one-pixel
grown / shrunk versions, drawn per nodule and epoch; prediction reads the given mask's radiomics only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autorad.config import AUGMENT_MASKS, DataConfig, dump_config
from autorad.train.resolve import load_config

AUGMENT = ["radiomics.mask_augment=true"]
TINY = ["model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=2",
        "model.kind=autorad_image"]


@pytest.fixture(scope="module")
def phantom_ds(tmp_path_factory):
    from autorad.data.ingest import ingest

    return ingest("phantom", tmp_path_factory.mktemp("aug") / "ds", None, DataConfig(source="phantom", phantom_n=40))


def test_off_by_default_and_left_out_of_the_dump():
    assert load_config("offline_cpu").radiomics.mask_augment is False
    assert "mask_augment" not in dump_config(load_config("offline_cpu"))  # earlier run folders keep resuming
    assert "mask_augment: true" in dump_config(load_config("offline_cpu", AUGMENT))


def test_training_features_carry_the_perturbed_radiomics_without_stability_selection(phantom_ds):
    from autorad.train.features import build_features
    from autorad.train.kinds.base import fit_radiomics_pre

    cfg = load_config("offline", [*TINY, *AUGMENT])
    table = build_features(phantom_ds, cfg)
    p = table.radiomics_perturbed
    assert p.augment and p.min_agreement is None and tuple(p.matrices) == AUGMENT_MASKS
    assert all(m.shape == table.radiomics.shape for m in p.matrices.values())
    assert not np.allclose(np.nan_to_num(p.matrices["grow1"]), np.nan_to_num(table.radiomics))
    plain = fit_radiomics_pre(dataclasses.replace(table, radiomics_perturbed=None))
    assert fit_radiomics_pre(table).kept_features == plain.kept_features  # augmentation selects nothing
    assert build_features(phantom_ds, cfg, training=False).radiomics_perturbed is None  # applying: none
    both = build_features(phantom_ds, load_config("offline", [*TINY, *AUGMENT, "radiomics.stability=one_pixel"]))
    assert both.radiomics_perturbed.augment and both.radiomics_perturbed.min_agreement == 0.9
    radiomics_free = build_features(phantom_ds, load_config("offline", [*TINY, *AUGMENT, "model.kind=coop"]))
    assert radiomics_free.radiomics_perturbed is None


def test_batches_draw_the_asked_version_and_prediction_reads_the_first():
    from autorad.train.loop import TrainInputs

    rad = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2)
    data = TrainInputs(torch.zeros(4, 5), rad, torch.zeros(4, dtype=torch.long))
    assert data.n_masks == 3
    _, r, _ = data.batch(np.array([0, 2]), masks=np.array([2, 1]))
    assert torch.equal(r, torch.stack([rad[0, 2], rad[2, 1]]))
    _, r, _ = data.batch(np.array([1, 3]))
    assert torch.equal(r, rad[[1, 3], 0])
    assert TrainInputs(torch.zeros(4, 5), rad[:, 0], torch.zeros(4, dtype=torch.long)).n_masks == 1


def _fit(table, cfg):
    from autorad.train.kinds import make_model

    model = make_model(cfg.model)
    model.fit(table.subset(table.folds != 0), cfg.train, fold=0)
    return model


def test_copies_of_the_dataset_radiomics_train_the_plain_model_exactly_and_real_ones_change_it(phantom_ds):
    """The draw has its own random stream: versions equal to the dataset mask's give the model trained without
    the option, bit for bit; the real perturbed radiomics give another model (the option does something)."""
    from autorad.train.features import build_features

    cfg_plain, cfg_aug = load_config("offline", TINY), load_config("offline", [*TINY, *AUGMENT])
    table = build_features(phantom_ds, cfg_aug)
    test = dataclasses.replace(table.subset(table.folds == 0), radiomics_perturbed=None)
    plain = _fit(dataclasses.replace(table, radiomics_perturbed=None), cfg_plain).predict_proba(test)
    copies = dataclasses.replace(table, radiomics_perturbed=dataclasses.replace(
        table.radiomics_perturbed, matrices={k: table.radiomics.copy() for k in AUGMENT_MASKS}))
    assert np.array_equal(_fit(copies, cfg_aug).predict_proba(test), plain)
    augmented = _fit(table, cfg_aug)
    assert not np.allclose(augmented.predict_proba(test), plain, atol=1e-6)


def test_a_trained_augmented_run_predicts_from_the_dataset_masks_only(phantom_ds, tmp_path):
    """Cross-validation with the option: the fold models reload from their checkpoints and give the same
    out-of-fold probabilities without any perturbed table."""
    import shutil

    from autorad.evaluate.apply import out_of_fold
    from autorad.train.entry import train

    cfg = load_config("offline", [*TINY, *AUGMENT, "train.final_model=false"])
    run = train(phantom_ds.path, cfg, tmp_path / "run")
    assert "mask_augment: true" in (run / "config.yaml").read_text()
    other = tmp_path / "other"
    shutil.copytree(phantom_ds.path, other, ignore=shutil.ignore_patterns("radiomics_mask-*"))
    import pandas as pd

    pred = out_of_fold(run, other)
    assert len(pred) == len(phantom_ds) and not any(other.glob("radiomics_mask-*"))
    own = pd.read_parquet(run / "predictions.parquet").set_index("nodule_id")
    cols = [c for c in own.columns if c.startswith("prob_")]
    assert cols and np.allclose(pred.set_index("nodule_id").loc[own.index, cols], own[cols], atol=1e-6)
