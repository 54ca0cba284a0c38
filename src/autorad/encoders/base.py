"""Common encoder interfaces, HU preprocessing and strict checkpoint loading."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autorad.core.errors import InputError
from autorad.core.strict import check_state, shapes_of
from autorad.encoders.registry import EncoderEntry, Preprocess


def strict_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str,
                ignore_unexpected: Iterable[str] = ()) -> None:
    """Load ``state_dict`` into ``module``; any missing or unexpected key or shape mismatch is a CheckpointError.

    ``ignore_unexpected`` lists key prefixes/suffixes that a checkpoint may carry without them being errors
    (e.g. the vision tower of a full CLIP checkpoint when only its text side is loaded).
    """
    ignore = tuple(ignore_unexpected)
    sd = {k: v for k, v in state_dict.items() if not (ignore and (k.startswith(ignore) or k.endswith(ignore)))}
    check_state(shapes_of(sd), shapes_of(module.state_dict()), f"{what}: checkpoint")
    module.load_state_dict(sd, strict=True)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients for any parameter."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def window(hu: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """Clip HU to ``pre.window`` and map it to [0, 1] (float32 tensor)."""
    lo, hi = pre.window
    t = torch.as_tensor(np.asarray(hu, dtype=np.float32))
    return ((t - lo) / (hi - lo)).clamp_(0.0, 1.0)


def preprocess_2d(crop_hu: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """(H, W) HU crop -> (C, H', W') normalised tensor: window, bilinear resize (antialiased), replicate, normalise."""
    if crop_hu.ndim != 2:
        raise InputError(f"a 2D encoder needs (H, W) crops, got shape {crop_hu.shape}")
    t = window(crop_hu, pre)[None, None]
    t = F.interpolate(t, size=tuple(pre.size), mode="bilinear", align_corners=False, antialias=True)[0]
    t = t.expand(pre.channels, -1, -1)
    mean = torch.tensor(pre.mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).reshape(-1, 1, 1)
    return ((t - mean) / std).contiguous()


def preprocess_3d(volume_hu: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """(D, H, W) HU volume -> (1, D', H', W') tensor: window, trilinear resize to ``pre.size``, normalise.

    A 2D crop (H, W) is replicated along depth to ``pre.size[0]`` slices (a single slice carries no 3D context).
    """
    if volume_hu.ndim == 2:
        volume_hu = np.repeat(volume_hu[None], pre.size[0], axis=0)
    if volume_hu.ndim != 3:
        raise InputError(f"a 3D encoder needs (D, H, W) volumes or (H, W) crops, got shape {volume_hu.shape}")
    t = window(volume_hu, pre)[None, None]
    t = F.interpolate(t, size=tuple(pre.size), mode="trilinear", align_corners=False)[0]
    return ((t - pre.mean[0]) / pre.std[0]).contiguous()


class VisionEncoder:
    """A frozen image encoder: HU crops in, float32 embeddings out.

    Subclasses implement :meth:`forward_batch` on preprocessed tensors.
    """

    def __init__(self, entry: EncoderEntry, model: nn.Module, weights_id: str, device: str = "cpu"):
        self.entry = entry
        self.dim = entry.dim
        self.model = freeze(model).to(device)
        self.weights_id = weights_id  # identifies the weights (path + hash or hub id) for caches
        self.device = device

    @property
    def preprocess_cfg(self) -> Preprocess:
        assert self.entry.preprocess is not None
        return self.entry.preprocess

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        if self.entry.kind == "vision3d":
            return preprocess_3d(image, self.preprocess_cfg)
        return preprocess_2d(image, self.preprocess_cfg)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Embed a list of HU images -> (N, dim) float32.

        2D encoders take (H, W) crops; an (S, H, W) stack is taken as S slices of one nodule and their embeddings
        are averaged. 3D encoders take (D, H, W) volumes; an (H, W) crop is replicated along depth.
        """
        groups: list[list[torch.Tensor]] = []
        for img in images:
            img = np.asarray(img)
            if self.entry.kind == "vision2d" and img.ndim == 3:
                groups.append([self.preprocess(s) for s in img])
            else:
                groups.append([self.preprocess(img)])
        flat = [t for g in groups for t in g]
        outs = []
        for i in range(0, len(flat), batch_size):
            x = torch.stack(flat[i:i + batch_size]).to(self.device)
            outs.append(self.forward_batch(x).float().cpu())
        if not outs:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = torch.cat(outs)
        res, k = [], 0
        for g in groups:
            res.append(emb[k:k + len(g)].mean(0))
            k += len(g)
        return torch.stack(res).numpy().astype(np.float32)


class TextEncoder(nn.Module):
    """A frozen text encoder whose input token embeddings can be replaced (for learned prompt context).

    ``width`` is the token-embedding dimension, ``dim`` the output dimension. Subclasses implement
    :meth:`tokenize`, :meth:`token_embeddings` and :meth:`encode_embeddings`.
    """

    def __init__(self, entry: EncoderEntry, weights_id: str):
        super().__init__()
        self.entry = entry
        self.dim = entry.dim
        self.weights_id = weights_id
        self.width: int = 0

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def encode_embeddings(self, embeds: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Plain text -> (N, dim) features (not normalised)."""
        ids, mask = self.tokenize(texts)
        return self.encode_embeddings(self.token_embeddings(ids), ids, mask)

    def train(self, mode: bool = True) -> TextEncoder:
        # Frozen: stay in eval mode (no dropout) whatever the enclosing module does.
        return super().train(False)
