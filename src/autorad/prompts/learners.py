"""Prompt learners over frozen encoders: the prompt maths shared by CoOp, CoCoOp, AutoRad and AutoRad+image.

For class c and nodule b the prompt is ``[BOS] (ctx_1 + d_b) .. (ctx_n + d_b) {class c}. [EOS]``, where the
ctx_i are learned vectors in the text encoder's token-embedding space and d_b depends on ``conditioning``, the
inputs the MetaNet sees (each model kind in :mod:`autorad.train.kinds` names its own):

- ``()``: d_b = 0 (CoOp; the C text features are computed once per step, not B times),
- ``("image",)``: MetaNet(image embedding) (CoCoOp),
- ``("radiomics",)``: MetaNet(preprocessed radiomics vector) (AutoRad, the paper),
- ``("image", "radiomics")``: MetaNet(concat(image embedding, radiomics)) (AutoRad+image).

logits[b, c] = exp(s) * cos(P v_b, t_{b,c}), with v_b the frozen image embedding, P a learned linear projection
into the text space when the dimensions differ (identity otherwise), t_{b,c} the frozen text encoder's output for
the prompt, and s a learned log-scale initialised at log(100) as in CLIP. Only ctx, the MetaNet, P and s train.
With an ``image_tail`` (``model.image_tuning``, beyond the paper), v_b = tail(cached feature map): the encoder's
last layers train too, at ``image_tail_lr`` times the learning rate (:meth:`PromptLearner.lr_factor`).

All B x C prompts of a batch go through the text encoder in one call (CoCoOp's reference trainer loops over the
batch in Python); :meth:`PromptLearner.forward_loop` is that loop, kept as a reference for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autorad.core.errors import ConfigError, InputError
from autorad.core.strict import check_state, shapes_of
from autorad.encoders.base import TextEncoder
from autorad.prompts.metanet import MetaNet
from autorad.prompts.text import init_context, tokenize_prompts

CONDITIONING_INPUTS = ("image", "radiomics")  # what a MetaNet may see, in concatenation order
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(s) at 100


class PromptLearner(nn.Module):
    """A prompt learner over a frozen text encoder, conditioned on ``conditioning`` (see the module docstring)."""

    def __init__(self, conditioning: Sequence[str], text_encoder: TextEncoder, class_names: Sequence[str],
                 image_dim: int, radiomics_dim: int = 0, n_ctx: int = 50, ctx_init: str | None = None,
                 metanet_hidden: int | None = None, logit_scale_init: float = math.log(100.0),
                 learn_logit_scale: bool = True, image_tail: nn.Module | None = None, image_tail_lr: float = 1.0):
        super().__init__()
        unknown = [c for c in conditioning if c not in CONDITIONING_INPUTS]
        if unknown:
            raise ConfigError(f"unknown conditioning input(s) {unknown}; choose from {', '.join(CONDITIONING_INPUTS)}")
        if "radiomics" in conditioning and radiomics_dim < 1:
            raise ConfigError(f"a prompt learner conditioned on radiomics needs radiomics features "
                              f"(radiomics_dim={radiomics_dim})")
        if not class_names:
            raise ConfigError("class_names is empty")
        self.conditioning = tuple(c for c in CONDITIONING_INPUTS if c in conditioning)
        self.class_names = list(class_names)
        self.n_ctx = n_ctx
        self.image_dim, self.radiomics_dim = int(image_dim), int(radiomics_dim)  # image_dim: the cached embedding's
        if image_tail is not None and image_tail.in_dim != self.image_dim:
            raise ConfigError(f"the image tail takes {image_tail.in_dim}-d feature maps, the embeddings have "
                              f"{self.image_dim} dims")
        self.image_tail = image_tail
        self.image_tail_lr = float(image_tail_lr)
        feature_dim = image_tail.out_dim if image_tail is not None else self.image_dim
        for p in text_encoder.parameters():
            p.requires_grad_(False)
        self.text_encoder = text_encoder

        tokens = tokenize_prompts(text_encoder, self.class_names, n_ctx)
        with torch.no_grad():
            emb = text_encoder.token_embeddings(tokens.input_ids).float()
        self.register_buffer("input_ids", tokens.input_ids, persistent=False)
        self.register_buffer("attention_mask", tokens.attention_mask, persistent=False)
        self.register_buffer("token_prefix", emb[:, :1].clone(), persistent=False)  # [BOS]
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)  # class, ".", [EOS]

        self.ctx = nn.Parameter(init_context(text_encoder, n_ctx, ctx_init))
        meta_in = {"image": feature_dim, "radiomics": self.radiomics_dim}
        meta_in = sum(meta_in[c] for c in self.conditioning)
        self.metanet = MetaNet(meta_in, text_encoder.width, metanet_hidden) if meta_in else None
        self.projection: nn.Module = (nn.Linear(feature_dim, text_encoder.dim, bias=False)
                                      if feature_dim != text_encoder.dim else nn.Identity())
        scale = torch.tensor(float(logit_scale_init))
        if learn_logit_scale:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale, persistent=False)
        self.learn_logit_scale = learn_logit_scale

    # ------------------------------------------------------------------------------------------ text side
    def _prompts(self, ctx: torch.Tensor) -> torch.Tensor:
        """(B, n_ctx, W) context -> (B, C, L, W) prompt token embeddings."""
        b, c = ctx.shape[0], len(self.class_names)
        return torch.cat([self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1),
                          ctx.unsqueeze(1).expand(-1, c, -1, -1),
                          self.token_suffix.unsqueeze(0).expand(b, -1, -1, -1)], dim=2)

    def text_features(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text features: (C, D) for the shared context, (B, C, D) for a (B, n_ctx, W) context.

        All B x C prompts are encoded in one text-encoder call.
        """
        shared = ctx is None
        if ctx is None:
            ctx = self.ctx.unsqueeze(0)
        b, c = ctx.shape[0], len(self.class_names)
        prompts = self._prompts(ctx)
        feats = self.text_encoder.encode_embeddings(prompts.reshape(b * c, *prompts.shape[2:]),
                                                    self.input_ids.repeat(b, 1), self.attention_mask.repeat(b, 1))
        feats = F.normalize(feats.float().reshape(b, c, -1), dim=-1)
        return feats[0] if shared else feats

    # ------------------------------------------------------------------------------------------ conditioning
    def encode_image(self, image_emb: torch.Tensor) -> torch.Tensor:
        """(B, image_dim) cached embeddings -> the image features v: the embeddings, or the image tail's output."""
        if image_emb.shape[-1] != self.image_dim:
            raise InputError(f"image embeddings have {image_emb.shape[-1]} dims, the model expects {self.image_dim}")
        return image_emb.float() if self.image_tail is None else self.image_tail(image_emb.float())

    def lr_factor(self, name: str) -> float:
        """The learning-rate factor of parameter ``name``: ``image_tail_lr`` for the image tail's, else 1."""
        return self.image_tail_lr if name.startswith("image_tail.") else 1.0

    def context(self, image_emb: torch.Tensor, radiomics: torch.Tensor | None) -> torch.Tensor | None:
        """(B, n_ctx, W) per-nodule context, or None for coop (shared context); ``image_emb``: the image features
        (:meth:`encode_image`)."""
        if self.metanet is None:
            return None
        if "radiomics" in self.conditioning:
            if radiomics is None:
                raise InputError("this prompt learner needs the radiomics vector of every nodule")
            if radiomics.shape[-1] != self.radiomics_dim:
                raise InputError(f"radiomics vector has {radiomics.shape[-1]} features, the model expects "
                                 f"{self.radiomics_dim}")
        inputs = {"image": image_emb, "radiomics": radiomics}
        cond = torch.cat([inputs[c].float() for c in self.conditioning], dim=-1)
        delta = self.metanet(cond)
        return self.ctx.unsqueeze(0) + delta.unsqueeze(1)

    def image_features(self, image_emb: torch.Tensor) -> torch.Tensor:
        """(B, image_dim) cached embeddings -> (B, D) L2-normalised projected image features."""
        return self._projected(self.encode_image(image_emb))

    def _projected(self, v: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(v), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    # ------------------------------------------------------------------------------------------ logits
    def forward(self, image_emb: torch.Tensor, radiomics: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Dv) image embeddings [+ (B, R) radiomics] -> (B, C) logits (batched text encoding)."""
        v = self.encode_image(image_emb)
        img, ctx = self._projected(v), self.context(v, radiomics)
        if ctx is None:
            return self.scale() * img @ self.text_features().t()
        return self.scale() * torch.einsum("bd,bcd->bc", img, self.text_features(ctx))

    def forward_loop(self, image_emb: torch.Tensor, radiomics: torch.Tensor | None = None) -> torch.Tensor:
        """The same logits computed one nodule at a time, as CoCoOp's reference trainer does (reference only)."""
        v = self.encode_image(image_emb)
        img, ctx = self._projected(v), self.context(v, radiomics)
        rows = []
        for b in range(img.shape[0]):
            t = self.text_features(None if ctx is None else ctx[b:b + 1])
            t = t if ctx is None else t[0]
            rows.append(self.scale() * img[b] @ t.t())
        return torch.stack(rows)

    # ------------------------------------------------------------------------------------------ state
    def learnable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors (context, MetaNet, projection, logit scale, image tail), never the text encoder's
        weights."""
        return {n: p.detach() for n, p in self.named_parameters() if not n.startswith("text_encoder.")}

    def load_learnable_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`learnable_state_dict`; missing, extra or mis-shaped keys are errors."""
        own = {n: p for n, p in self.named_parameters() if not n.startswith("text_encoder.")}
        check_state(shapes_of(state), shapes_of(own), "prompt learner state")
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(torch.as_tensor(state[k], dtype=p.dtype))

