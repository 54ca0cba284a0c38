"""Finding weight files: a local file or directory, or a Hugging Face hub id (downloaded once, then cached)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autorad.core.errors import CheckpointError, MissingDependencyError
from autorad.core.io import hash_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class WeightFiles:
    """Where one model's files are, and a string identifying the weights (for embedding caches)."""

    directory: Path | None  # holds config.json / tokenizer files when the source was a directory or hub id
    weights: Path
    identity: str

    def config(self) -> dict[str, Any] | None:
        if self.directory is None or not (self.directory / "config.json").is_file():
            return None
        return json.loads((self.directory / "config.json").read_text())


def _weights_in_dir(d: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (d / name).is_file():
            return d / name
    return None


def resolve(weights: str | Path, install_hint: str, extra_patterns: tuple[str, ...] = ()) -> WeightFiles:
    """Resolve ``weights`` (a local file, a local directory or a hub id) to files on disk.

    A hub id is fetched with ``huggingface_hub.snapshot_download`` (config, safetensors and ``extra_patterns``);
    without network access that fails with a :class:`CheckpointError` that says how to provide the files locally.
    """
    p = Path(weights).expanduser()
    if p.is_file():
        return WeightFiles(p.parent, p, f"{p.name}:{hash_file(p)[:16]}")
    if p.is_dir():
        w = _weights_in_dir(p)
        if w is None:
            raise CheckpointError(f"no {' or '.join(WEIGHT_FILES)} in {p}")
        return WeightFiles(p, w, f"{p.name}/{w.name}:{hash_file(w)[:16]}")
    if str(weights).startswith((".", "/", "~")) or str(weights).count("/") != 1:
        raise CheckpointError(f"weights {str(weights)!r} not found (neither a local path nor a hub id 'org/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependencyError("huggingface_hub is needed to download weights: pip install huggingface_hub"
                                     ) from None
    try:
        d = Path(snapshot_download(str(weights), allow_patterns=["config.json", "*.safetensors",
                                                                 *extra_patterns]))
    except Exception as err:  # offline, unknown repo, gated...: all mean "no files here"
        raise CheckpointError(f"could not get {weights} from the Hugging Face hub ({type(err).__name__}); "
                              f"{install_hint}") from None
    w = _weights_in_dir(d)
    if w is None:
        raise CheckpointError(f"hub repo {weights} has no model.safetensors")
    return WeightFiles(d, w, f"{weights}@{d.name}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, or a torch file with ``weights_only=True`` (never unpickle arbitrary objects)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read weights {path}: {type(err).__name__}: {err}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a plain state dict of tensors")
    return dict(sd)
