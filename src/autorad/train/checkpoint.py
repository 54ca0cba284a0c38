"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. No pickle anywhere.

``save_checkpoint(dir, tensors, meta)`` writes ``dir/model.safetensors`` and ``dir/model.json``; the JSON records
the SHA-256 of the tensor file and the name, dtype and shape of every tensor, so ``load_checkpoint`` refuses a file
with flipped bytes, a missing key, an extra key or a wrong shape with a message that names the problem.

The JSON sidecar (class names, config, preprocessing, radiomic feature names...) is itself covered by
``meta_sha256``, the SHA-256 of its other fields as key-sorted JSON, so an edited sidecar (reversed class names,
a changed crop factor, a removed ``autorad_version``) is refused as well. This detects edits and corruption, not
a forger who also recomputes the checksum: share runs through a channel you trust. ``format_version`` is the
layout of these two files: another format is refused; a checkpoint written by another autorad version with the
same format loads with a warning naming both versions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load_bytes
from safetensors.numpy import save as st_save_bytes

from autorad import __version__
from autorad.core.errors import CheckpointError
from autorad.core.io import atomic_write_bytes, hash_file, hash_json, json_roundtrip, write_json
from autorad.core.strict import check_state, shapes_of

TENSOR_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 2  # 1: no format_version, no meta_sha256 (autorad before the sidecar checksum)
log = logging.getLogger(__name__)


def seal_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with ``meta_sha256`` set to the checksum of every other field (as JSON reads them back)."""
    body = json_roundtrip({k: v for k, v in meta.items() if k != "meta_sha256"})
    return {**body, "meta_sha256": hash_json(body)}


def version_note(meta: dict[str, Any]) -> str | None:
    """A warning when another autorad version wrote this checkpoint (None when it is this version)."""
    written_by = meta.get("autorad_version")
    if written_by == __version__:
        return None
    return (f"this model was written by autorad {written_by}; this is autorad {__version__} (same checkpoint "
            f"format): results may differ from the original run")


def save_checkpoint(directory: Path, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write tensors (numpy arrays) and JSON metadata atomically; the JSON is written last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.require(v, requirements="C") for k, v in sorted(tensors.items())}  # keeps 0-d shapes
    atomic_write_bytes(directory / TENSOR_FILE, st_save_bytes(arrays))
    manifest = {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()}
    sealed = seal_meta({"autorad_version": __version__, **meta, "format_version": FORMAT_VERSION,
                        "tensors": manifest, "sha256": hash_file(directory / TENSOR_FILE)})
    write_json(directory / META_FILE, sealed)


def reseal_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Replace a checkpoint's JSON sidecar by ``meta``, sealed again (the tensor file stays as it is).

    For adding records to a finished model (:mod:`autorad.train.record`); refused when the tensor file no longer
    matches the checksum and manifest in ``meta``.
    """
    directory = Path(directory)
    if not (directory / TENSOR_FILE).is_file() or hash_file(directory / TENSOR_FILE) != meta.get("sha256"):
        raise CheckpointError(f"{directory / TENSOR_FILE} does not match the checksum in {META_FILE}; not resealing")
    write_json(directory / META_FILE, seal_meta(meta))


def checkpoint_exists(directory: Path) -> bool:
    """True when both files of a checkpoint are present (the JSON is written last)."""
    return (Path(directory) / TENSOR_FILE).is_file() and (Path(directory) / META_FILE).is_file()


def load_meta(directory: Path) -> dict[str, Any]:
    """Read and verify a checkpoint's JSON sidecar only (format, seal), not its tensors; raise
    :class:`CheckpointError` when either file is missing or the sidecar is not one autorad sealed."""
    directory = Path(directory)
    tfile, mfile = directory / TENSOR_FILE, directory / META_FILE
    if not tfile.is_file() or not mfile.is_file():
        raise CheckpointError(f"no checkpoint in {directory} (need {TENSOR_FILE} and {META_FILE})")
    try:
        meta = json.loads(mfile.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{mfile} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or "tensors" not in meta or "sha256" not in meta:
        raise CheckpointError(f"{mfile} lacks the tensor manifest or checksum")
    check_meta(meta, mfile)
    return meta


def load_checkpoint(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint; raise :class:`CheckpointError` on any mismatch or corruption."""
    meta = load_meta(directory)
    tfile = Path(directory) / TENSOR_FILE
    try:
        tensors = st_load_bytes(tfile.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{tfile} cannot be read as safetensors ({err})") from None
    check_state(shapes_of(tensors), {k: spec["shape"] for k, spec in meta["tensors"].items()}, str(tfile))
    if hash_file(tfile) != meta["sha256"]:
        raise CheckpointError(f"{tfile} is corrupt: its SHA-256 does not match the one in {META_FILE}")
    return tensors, meta


def check_meta(meta: dict[str, Any], mfile: Path) -> None:
    """Refuse another checkpoint format or an edited sidecar; warn when another autorad version wrote it."""
    fmt = meta.get("format_version", 1)
    if fmt != FORMAT_VERSION:
        raise CheckpointError(f"{mfile}: checkpoint format {fmt!s:.20}, but autorad {__version__} reads format "
                              f"{FORMAT_VERSION}; retrain with this version or use the autorad that wrote it")
    if meta.get("meta_sha256") != seal_meta(meta)["meta_sha256"]:
        raise CheckpointError(f"{mfile} was changed after it was written (its meta_sha256 does not match): "
                              f"class names, config or preprocessing may have been edited; refusing it")
    note = version_note(meta)
    if note is not None:
        log.warning("%s: %s", mfile.parent, note)


def split_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The tensors whose names start with ``prefix.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Prefix every tensor name with ``prefix.``."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}
