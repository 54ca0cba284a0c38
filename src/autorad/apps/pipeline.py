"""``autorad run``: the main job, as its stages

    ingest -> radiomics -> embeddings -> cross-validation -> final -> report

each a function that reads the previous stage's files, writes its own and is a cached no-op when they are already
there (:func:`ensure_dataset`, :func:`autorad.train.features.ensure_radiomics`,
:func:`autorad.train.features.ensure_embeddings`, :func:`autorad.train.cv.cross_validate`,
:func:`autorad.train.cv.fit_final`, :func:`autorad.train.cv.write_run_report`). With no config it runs the offline
embedded default (``demo``: phantom data, real offline encoders)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from autorad.config import DataConfig, ExperimentConfig
from autorad.core.devices import resolve_device
from autorad.core.errors import ConfigError, InputError
from autorad.core.io import hash_json, write_json
from autorad.core.outputs import discard_if_unused, missing_folders, prepare_output_dir
from autorad.core.paths import SHARED_DATA_ENV, shared_data_dir
from autorad.data.dataset import Dataset, class_count_line
from autorad.train.resolve import load_config
from autorad.train.run import Run

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "demo"


def resolve_data_path(path: str | None) -> Path | None:
    """Expand ``~``, environment variables and ``${AUTORAD_SHARED_DATA}`` (falling back to ../shared/data)."""
    if path is None:
        return None
    token = "${" + SHARED_DATA_ENV + "}"
    if token in path and not os.environ.get(SHARED_DATA_ENV):
        shared = shared_data_dir()
        if shared is None:
            raise InputError(f"config refers to {token} but no shared data folder was found; set ${SHARED_DATA_ENV}")
        path = path.replace(token, str(shared))
    return Path(os.path.expandvars(os.path.expanduser(path)))


def resolve_out_dir(cfg: ExperimentConfig, out: str | Path | None) -> Path:
    """The run's output folder. A config's own ``out_dir`` must stay under the current folder (a shared config
    cannot write elsewhere); ``--out`` given by the user may be anywhere that passes
    :func:`autorad.core.outputs.prepare_output_dir`."""
    if out is not None:
        return Path(out)
    p = Path(cfg.out_dir)
    if p.is_absolute() or ".." in p.parts:
        raise ConfigError(f"out_dir {cfg.out_dir!r} must be a relative path without '..' (or pass --out)")
    return Path.cwd() / p


def _data_key(data: DataConfig) -> str:
    return hash_json(data.model_dump(mode="json"), 16)


def ensure_dataset(cfg: ExperimentConfig, out_dir: Path) -> Dataset:
    """Stage: ingest the configured source into ``out_dir/dataset`` unless an identical ingest is already there."""
    from autorad.data.ingest import ingest

    data = cfg.data
    if data.source == "dataset":
        path = resolve_data_path(data.path)
        if path is None:
            raise ConfigError("data.source 'dataset' needs data.path (an existing dataset folder)")
        return Dataset(path)
    ds_dir = out_dir / "dataset"
    stamp = out_dir / "dataset.stage.json"
    key = _data_key(data)
    if ds_dir.is_dir() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        ds = Dataset(ds_dir)
        log.info("dataset: reused %s (%s)", ds_dir, class_count_line(ds.class_counts))
        return ds
    # the pipeline folder is autorad's (checked by run()): its dataset stage is replaced when the data changes
    ds = ingest(data.source, ds_dir, resolve_data_path(data.path), data, overwrite=True)
    write_json(stamp, {"key": key})
    log.info("dataset: %s", class_count_line(ds.class_counts))
    return ds


def run(config: str | Path | None = None, out: str | Path | None = None,
        overrides: list[str] | None = None, overwrite: bool = False) -> Path:
    """Run every stage for ``config`` (default: the embedded demo); return the report's path.

    A rerun into the same folder resumes; ``overwrite`` empties an earlier autorad output folder first.

    Args:
        config: a YAML file or a shipped config's name (None: ``demo``).
        out: the output folder (default: the config's ``out_dir`` under the current folder).
        overrides: ``section.key=value`` strings, as ``--set`` gives them.
        overwrite: empty an earlier autorad output folder first.

    Returns:
        The path of the run's report.html.
    """
    from autorad.train.entry import train
    from autorad.train.features import check_encoders, ensure_embeddings, ensure_radiomics

    cfg = load_config(config if config is not None else DEFAULT_CONFIG, overrides)
    resolve_device(cfg.train.device)  # a missing GPU is reported before any long computation
    out_dir = resolve_out_dir(cfg, out)
    config_path = Path(config) if config is not None and Path(config).is_file() else None
    made = missing_folders(out_dir)
    prepare_output_dir(out_dir, kind="pipeline", inputs=(config_path, resolve_data_path(cfg.data.path)),
                       overwrite=overwrite, resume=not overwrite, option="--out" if out is not None else "out_dir")
    times: dict[str, float] = {}

    def timed(stage: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        times[stage] = round(time.perf_counter() - t0, 1)
        return result

    try:
        ds = timed("dataset", ensure_dataset, cfg, out_dir)
    except BaseException:  # refused before anything was made (no DICOM under data.path...): no empty folder left
        discard_if_unused(made)
        raise
    check_encoders(ds, cfg)  # missing weights: one error now, not after the radiomics
    timed("radiomics", ensure_radiomics, ds, cfg)
    timed("embeddings", ensure_embeddings, ds, cfg)
    run_dir = timed("train", train, ds.path, cfg, out_dir / "run")  # cross-validation -> final -> report
    times["total"] = round(sum(times.values()), 1)
    write_json(out_dir / "stage_times.json", times)  # wall seconds of this call (a cached stage is ~0)
    log.info("stage times (s): %s", ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return Run(run_dir).report_file
