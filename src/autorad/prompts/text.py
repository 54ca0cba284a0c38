"""Prompt templates: ``[ctx_1 .. ctx_n] {class name}.`` tokenised once, with the context slots located."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autorad.core.errors import ConfigError
from autorad.encoders.base import TextEncoder

PLACEHOLDER = "X"  # one token in both CLIP's BPE and BERT's WordPiece vocabularies


@dataclass
class PromptTokens:
    """Tokenised prompts for C classes: ids and mask (C, L); context slots are positions 1 .. n_ctx."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    n_ctx: int


def prompt_texts(class_names: Sequence[str], n_ctx: int) -> list[str]:
    """``X X ... X benign.`` for every class (the X's are replaced by learned vectors)."""
    ctx = " ".join([PLACEHOLDER] * n_ctx)
    return [f"{ctx} {name.replace('_', ' ')}." for name in class_names]


def tokenize_prompts(text: TextEncoder, class_names: Sequence[str], n_ctx: int) -> PromptTokens:
    """Tokenise the prompts and check that positions 1 .. n_ctx hold exactly the placeholders."""
    if n_ctx < 1:
        raise ConfigError("n_ctx must be at least 1")
    ids, mask = text.tokenize(prompt_texts(class_names, n_ctx))
    ph_ids, _ = text.tokenize([PLACEHOLDER])
    ph = int(ph_ids[0, 1])  # [BOS] X [EOS]
    slots = ids[:, 1:1 + n_ctx]
    _, name_mask = text.tokenize([t.split(" ", n_ctx)[-1] for t in prompt_texts(class_names, n_ctx)])
    expected = n_ctx + name_mask.sum(1)  # [BOS] + ctx + name tokens + [EOS]
    if slots.shape[1] != n_ctx or not bool((slots == ph).all()) or not torch.equal(mask.sum(1), expected):
        raise ConfigError(f"prompts with n_ctx={n_ctx} do not fit the text encoder {text.entry.name} "
                          f"(context too long: the prompt would be truncated)")
    return PromptTokens(ids, mask, n_ctx)


def init_context(text: TextEncoder, n_ctx: int, ctx_init: str | None, std: float = 0.02) -> torch.Tensor:
    """(n_ctx, width) initial context: N(0, std) as CoOp, the first vectors from ``ctx_init``'s tokens if given."""
    ctx = torch.randn(n_ctx, text.width) * std
    if ctx_init:
        ids, mask = text.tokenize([ctx_init.strip()])
        n = int(mask[0].sum()) - 2  # without [BOS] / [EOS]
        if n < 1 or n > n_ctx:
            raise ConfigError(f"ctx_init {ctx_init!r} has {n} tokens; it must have between 1 and n_ctx={n_ctx}")
        with torch.no_grad():
            ctx[:n] = text.token_embeddings(ids)[0, 1:1 + n].float()
    return ctx
