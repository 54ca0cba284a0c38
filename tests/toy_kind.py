"""A toy model kind defined outside autorad: nearest class centroid on preprocessed radiomics.

It exists to prove that a new kind is one module plus one config (tests/kinds/toy_centroid.yaml).
"""

from __future__ import annotations

import numpy as np

from autorad import CLASS_NAMES
from autorad.core.errors import CheckpointError
from autorad.train.kinds import register_kind
from autorad.train.kinds.base import Model, fit_radiomics_pre, load_radiomics_pre, save_radiomics_pre


@register_kind("toy_centroid")
class ToyCentroid(Model):
    """Softmax over minus the squared distance to each class's mean (absent classes get probability 0)."""

    needs_radiomics = True

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        self.pre = fit_radiomics_pre(train)
        x = self.pre.transform(train.radiomics)
        self.centroids = np.stack([x[train.y == c].mean(axis=0) if np.any(train.y == c) else np.full(x.shape[1], np.nan)
                                   for c in range(len(CLASS_NAMES))])

    def predict_proba(self, data):
        x = self.pre.transform(data.radiomics)
        d = ((x[:, None, :] - self.centroids[None]) ** 2).mean(axis=2)
        logits = np.where(np.isnan(d), -np.inf, -d)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def to_tensors(self):
        tensors, meta = {"centroids": self.centroids}, {}
        save_radiomics_pre(self.pre, tensors, meta)
        return tensors, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        m = cls(cfg)
        if "centroids" not in tensors:
            raise CheckpointError("checkpoint lacks tensor 'centroids'")
        m.centroids = tensors["centroids"]
        m.pre = load_radiomics_pre(tensors, meta)
        return m
