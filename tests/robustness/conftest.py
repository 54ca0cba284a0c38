"""Shared fixtures of the robustness suite: one small dataset and one trained run, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dicom_factory
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cli_batch

TINY_PROMPT = ["--set", "model.vision_encoder=tiny-vit-2d", "--set", "model.text_encoder=tiny-text",
               "--set", "model.n_ctx=2"]


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-fold dataset of ~40 nodules: the first real max-slice nodules when the shared data is here, else
    phantom nodules (so the suite also runs without the LIDC data)."""
    from autorad.config import DataConfig, FoldConfig
    from autorad.core.paths import shared_data_dir
    from autorad.data.ingest import ingest

    out = tmp_path_factory.mktemp("rob") / "ds"
    shared = shared_data_dir()
    npz = shared / "lidc_maxslice" / "lidc_maxslice_dev.npz" if shared else None
    folds = FoldConfig(n_folds=3)
    if npz is not None and npz.is_file():
        ingest("maxslice", out, npz, DataConfig(source="maxslice", limit=60, folds=folds))
    else:
        ingest("phantom", out, None, DataConfig(source="phantom", phantom_n=40, folds=folds))
    return out


@pytest.fixture(scope="session")
def logreg_run(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained radiomics_logreg run (with a final model) on :func:`small_dataset`."""
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    out = tmp_path_factory.mktemp("rob") / "logreg"
    return train(small_dataset, load_config("radiomics_logreg"), out)
