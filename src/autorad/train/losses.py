"""The prompt learners' training objective, with the options of the quality levers (all off = the paper's CE).

For a batch with logits z, p = softmax(z), hard label y and the readers' class distribution q_r:

- target  q = (1 - a) onehot(y) + a q_r,  a = ``train.soft_targets`` (label-distribution learning; 0 = paper)
- loss    = - sum_c w_y q_c log p_c                                      (w: class weights, 1 when "none")
          + ``train.ordinal_weight`` * sum_c p_c sum_k q_k |c - k|        (expected distance between classes in
            the order benign < unsure < malignant: predicting malignant for a benign nodule costs twice as much
            as predicting unsure)
          + ``train.aux_attributes`` * mean squared error of a linear head that predicts the 8 z-scored mean
            radiologist attributes from the learner's projected image feature and MetaNet hidden layer.

The attribute head is a training-time device only: it shapes the shared projection and MetaNet, is saved in the
epoch checkpoint (so a resumed fold continues exactly) but not in the model, and inference never sees an
attribute. Attribute statistics (mean, std) come from the training rows only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autorad.config import TrainConfig


class AttributeHead(nn.Module):
    """Linear regression of the z-scored attributes from features captured by forward hooks on the learner."""

    def __init__(self, learner: nn.Module, attributes: torch.Tensor):
        super().__init__()
        self._captured: dict[str, torch.Tensor] = {}
        self._hooks = [learner.projection.register_forward_hook(self._keep("image"))]
        in_dim = learner.text_encoder.dim
        metanet = getattr(learner, "metanet", None)
        if metanet is not None:
            self._hooks.append(metanet.relu.register_forward_hook(self._keep("hidden")))
            in_dim += metanet.linear1.out_features
        self.linear = nn.Linear(in_dim, attributes.shape[1])
        finite = torch.isfinite(attributes)
        filled = torch.where(finite, attributes, torch.zeros_like(attributes))
        n = finite.sum(0).clamp(min=1)
        mean = filled.sum(0) / n
        std = (((filled - mean) ** 2) * finite).sum(0).div(n).sqrt().clamp(min=1e-6)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _keep(self, key: str):
        def hook(_module, _inputs, output):
            self._captured[key] = output
        return hook

    def loss(self, attributes: torch.Tensor) -> torch.Tensor:
        """MSE on the batch just forwarded through the learner (rows with a NaN attribute are masked)."""
        feats = [F.normalize(self._captured["image"].float(), dim=-1)]
        if "hidden" in self._captured:
            feats.append(self._captured["hidden"])
        pred = self.linear(torch.cat(feats, dim=-1))
        target = (attributes - self.mean) / self.std
        finite = torch.isfinite(target)
        err = torch.where(finite, pred - torch.nan_to_num(target), torch.zeros_like(pred))
        return (err ** 2).sum() / finite.sum().clamp(min=1)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._captured.clear()


class Objective(nn.Module):
    """The batch loss of :func:`autorad.train.loop.train_learner` (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, weights: torch.Tensor | None, n_classes: int = 3,
                 learner: nn.Module | None = None, attributes: torch.Tensor | None = None):
        super().__init__()
        self.soft, self.ordinal, self.aux_weight = cfg.soft_targets, cfg.ordinal_weight, cfg.aux_attributes
        self.register_buffer("weights", weights if weights is not None else torch.ones(n_classes), persistent=False)
        idx = torch.arange(n_classes, dtype=torch.float32)
        self.register_buffer("distance", (idx[:, None] - idx[None, :]).abs(), persistent=False)
        self.aux = AttributeHead(learner, attributes) if self.aux_weight > 0 and learner is not None \
            and attributes is not None else None

    def target(self, y: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        q = F.one_hot(y, self.distance.shape[0]).float()
        if self.soft > 0 and soft is not None:
            q = (1 - self.soft) * q + self.soft * soft.float()
        return q

    def forward(self, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None) -> torch.Tensor:
        if self.soft == 0 and self.ordinal == 0 and self.aux is None:  # the paper's loss, exactly
            return F.cross_entropy(logits, y, weight=self.weights if self.weights.ne(1).any() else None)
        q = self.target(y, soft)
        logp = F.log_softmax(logits, dim=1)
        w = self.weights[y]
        loss = (w * -(q * logp).sum(1)).sum() / w.sum()
        if self.ordinal > 0:
            expected = (logp.exp() * (q @ self.distance)).sum(1)  # sum_c p_c sum_k q_k |c - k|
            loss = loss + self.ordinal * (w * expected).sum() / w.sum()
        if self.aux is not None and attributes is not None:
            loss = loss + self.aux_weight * self.aux.loss(attributes)
        return loss
