"""AIMv2 vision encoder (the paper's): transformers' Aimv2VisionModel, patch tokens mean-pooled.

Weights come from the Hugging Face hub (``apple/aimv2-large-patch14-224``) or a local directory / file, in
either the Hugging Face layout (``encoder.layers.N.attention.q_proj``...) or Apple's original ``ml-aim`` layout
(``trunk.blocks.N.attn.qkv`` fused, ``preprocessor.patchifier``...), which is converted key by key.
Loading is strict: a missing or unexpected key is a CheckpointError naming the keys.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from autorad.encoders.base import VisionEncoder, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict, resolve

# Apple ml-aim (aim.v2) name -> transformers Aimv2VisionModel name. Apple's SwiGLU is fc2(silu(fc1 x) * fc3 x),
# transformers' is down_proj(silu(gate_proj x) * up_proj x). One table serves both directions: "{i}" is the block
# index; a name ending in "." is a prefix, any other a whole key.
_KEY_PAIRS: tuple[tuple[str, str], ...] = (
    ("preprocessor.patchifier.proj.", "embeddings.patch_embed."),
    ("preprocessor.patchifier.norm.", "embeddings.rms_norm."),
    ("preprocessor.pos_embed", "embeddings.position_embedding.weight"),
    ("trunk.blocks.{i}.attn.proj.", "encoder.layers.{i}.attention.out_proj."),
    ("trunk.blocks.{i}.mlp.fc1.", "encoder.layers.{i}.ffn.gate_proj."),
    ("trunk.blocks.{i}.mlp.fc2.", "encoder.layers.{i}.ffn.down_proj."),
    ("trunk.blocks.{i}.mlp.fc3.", "encoder.layers.{i}.ffn.up_proj."),
    ("trunk.blocks.{i}.norm_1.", "encoder.layers.{i}.rms_norm1."),
    ("trunk.blocks.{i}.norm_2.", "encoder.layers.{i}.rms_norm2."),
    ("trunk.post_trunk_norm.", "rms_norm."),
)


def _rename_rules(forward: bool) -> tuple[tuple[str, str], ...]:
    """(regex, replacement) pairs renaming Apple keys to transformers' (``forward``) or back."""
    rules = []
    for apple, hf in _KEY_PAIRS:
        src, dst = (apple, hf) if forward else (hf, apple)
        pattern = "^" + re.escape(src).replace(re.escape("{i}"), r"(\d+)") + ("" if src.endswith(".") else "$")
        rules.append((pattern, dst.replace("{i}", r"\1")))
    return tuple(rules)


_APPLE_TO_HF = _rename_rules(forward=True)
_HF_TO_APPLE = _rename_rules(forward=False)
_QKV = re.compile(r"^trunk\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_HF_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attention\.q_proj\.(weight|bias)$")


def is_apple_layout(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict uses Apple's original key names."""
    return any(k.startswith(("trunk.", "preprocessor.")) for k in sd)


def _rename(key: str, table) -> str:
    """``key`` with the first matching (pattern, replacement) of ``table`` applied; unchanged when none match."""
    for pattern, repl in table:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def apple_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert Apple's original AIMv2 vision keys to transformers' names (fused qkv split into q, k, v).

    Keys that match no rule are kept unchanged, so strict loading reports them as unexpected.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        key = key.removeprefix("image_encoder.")
        if m := _QKV.match(key):
            q, k, v = torch.chunk(value, 3, dim=0)
            base = f"encoder.layers.{m.group(1)}.attention"
            out.update({f"{base}.q_proj.{m.group(2)}": q, f"{base}.k_proj.{m.group(2)}": k,
                        f"{base}.v_proj.{m.group(2)}": v})
            continue
        new = _rename(key, _APPLE_TO_HF)
        if new == "embeddings.position_embedding.weight" and value.ndim == 3:
            value = value.squeeze(0)  # Apple stores (1, N, D)
        out[new] = value
    return out


def hf_to_apple(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`apple_to_hf` (used to test the conversion and to write Apple-layout files)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if m := _HF_QKV.match(key):
            base = f"encoder.layers.{m.group(1)}.attention"
            qkv = [sd[f"{base}.{p}_proj.{m.group(2)}"] for p in ("q", "k", "v")]
            out[f"trunk.blocks.{m.group(1)}.attn.qkv.{m.group(2)}"] = torch.cat(qkv, dim=0)
            continue
        if re.match(r"^encoder\.layers\.\d+\.attention\.[kv]_proj\.", key):
            continue
        new = _rename(key, _HF_TO_APPLE)
        if new == "preprocessor.pos_embed":
            value = value.unsqueeze(0)
        out[new] = value
    return out


def build_model(options: dict[str, Any], config: dict[str, Any] | None = None) -> torch.nn.Module:
    """An Aimv2VisionModel with the entry's architecture (or a checkpoint's config.json), random weights."""
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
            "patch_size", "use_head", "qkv_bias", "mlp_bias", "rms_norm_eps")
    kw = {k: options[k] for k in keys if k in options}
    if config:
        kw.update({k: config[k] for k in keys if k in config})
    return Aimv2VisionModel(Aimv2VisionConfig(**kw))


class Aimv2Encoder(VisionEncoder):
    """Mean of the final (RMS-normalised) patch tokens."""

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixel_values=x.to(dtype))
        return out.last_hidden_state.mean(dim=1)


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> Aimv2Encoder:
    """Load AIMv2 strictly from ``weights`` (local path or hub id; default: the entry's hub id)."""
    files = resolve(weights or entry.source, entry.install)
    sd = load_state_dict(files.weights)
    if is_apple_layout(sd):
        sd = apple_to_hf(sd)
    model = build_model(entry.options, files.config())
    strict_load(model, sd, f"{entry.name} ({files.weights})")
    return Aimv2Encoder(entry, model, files.identity, device)
