"""The meta-kind ``seed_ensemble``: the mean of the probabilities of several fitted models of one config, trained
with different seeds under the same folds (``train.n_seeds``, :mod:`autorad.train.seeds`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from autorad.core.errors import CheckpointError
from autorad.train.checkpoint import split_prefix, with_prefix
from autorad.train.kinds import MEMBER_CONFIG, model_from_tensors, register_meta_kind
from autorad.train.kinds.base import Model

if TYPE_CHECKING:
    from autorad.config import ModelConfig
    from autorad.train.table import FeatureTable


@register_meta_kind("seed_ensemble")
class SeedEnsemble(Model):
    """The mean of several fitted models' probabilities (the same kind trained with different seeds)."""

    def __init__(self, cfg: ModelConfig, members: list[Model] | None = None):
        super().__init__(cfg)
        self.members = members or []

    def fit(self, train: FeatureTable, tcfg, val=None, state_dir=None, fold=-1) -> None:
        raise NotImplementedError("a seed ensemble is assembled from trained runs, not fitted")

    def predict_proba(self, data: FeatureTable) -> np.ndarray:
        return np.mean([m.predict_proba(data) for m in self.members], axis=0)

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {}
        metas = []
        for i, m in enumerate(self.members):
            t, meta = m.to_tensors()
            tensors.update(with_prefix(t, f"member{i}"))
            metas.append({**meta, MEMBER_CONFIG: m.cfg.model_dump(mode="json")})
        return tensors, {self.kind: metas}

    @classmethod
    def from_tensors(cls, cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> SeedEnsemble:
        metas = meta.get(cls.kind)
        if not isinstance(metas, list) or not metas:
            raise CheckpointError("seed ensemble checkpoint lists no members")
        members = [model_from_tensors(cfg, split_prefix(tensors, f"member{i}"), m) for i, m in enumerate(metas)]
        extra = sorted(k for k in tensors if not k.startswith(tuple(f"member{i}." for i in range(len(metas)))))
        if extra:
            raise CheckpointError(f"seed ensemble checkpoint has unexpected key(s) {', '.join(extra[:5])}")
        return cls(cfg, members)
