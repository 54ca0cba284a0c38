"""The Ray executor of the embedding cache gives the same embeddings as the local one (starts a local Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_encoders_embed import _embedded, _records

from autorad.data.dataset import write_dataset
from autorad.encoders.embed import embed_dataset


@pytest.mark.slow
def test_ray_executor_gives_the_same_embeddings(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = write_dataset(_records(21, with_volume=True), tmp_path / "local", "synthetic")
    remote = write_dataset(_records(21, with_volume=True), tmp_path / "ray", "synthetic")
    _, want = _embedded(local, "tiny-vit-2d")
    path = embed_dataset(remote, "tiny-vit-2d", executor="ray", chunk_size=8)
    with np.load(path, allow_pickle=False) as z:
        assert z["nodule_ids"].tolist() == remote.nodule_ids
        np.testing.assert_allclose(z["emb"], want, atol=1e-5)
    assert not list((remote.path / "embeddings").glob(".partial-*"))
