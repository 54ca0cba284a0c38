"""``autorad run``: the main job — ingest, radiomics, embeddings, cross-validation and the report, resuming
whatever is already done. With no config it runs the offline embedded default (``demo``: phantom data, real
offline encoders)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from autorad.config import DataConfig, ExperimentConfig, load_config
from autorad.data.dataset import Dataset, class_count_line
from autorad.errors import ConfigError, InputError
from autorad.io import hash_json, write_json
from autorad.paths import SHARED_DATA_ENV, shared_data_dir
from autorad.train.cv import log

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
    cannot write elsewhere); ``--out`` given by the user is taken as is."""
    if out is not None:
        return Path(out)
    p = Path(cfg.out_dir)
    if p.is_absolute() or ".." in p.parts:
        raise ConfigError(f"out_dir {cfg.out_dir!r} must be a relative path without '..' (or pass --out)")
    return Path.cwd() / p


def _data_key(data: DataConfig) -> str:
    return hash_json(data.model_dump(mode="json"), 16)


def prepare_dataset(cfg: ExperimentConfig, out_dir: Path) -> Dataset:
    """Ingest the configured source into ``out_dir/dataset`` unless an identical ingest is already there."""
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
        log(f"dataset: reused {ds_dir} ({class_count_line(ds.class_counts)})")
        return ds
    ds = ingest(data.source, ds_dir, resolve_data_path(data.path), data)
    write_json(stamp, {"key": key})
    log(f"dataset: {class_count_line(ds.class_counts)}")
    return ds


def run(config: str | Path | None = None, out: str | Path | None = None,
        overrides: list[str] | None = None) -> Path:
    """Run the whole pipeline for ``config`` (default: the embedded demo); return the report's path."""
    from autorad.train.cv import train

    cfg = load_config(config if config is not None else DEFAULT_CONFIG, overrides)
    out_dir = resolve_out_dir(cfg, out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = prepare_dataset(cfg, out_dir)
    run_dir = train(ds.path, cfg, out_dir / "run")
    return run_dir / "report.html"
