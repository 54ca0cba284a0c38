"""What the prompt-learner kinds (coop, cocoop, autorad, autorad_image) share: they differ only in what the
MetaNet is conditioned on (:attr:`PromptModel.conditioning`, see :mod:`autorad.prompts.learners`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np

from autorad.config import learning_keys
from autorad.core.devices import resolve_device
from autorad.core.errors import CheckpointError, ConfigError
from autorad.core.io import hash_json
from autorad.train.checkpoint import split_prefix, with_prefix
from autorad.train.kinds.base import Model, fit_radiomics_pre, load_radiomics_pre, save_radiomics_pre


@cache
def load_text_encoder(name: str, weights: str | None, device: str = "cpu"):
    """The frozen text encoder on ``device``, loaded once per process."""
    from autorad.encoders import load_encoder

    enc = load_encoder(name, weights=weights, device=device)
    for p in getattr(enc, "parameters", lambda: [])():
        p.requires_grad_(False)
    return enc


def build_learner(kind: str, text_encoder, class_names: Sequence[str], image_dim: int, radiomics_dim: int = 0,
                  n_ctx: int = 50, ctx_init: str | None = None, metanet_hidden: int | None = None,
                  logit_scale_init: float = math.log(100.0), learn_logit_scale: bool = True, image_tail=None,
                  image_tail_lr: float = 1.0):
    """The prompt learner of model kind ``kind`` (one of the registered prompt-learner kinds)."""
    from autorad.prompts import PromptLearner
    from autorad.train.kinds import get_kind, kind_names

    spec = get_kind(kind) if kind in kind_names() else None
    if spec is None or not issubclass(spec, PromptModel):
        choices = [k for k in kind_names() if issubclass(get_kind(k), PromptModel)]
        raise ConfigError(f"unknown prompt learner {kind!r}; choose one of {', '.join(choices)}")
    return PromptLearner(spec.conditioning, text_encoder, class_names, image_dim, radiomics_dim, n_ctx, ctx_init,
                         metanet_hidden, logit_scale_init, learn_logit_scale, image_tail, image_tail_lr)


class PromptModel(Model):
    """A prompt learner over the frozen ``model.text_encoder``, trained by :func:`autorad.train.loop.train_learner`."""

    needs_image = True
    needs_text = True
    # the prompt and the learner's shape, and every train.* key of the optimisation loop and objective
    hyperparameters = frozenset({"model.n_ctx", "model.ctx_init", "model.class_names", "model.metanet_hidden",
                                 "model.logit_scale_init", "model.learn_logit_scale", "model.text_encoder",
                                 "model.text_weights", "model.image_tuning", "model.image_tuning_lr"}
                                ) | learning_keys()
    conditioning: ClassVar[tuple[str, ...]] = ()  # what the MetaNet sees: "image" and/or "radiomics"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.needs_radiomics = "radiomics" in cls.conditioning

    def _build(self, image_dim: int, radiomics_dim: int, device: str = "cpu", pretrained_tail: bool = True) -> None:
        """The learner; with ``model.image_tuning`` its image tail starts from the vision encoder's weights
        (``pretrained_tail``), or is only shaped for a checkpoint's state to fill."""
        from autorad.encoders import load_image_tail

        self.image_dim, self.radiomics_dim = image_dim, radiomics_dim
        text = load_text_encoder(self.cfg.text_encoder, self.cfg.text_weights, device)
        tail = (load_image_tail(self.cfg.vision_encoder, self.cfg.vision_weights, pretrained=pretrained_tail)
                if self.cfg.image_tuning == "tail" else None)
        self.learner = build_learner(
            self.kind, text, list(self.cfg.class_names), image_dim=image_dim, radiomics_dim=radiomics_dim,
            n_ctx=self.cfg.n_ctx, ctx_init=self.cfg.ctx_init, metanet_hidden=self.cfg.metanet_hidden,
            logit_scale_init=self.cfg.logit_scale_init, learn_logit_scale=self.cfg.learn_logit_scale,
            image_tail=tail, image_tail_lr=self.cfg.image_tuning_lr).to(device)

    def _inputs(self, data, augment: bool = False):
        """The learner's tensors of ``data``. ``augment`` (training rows with ``radiomics.mask_augment``): the
        radiomics become (N, M, R), the dataset mask's first and then each perturbed mask's, preprocessed alike;
        the loop draws one of them per nodule and epoch."""
        import torch

        from autorad.train.loop import TrainInputs

        if data.image is None:
            raise ConfigError(f"{self.kind} needs image embeddings")
        rad = None
        if self.needs_radiomics:
            rad = self.pre.transform(data.radiomics).astype(np.float32)
            p = data.radiomics_perturbed
            if augment and p is not None and p.augment:
                rad = np.stack([rad, *(self.pre.transform(m).astype(np.float32) for m in p.matrices.values())],
                               axis=1)
            rad = torch.from_numpy(np.ascontiguousarray(rad))
        def optional(a: np.ndarray | None):  # training-only targets (soft reader labels, attributes)
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return TrainInputs(torch.from_numpy(np.ascontiguousarray(data.image, dtype=np.float32)), rad,
                           torch.from_numpy(data.y.astype(np.int64)), optional(data.soft), optional(data.attributes))

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        import torch

        from autorad.train.loop import train_learner

        if self.needs_radiomics:
            self.pre = fit_radiomics_pre(train)
        device = resolve_device(tcfg.device)
        # load the frozen encoder before seeding: its first load draws random numbers (weight init before the
        # checkpoint is copied in), which would otherwise make the learner's init depend on what ran before
        load_text_encoder(self.cfg.text_encoder, self.cfg.text_weights, device)
        torch.manual_seed(tcfg.seed * 1000 + fold + 1)
        self._build(train.image.shape[-1], self.pre.n_features_out if self.needs_radiomics else 0, device)
        key = hash_json([self.cfg.model_dump(mode="json"), tcfg.model_dump(mode="json"),
                           sorted(train.nodule_ids.tolist()), fold])
        self.history = train_learner(self.learner, self._inputs(train, augment=True), tcfg, state_dir, key, fold,
                                     val=self._inputs(val) if val is not None else None)

    def predict_proba(self, data):
        import torch

        from autorad.train.loop import predict_logits

        return torch.softmax(predict_logits(self.learner, self._inputs(data)), dim=1).numpy().astype(np.float64)

    def to(self, device):
        """Move the learner, and the frozen text encoder it uses, to ``device``."""
        text = load_text_encoder(self.cfg.text_encoder, self.cfg.text_weights, device)
        self.learner.text_encoder = text
        self.learner.to(device)
        return self

    def to_tensors(self):
        t = with_prefix({k: v.detach().cpu().numpy() for k, v in self.learner.learnable_state_dict().items()},
                        "learner")
        meta: dict[str, Any] = {"image_dim": self.image_dim, "radiomics_dim": self.radiomics_dim}
        if self.needs_radiomics:
            save_radiomics_pre(self.pre, t, meta)
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        import torch

        m = cls(cfg)
        if m.needs_radiomics:
            m.pre = load_radiomics_pre(tensors, meta)
        m._build(int(meta["image_dim"]), int(meta["radiomics_dim"]), pretrained_tail=False)
        state = {k: torch.from_numpy(v.copy()) for k, v in split_prefix(tensors, "learner").items()}
        try:
            m.learner.load_learnable_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"prompt learner state does not fit the model: {str(err).splitlines()[0]}") from None
        return m
