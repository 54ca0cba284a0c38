"""Assemble what a model sees per nodule: label, fold, raw radiomics and frozen image embeddings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from autorad import CLASS_NAMES
from autorad.config import AUGMENT_MASKS, STABILITY_MASKS, ExperimentConfig
from autorad.core.devices import resolve_device
from autorad.core.errors import CheckpointError, InputError, MissingDependencyError
from autorad.data.dataset import Dataset
from autorad.train.kinds import get_kind
from autorad.train.table import FeatureTable, PerturbedRadiomics
from autorad.train.targets import reader_attributes, reader_distribution


def needs_radiomics(cfg: ExperimentConfig) -> bool:
    """Whether the model reads radiomics: its kind says so, or it is fused with the radiomics GBM."""
    return get_kind(cfg.model.kind).needs_radiomics or cfg.model.fusion != "none"


def perturbed_masks(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The mask perturbations whose radiomics training needs: those of ``radiomics.stability`` and of
    ``radiomics.mask_augment`` (none when both are off or the model reads no radiomics)."""
    if not needs_radiomics(cfg):
        return ()
    masks = list(STABILITY_MASKS.get(cfg.radiomics.stability, ()))
    if cfg.radiomics.mask_augment:
        masks += [m for m in AUGMENT_MASKS if m not in masks]
    return tuple(masks)


def ensure_radiomics(ds: Dataset, cfg: ExperimentConfig, training: bool = True,
                     mask_variant: str | None = None) -> None:
    """Stage: extract the radiomics ``cfg.model`` needs (minutes on a new dataset; a cached no-op afterwards), and
    the same radiomics of every perturbed mask (one table each) that training with ``radiomics.stability`` or
    ``mask_augment`` reads, or (applying trained models) the one ``mask_variant`` asks for."""
    if needs_radiomics(cfg):
        from autorad.radiomics.extract import run_radiomics

        run_radiomics(ds.path, cfg.radiomics)
        variants = perturbed_masks(cfg) if training else (mask_variant,) if mask_variant else ()
        for variant in variants:
            run_radiomics(ds.path, cfg.radiomics, mask_variant=variant)


def ensure_embeddings(ds: Dataset, cfg: ExperimentConfig) -> None:
    """Stage: embed every nodule (each of its ``model.views`` views) with ``cfg.model.vision_encoder`` on
    ``train.device`` when the model needs it (minutes on a new dataset; a cached no-op afterwards)."""
    if get_kind(cfg.model.kind).needs_image:
        from autorad.encoders.embed import embed_dataset

        for view in range(cfg.model.views):
            embed_dataset(ds, cfg.model.vision_encoder, weights=cfg.model.vision_weights,
                          device=resolve_device(cfg.train.device), view=view)


def check_encoders(ds: Dataset, cfg: ExperimentConfig) -> None:
    """Before the long stages: refuse an image tail the vision encoder cannot give (``model.image_tuning``), and
    load the frozen encoders that the stages after radiomics need, so that weights that cannot be had are one
    error before minutes of extraction, not after: the vision encoder when a view of the dataset is not embedded
    yet (a later embedding stage reuses nothing of this load), and a prompt learner's text encoder (kept loaded
    for training in this process). Weights a hub source names are downloaded here, once, if the network allows."""
    kind = get_kind(cfg.model.kind)
    if cfg.model.image_tuning != "none":
        from autorad.encoders import check_tunable

        check_tunable(cfg.model.vision_encoder)
    if kind.needs_image:
        from autorad.encoders import load_encoder
        from autorad.encoders.embed import cache_paths
        from autorad.encoders.registry import get_entry

        entry = get_entry(cfg.model.vision_encoder)
        if not all(cache_paths(ds, entry, cfg.model.vision_weights, v)[0].is_file() for v in range(cfg.model.views)):
            with _naming("vision"):
                load_encoder(entry.name, weights=cfg.model.vision_weights)
    if kind.needs_text:
        from autorad.train.kinds.prompting import load_text_encoder

        with _naming("text"):
            load_text_encoder(cfg.model.text_encoder, cfg.model.text_weights, resolve_device(cfg.train.device))


@contextmanager
def _naming(role: str) -> Iterator[None]:
    """Missing or unreadable weights of the ``role`` encoder: the error names the config keys that set them."""
    try:
        yield
    except (CheckpointError, MissingDependencyError) as err:
        raise type(err)(f"model.{role}_encoder: {err} (a local copy: model.{role}_weights)") from None


def prepare_features(ds: Dataset, configs: Sequence[ExperimentConfig]) -> None:
    """Before trainings run as tasks: check every config's encoders first (:func:`check_encoders`), then compute
    the radiomics and embeddings they read, here, once, so the workers only read the caches (workers computing one
    cache at once would race on it, and do the work twice)."""
    for cfg in configs:
        check_encoders(ds, cfg)
    for cfg in configs:
        ensure_radiomics(ds, cfg)
        ensure_embeddings(ds, cfg)


def build_features(dataset: Dataset | str | Path, cfg: ExperimentConfig, training: bool = True,
                   mask_variant: str | None = None) -> FeatureTable:
    """The model inputs ``cfg.model`` declares, computing and caching radiomics and embeddings first if missing.

    ``training=False`` (applying trained models): without the training-only data that costs extra extraction
    (the perturbed-mask radiomics of ``radiomics.stability``), which no fitted model reads. ``mask_variant``
    (applying trained models only, e.g. ``grow1``): the radiomics of every mask so changed (the dataset's cached
    table for it, :func:`autorad.data.mask_perturb.perturb_mask`) replace the consensus ones as the input; crops
    and embeddings are unchanged."""
    if mask_variant is not None and training:
        raise ValueError("mask_variant replaces a model input: only for applying trained models (training=False)")
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    m = ds.manifest
    unknown = set(m["label"]) - set(CLASS_NAMES)
    if unknown:
        raise InputError(f"dataset {ds.path} has unknown labels {sorted(unknown)}")
    table = FeatureTable(nodule_ids=m["nodule_id"].astype(str).to_numpy(),
                         patient_ids=m["patient_id"].astype(str).to_numpy(),
                         folds=m["fold"].to_numpy(dtype=np.int64),
                         y=np.array([CLASS_NAMES.index(c) for c in m["label"]], dtype=np.int64))
    table.soft, table.attributes = reader_distribution(m), reader_attributes(m)
    kind = get_kind(cfg.model.kind)
    ensure_radiomics(ds, cfg, training, mask_variant)
    ensure_embeddings(ds, cfg)
    if needs_radiomics(cfg):
        table.radiomics, table.radiomics_names, table.radiomics_status = read_radiomics_matrix(ds, cfg)
        if mask_variant is not None:
            table.radiomics, _, table.radiomics_status = read_radiomics_matrix(ds, cfg, mask_variant,
                                                                               table.radiomics_names)
        if training and perturbed_masks(cfg):
            table.radiomics_perturbed = PerturbedRadiomics(
                {v: read_radiomics_matrix(ds, cfg, v, table.radiomics_names)[0] for v in perturbed_masks(cfg)},
                cfg.radiomics.min_agreement if cfg.radiomics.stability != "none" else None,
                augment=cfg.radiomics.mask_augment)
    if kind.needs_image:
        table.image = read_image_matrix(ds, cfg)
    return table


def read_radiomics_matrix(ds: Dataset, cfg: ExperimentConfig, mask_variant: str | None = None,
                          names: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Raw radiomics (N, F) in manifest order from the dataset's radiomics table (see :func:`ensure_radiomics`);
    ``mask_variant``: the table of the perturbed masks, with the columns ``names`` (those of the main table)."""
    from autorad.radiomics import load_radiomics, select_feature_columns

    df = load_radiomics(ds.path, mode=cfg.radiomics.mode, mask_variant=mask_variant)
    df = df.set_index(df["nodule_id"].astype(str)).reindex(ds.nodule_ids)
    if df["status"].isna().any():
        raise InputError(f"radiomics of {ds.path} do not cover every nodule; rerun `autorad radiomics`")
    if names is not None:
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise InputError(f"radiomics of masks {mask_variant} of {ds.path} lack {len(missing)} features of the "
                             f"main table (first: {missing[0]}); extract both with the same parameters")
        return df[names].to_numpy(dtype=np.float64), list(names), df["status"].astype(str).to_numpy()
    names = [c for c in df.columns if c not in ("nodule_id", "status")]
    if cfg.radiomics.classes:
        names = select_feature_columns(names, cfg.radiomics.classes)
        if not names:
            raise InputError(f"no radiomic feature belongs to the classes {cfg.radiomics.classes}")
    return df[names].to_numpy(dtype=np.float64), names, df["status"].astype(str).to_numpy()


def read_image_matrix(ds: Dataset, cfg: ExperimentConfig) -> np.ndarray:
    """Frozen image embeddings in manifest order from the dataset's cache (see :func:`ensure_embeddings`):
    (N, D), or (N, V, D) with ``model.views`` V > 1."""
    from autorad.encoders.embed import read_embeddings

    mats = []
    for view in range(cfg.model.views):
        ids, emb = read_embeddings(ds, cfg.model.vision_encoder, weights=cfg.model.vision_weights, view=view)
        if list(ids) != ds.nodule_ids:
            raise InputError(f"embedding cache of {ds.path} is out of step with the manifest; delete its "
                             "embeddings/")
        mats.append(np.asarray(emb, dtype=np.float32))
    return mats[0] if len(mats) == 1 else np.stack(mats, axis=1)
