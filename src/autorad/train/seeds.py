"""Several training seeds of one config under the same folds: numbers that hold, and the seed ensemble.

With ``train.n_seeds = k > 1``, ``autorad train`` trains seeds ``seed .. seed+k-1`` (each a complete run under
``seeds/<s>/``, the same patient folds, independent of each other: local in sequence, or Ray tasks with
``train.executor: ray``). The run folder's own files then describe

- ``metrics.json["seeds"]``: every seed's pooled metrics, their mean and sample std over seeds;
- ``predictions.parquet`` / ``metrics.json`` pooled: the seed ensemble (probabilities averaged over seeds) when
  ``train.seed_ensemble`` is true, else the first seed's run;
- ``final/model``: the ensemble of every seed's final model (:class:`SeedEnsemble`), or the first seed's.

A seed's run is exactly ``autorad train`` with ``train.seed = s`` and ``n_seeds = 1``: a finished seed is reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.config import ExperimentConfig
from autorad.train.kinds.fusion import FusedModel
from autorad.train.kinds.seed_ensemble import SeedEnsemble

PROB_COLUMNS = [f"prob_{c}" for c in CLASS_NAMES]
SUMMARY_KEYS = ("accuracy", "macro_auc", "macro_f1", "per_class.benign.f1", "per_class.unsure.f1",
                "per_class.malignant.f1", "ece")


def seed_values(cfg: ExperimentConfig) -> list[int]:
    """The seeds a config trains: ``seed, seed+1, ..., seed+n_seeds-1``."""
    return [cfg.train.seed + i for i in range(cfg.train.n_seeds)]


def single_seed_config(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config of one seed's run: the same config with ``seed``, ``n_seeds = 1`` and the scheduling settings
    (executor, jobs) at their defaults, so a seed's run and its checkpoints do not depend on how it was scheduled."""
    one = cfg.model_copy(deep=True)
    one.train.seed, one.train.n_seeds, one.train.seed_ensemble = seed, 1, False
    one.train.calibration = "none"  # the combined run calibrates its pooled predictions
    one.train.executor, one.train.jobs, one.train.ray_address = "local", 1, None
    return one


def average_predictions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Row-aligned (by nodule_id) mean of the class probabilities of several prediction tables."""
    base = frames[0].set_index("nodule_id")
    probs = np.mean([f.set_index("nodule_id").loc[base.index, PROB_COLUMNS].to_numpy() for f in frames], axis=0)
    out = base.copy()
    out[PROB_COLUMNS] = probs
    out["pred"] = [CLASS_NAMES[i] for i in probs.argmax(axis=1)]
    return out.reset_index()[frames[0].columns]


def seed_summary(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Pooled metrics of every seed, with their mean and sample standard deviation over seeds."""
    from autorad.evaluate.metrics import flatten_scalars

    flats = {s: flatten_scalars(m["pooled"]) for s, m in per_seed.items()}
    values = {k: [flats[s].get(k) for s in flats] for k in SUMMARY_KEYS}
    mean, std = {}, {}
    for k, v in values.items():
        arr = np.array([x for x in v if x is not None], dtype=np.float64)
        mean[k] = round(float(arr.mean()), 6) if arr.size else None
        std[k] = round(float(arr.std(ddof=1)), 6) if arr.size >= 2 else None
    return {"seeds": list(flats), "values": values, "mean": mean, "std": std}


def _gbm_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The radiomics GBM that a fused multi-seed run trains once (it has no random state to vary; its settings are
    not selected: see :func:`_check_fused_selection`)."""
    gbm = single_seed_config(cfg, cfg.train.seed)
    gbm.model.kind, gbm.model.fusion, gbm.train.select = FusedModel.partner_kind, "none", None
    return gbm


def _check_fused_selection(cfg: ExperimentConfig) -> None:
    """With fusion and several seeds each seed selects its prompt learner's settings; the GBM, trained once and
    fused afterwards, has fixed ones: refuse a grid over what only the fused model reads."""
    from autorad.core.errors import ConfigError
    from autorad.train.kinds import get_kind

    if cfg.train.select is None:
        return
    own = get_kind(cfg.model.kind).hyperparameters
    for key in cfg.train.select.grid:
        if key not in own:
            raise ConfigError(f"train.select.grid: key '{key}' cannot be selected with model.fusion: gbm and "
                              f"train.n_seeds > 1 (the GBM is trained once and fused with every seed); use "
                              f"train.n_seeds: 1 or drop the key")


def fuse(base: pd.DataFrame, gbm: pd.DataFrame, weight: float) -> pd.DataFrame:
    """(1 - weight) base + weight gbm, row-aligned by nodule_id (the late fusion of autorad.train.kinds.fusion)."""
    g = gbm.set_index("nodule_id").loc[base["nodule_id"], PROB_COLUMNS].to_numpy()
    out = base.copy()
    out[PROB_COLUMNS] = (1 - weight) * base[PROB_COLUMNS].to_numpy() + weight * g
    out["pred"] = [CLASS_NAMES[i] for i in out[PROB_COLUMNS].to_numpy().argmax(axis=1)]
    return out


def train_seeds(dataset: str | Path, cfg: ExperimentConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Train every seed of ``cfg`` (see the module docstring) and write the run folder's combined files.

    With ``model.fusion: gbm`` the radiomics GBM is trained once (``gbm/``) and fused with each seed and with
    the seed ensemble; the fusion weight must then be a number.
    """
    import logging
    import time

    from autorad.core.errors import ConfigError
    from autorad.core.outputs import prepare_output_dir
    from autorad.core.tasks import run_tasks
    from autorad.data.dataset import Dataset
    from autorad.evaluate.metrics import compute_metrics, metrics_summary_line
    from autorad.train.cv import check_resumable, train_single_task, write_run_report
    from autorad.train.features import prepare_features
    from autorad.train.run import Run

    log = logging.getLogger(__name__)
    fused = cfg.model.fusion == "gbm"
    if fused and cfg.model.fusion_weight == "auto":
        raise ConfigError("model.fusion_weight: auto is chosen per training run; with train.n_seeds > 1 give a "
                          "number (e.g. 0.5)")
    if fused:
        _check_fused_selection(cfg)
    t0 = time.time()
    run = Run(out)
    prepare_output_dir(run.path, kind="run", inputs=(dataset,), overwrite=overwrite, resume=True, create=False)
    check_resumable(run, cfg, overwrite)
    prepare_output_dir(run.path, kind="run", inputs=(dataset,), overwrite=overwrite, resume=not overwrite)
    with run.logging_to_file():
        run.write_config(cfg)
        seeds = seed_values(cfg)
        configs = {str(s): single_seed_config(cfg, s) for s in seeds}
        for c in configs.values():
            c.model.fusion = "none"
        paths = {k: run.seed_dir(k) for k in configs}
        if fused:
            configs["gbm"], paths["gbm"] = _gbm_config(cfg), run.path / "gbm"
        prepare_features(Dataset(dataset), [cfg])  # every seed reads the same features: computed once, here
        tasks = [(str(dataset), json.dumps(c.model_dump(mode="json")), str(paths[k])) for k, c in configs.items()]
        log.info("%s: %d seeds %s under the same folds%s (%s)", cfg.name, len(seeds), seeds,
                 " + the radiomics GBM" if fused else "", cfg.train.executor)
        list(run_tasks(train_single_task, tasks, jobs=cfg.train.jobs, executor=cfg.train.executor,
                       address=cfg.train.ray_address))
        runs = {k: Run(v) for k, v in paths.items()}
        frames = {s: runs[str(s)].read_predictions() for s in seeds}
        weight = float(cfg.model.fusion_weight) if fused else 0.0
        if fused:
            gbm = runs["gbm"].read_predictions()
            frames = {s: fuse(f, gbm, weight) for s, f in frames.items()}
        per_seed = {s: compute_metrics(f) for s, f in frames.items()}
        predictions = average_predictions(list(frames.values())) if cfg.train.seed_ensemble else frames[seeds[0]]
        run.write_predictions(predictions)
        metrics = compute_metrics(predictions)
        metrics["seeds"] = seed_summary(per_seed)
        metrics["seed_ensemble"] = bool(cfg.train.seed_ensemble)
        run.write_metrics(metrics)
        if cfg.train.calibration != "none":  # the seed ensemble's (or first seed's) out-of-fold predictions
            from autorad.train.calibration import calibrate_run

            calibrate_run(run, report=False)
        summary = metrics["seeds"]
        log.info("%s: %s", "seed ensemble" if cfg.train.seed_ensemble else f"seed {seeds[0]}",
                 metrics_summary_line(metrics))
        log.info("over seeds: %s", ", ".join(
            f"{k} {summary['mean'][k]:.3f} ± {summary['std'][k]:.3f}" for k in
            ("accuracy", "macro_auc", "per_class.unsure.f1")
            if summary["mean"][k] is not None and summary["std"][k] is not None))
        if cfg.train.final_model:
            loaded = [runs[str(k)].load_model() for k in seeds]
            model = SeedEnsemble(cfg.model, [m for m, _ in loaded]) if cfg.train.seed_ensemble else loaded[0][0]
            if fused:
                model = FusedModel(cfg.model, model, runs["gbm"].load_model()[0], weight)
            # the checkpoint's model config is the shipped model's own (a seed's may be its selection's winner)
            from autorad.train.record import RECORD_KEY

            first = {k: v for k, v in loaded[0][1].items() if k != RECORD_KEY}  # seed 0's record is not ours
            run.save_model(None, model, {**first, "fold": None, "seeds": seeds,
                                         "config": {**cfg.model_dump(mode="json"),
                                                    "model": model.cfg.model_dump(mode="json")}})
        if cfg.train.select is not None:
            from autorad.train.select import attach_selection_summary

            attach_selection_summary(run, cfg, {s: runs[str(s)] for s in seeds})
        write_run_report(run, cfg, Dataset(dataset), [], time.time() - t0)
        if cfg.train.final_model:  # metrics.json is final: seal it, the run id and the training set into the model
            from autorad.train.record import attach_run_record

            attach_run_record(run, Dataset(dataset))
    return run.path
