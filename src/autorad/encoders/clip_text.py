"""CLIP text encoder (the paper's): transformers' CLIPTextModelWithProjection + the CLIP tokenizer.

The features are the final-layer-norm state at the end-of-text token, through ``text_projection`` (as CLIP).
A full CLIP checkpoint (vision tower included) is accepted: its vision keys are ignored, everything else must
match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from autorad.core.errors import CheckpointError
from autorad.encoders.base import TextEncoder, freeze, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict, resolve

_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json")
# Parts of a full CLIPModel checkpoint that are not the text side.
_VISION_KEYS = ("vision_model.", "visual_projection.", "logit_scale", "text_model.embeddings.position_ids")


def text_config_from(config: dict[str, Any] | None) -> dict[str, Any]:
    """The text config from a CLIPModel or CLIPTextModel config.json."""
    if not config:
        return {}
    if "text_config" in config:
        tc = dict(config["text_config"] or {})
        if "projection_dim" in config:  # a full CLIP config: the top-level value is the one the weights have
            tc["projection_dim"] = config["projection_dim"]
        return tc
    return dict(config)


class ClipTextEncoder(TextEncoder):
    def __init__(self, entry: EncoderEntry, model: torch.nn.Module, tokenizer: Any, weights_id: str):
        super().__init__(entry, weights_id)
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.width = model.config.hidden_size
        self.dim = model.config.projection_dim
        self.eos_token_id = model.config.eos_token_id

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        return t["input_ids"], t["attention_mask"]

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.text_model.embeddings.token_embedding(input_ids)

    def eot_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Index of the end-of-text token in each row (CLIPTextModel's rule, legacy configs included)."""
        if self.eos_token_id == 2:
            return input_ids.to(torch.int).argmax(dim=-1)
        return (input_ids == self.eos_token_id).int().argmax(dim=-1)

    def encode_embeddings(self, embeds: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        """Same computation as CLIPTextModelWithProjection.forward, from token embeddings instead of ids."""
        from transformers.masking_utils import create_causal_mask

        tm = self.model.text_model
        h = tm.embeddings(inputs_embeds=embeds)
        mask = create_causal_mask(config=tm.config, inputs_embeds=h, attention_mask=attention_mask, cache=None)
        h = tm.encoder(inputs_embeds=h, attention_mask=mask, is_causal=True).last_hidden_state
        h = tm.final_layer_norm(h)
        pooled = h[torch.arange(h.shape[0], device=h.device), self.eot_positions(input_ids).to(h.device)]
        return self.model.text_projection(pooled)


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> ClipTextEncoder:
    """Load the CLIP text side strictly from ``weights`` (local dir or hub id; default: the entry's)."""
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    files = resolve(weights or entry.source, entry.install, extra_patterns=_TOKENIZER_FILES)
    if files.directory is None or not any((files.directory / f).is_file() for f in ("vocab.json",
                                                                                    "tokenizer.json")):
        raise CheckpointError(f"{entry.name}: no CLIP tokenizer files (vocab.json + merges.txt or tokenizer.json) "
                              f"next to {files.weights}")
    cfg = text_config_from(files.config())
    known = set(CLIPTextConfig().to_dict())
    model = CLIPTextModelWithProjection(CLIPTextConfig(**{k: v for k, v in cfg.items() if k in known}))
    sd = load_state_dict(files.weights)
    strict_load(model, sd, f"{entry.name} ({files.weights})", ignore_unexpected=_VISION_KEYS)
    tokenizer = AutoTokenizer.from_pretrained(str(files.directory))
    return ClipTextEncoder(entry, model.to(device), tokenizer, files.identity)
