"""Frozen-embedding cache: computed once, manifest order, keyed by dataset/encoder/weights, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import autorad.encoders as encoders
from autorad.core.errors import AutoradError
from autorad.data.dataset import Dataset, NoduleRecord, write_dataset
from autorad.encoders.embed import cache_paths, embed_dataset, encoder_input, read_embeddings
from autorad.encoders.registry import get_entry

torch.set_num_threads(1)


def _embedded(dataset, name: str, **kwargs):
    """Embed (cached) and read back, as training does."""
    embed_dataset(dataset, name, **kwargs)
    return read_embeddings(dataset, name)


def _records(n: int, with_volume: bool):
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(-1000, 300, (48, 48)).astype(np.int16)
        mask = np.zeros((48, 48), bool)
        mask[20:20 + 4 + i % 5, 18:24] = True
        ratings = np.zeros((4, 9), np.int16)
        ratings[:3] = rng.integers(1, 6, 9)
        ratings[:3, 8] = [1 + i % 5] * 3
        vol = vmask = None
        if with_volume and i % 2 == 0:
            vol = rng.integers(-1000, 300, (5, 20, 20)).astype(np.int16)
            vmask = np.zeros((5, 20, 20), bool)
            vmask[2, 8:12, 8:12] = True
        yield NoduleRecord(nodule_id=f"n{i:03d}", patient_id=f"p{i // 2}", series_uid=f"s{i // 2}", ratings=ratings,
                           slice_hu=img, slice_mask=mask, pixel_spacing_mm=0.7, volume_hu=vol, volume_mask=vmask,
                           volume_spacing_mm=(2.5, 0.7, 0.7) if vol is not None else None)


@pytest.fixture()
def dataset(tmp_path: Path) -> Dataset:
    return write_dataset(_records(21, with_volume=True), tmp_path / "ds", "synthetic")


def test_embeddings_in_manifest_order_equal_direct_encoding(dataset: Dataset) -> None:
    path = embed_dataset(dataset.path, "tiny-vit-2d", batch_size=4)
    assert path.parent == dataset.path / "embeddings" and path.suffix == ".npz"
    ids, emb = read_embeddings(dataset.path, "tiny-vit-2d")
    assert ids == dataset.nodule_ids and emb.shape == (len(dataset), 32) and emb.dtype == np.float32
    enc = encoders.load_encoder("tiny-vit-2d")
    crops = [a["crop_hu"] for _, a in dataset.iter_arrays(("crop_hu",))]
    np.testing.assert_allclose(emb, enc.embed(crops), atol=1e-5)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickle
        assert set(z.files) == {"nodule_ids", "emb"}
    assert path.with_suffix(".json").is_file()
    assert not list((dataset.path / "embeddings").glob(".partial-*"))


def test_cached_embeddings_never_run_the_encoder_again(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    first = embed_dataset(dataset, "tiny-vit-2d")

    def boom(*a, **k):
        raise AssertionError("the vision encoder ran again")

    monkeypatch.setattr(encoders, "load_encoder", boom)
    assert embed_dataset(dataset, "tiny-vit-2d") == first
    ids, _ = _embedded(dataset, "tiny-vit-2d")
    assert len(ids) == len(dataset)


def test_cache_key_depends_on_encoder_weights_and_dataset(dataset: Dataset, tmp_path: Path) -> None:
    a = cache_paths(dataset, get_entry("tiny-vit-2d"), None)[0]
    b = cache_paths(dataset, get_entry("tiny-cnn-3d"), None)[0]
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"x")
    c = cache_paths(dataset, get_entry("tiny-vit-2d"), str(w))[0]
    other = write_dataset(_records(12, with_volume=False), tmp_path / "ds2", "synthetic")
    d = cache_paths(other, get_entry("tiny-vit-2d"), None)[0]
    assert len({a.name, b.name, c.name, d.name}) == 4


def test_a_killed_run_resumes_where_it_stopped(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    real = encoders.load_encoder
    calls: list[int] = []

    class Dies:
        def __init__(self, enc, fail_after):
            self.enc, self.fail_after, self.entry = enc, fail_after, enc.entry

        def embed(self, images, batch_size=32):
            calls.append(len(images))
            if len(calls) > self.fail_after:
                raise KeyboardInterrupt  # like a kill between chunks
            return self.enc.embed(images, batch_size)

    monkeypatch.setattr(encoders, "load_encoder",
                        lambda name, weights=None, device="cpu": Dies(real(name, weights, device), 2))
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, "tiny-vit-2d", chunk_size=5)
    final, _, partial, _ = cache_paths(dataset, get_entry("tiny-vit-2d"), None)
    assert not final.exists() and len(list(partial.glob("chunk-*.npz"))) == 2
    # a torn temporary file from a kill -9 must not be taken for a chunk
    (partial / ".chunk-00002.npz.tmp-123").write_bytes(b"garbage")
    calls.clear()
    monkeypatch.setattr(encoders, "load_encoder",
                        lambda name, weights=None, device="cpu": Dies(real(name, weights, device), 99))
    embed_dataset(dataset, "tiny-vit-2d", chunk_size=5)
    assert calls == [5, 5, 1]  # only the three chunks that were missing (21 nodules = 5+5+5+5+1)
    _, emb = _embedded(dataset, "tiny-vit-2d")
    crops = [a["crop_hu"] for _, a in dataset.iter_arrays(("crop_hu",))]
    np.testing.assert_allclose(emb, real("tiny-vit-2d").embed(crops), atol=1e-5)


_SLOW_EMBED = """
import sys, time
from autorad.encoders.base import VisionEncoder
from autorad.encoders.embed import embed_dataset
real = VisionEncoder.embed
def slow(self, images, batch_size=32):
    time.sleep(0.4)
    return real(self, images, batch_size)
VisionEncoder.embed = slow
embed_dataset(sys.argv[1], "tiny-vit-2d", chunk_size=1)
"""


def test_sigkill_mid_run_then_rerun_continues(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, partial, _ = cache_paths(dataset, get_entry("tiny-vit-2d"), None)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EMBED, str(dataset.path)],
                            env={**os.environ, "AUTORAD_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 90
    while time.time() < deadline and len(list(partial.glob("chunk-*.npz"))) < 3 and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 3 <= done < len(dataset), "the child should have been killed part-way"
    real = encoders.load_encoder
    calls: list[int] = []

    class Counting:
        def __init__(self, enc):
            self.enc, self.entry = enc, enc.entry

        def embed(self, images, batch_size=32):
            calls.append(len(images))
            return self.enc.embed(images, batch_size)

    monkeypatch.setattr(encoders, "load_encoder",
                        lambda name, weights=None, device="cpu": Counting(real(name, weights, device)))
    ids, emb = _embedded(dataset, "tiny-vit-2d", chunk_size=1)
    assert sum(calls) <= len(dataset) - done + 1  # at most the chunk in flight at the kill is redone
    assert ids == dataset.nodule_ids
    crops = [a["crop_hu"] for _, a in dataset.iter_arrays(("crop_hu",))]
    np.testing.assert_allclose(emb, real("tiny-vit-2d").embed(crops), atol=1e-5)


def test_3d_encoders_get_volumes_where_the_dataset_has_them(dataset: Dataset) -> None:
    entry = get_entry("tiny-cnn-3d")
    arrays = dataset.arrays(dataset.nodule_ids[0])
    assert encoder_input(arrays, entry).ndim == 3
    assert encoder_input({"crop_hu": arrays["crop_hu"]}, entry).ndim == 2
    ids, emb = _embedded(dataset, "tiny-cnn-3d")
    enc = encoders.load_encoder("tiny-cnn-3d")
    inputs = [encoder_input(dataset.arrays(i), entry) for i in ids]
    assert {x.ndim for x in inputs} == {2, 3}
    np.testing.assert_allclose(emb, enc.embed(inputs), atol=1e-5)


def test_text_encoders_and_bad_executors_are_refused(dataset: Dataset) -> None:
    with pytest.raises(AutoradError, match="text encoder"):
        embed_dataset(dataset, "tiny-text")
    with pytest.raises(AutoradError, match="unknown executor"):
        embed_dataset(dataset, "tiny-vit-2d", executor="dask")
