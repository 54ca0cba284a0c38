"""The meta-kind ``fusion``: late fusion of a prompt learner with the radiomics gradient-boosting baseline
(``model.fusion: gbm``).

p = (1 - w) p_prompt + w p_gbm, both models fitted on the same training rows. ``model.fusion_weight`` is either a
number (fixed before seeing any data; 0.5 = plain average) or ``auto``: w is chosen from
:data:`WEIGHT_GRID` by the log-loss on the patient-level validation split of the training fold
(``train.val_fraction`` > 0; never on the test fold), after which the GBM is refitted on every training row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from autorad.core.errors import CheckpointError, ConfigError
from autorad.evaluate.metrics import log_loss
from autorad.train.checkpoint import split_prefix, with_prefix
from autorad.train.kinds import MEMBER_CONFIG, get_kind, model_from_tensors, register_meta_kind
from autorad.train.kinds.base import Model

if TYPE_CHECKING:
    from autorad.config import ModelConfig
    from autorad.train.table import FeatureTable

WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@register_meta_kind("fusion")
class FusedModel(Model):
    """A prompt learner and a radiomics GBM whose probabilities are averaged with weight ``w`` on the GBM."""

    partner_kind = "radiomics_gbm"  # the model fused with the configured kind
    # what the fusion itself reads, beyond its members' hyperparameters (what train.select may choose among)
    own_hyperparameters = frozenset({"model.fusion_weight"})

    @classmethod
    def for_config(cls, cfg: ModelConfig) -> FusedModel:
        """A fresh, unfitted fusion of ``cfg.kind`` with the partner kind."""
        return cls(cfg, get_kind(cfg.kind)(cfg), get_kind(cls.partner_kind)(cfg))

    @classmethod
    def tunable_keys(cls, cfg: ModelConfig) -> frozenset[str]:
        """The keys whose value changes what the fused model learns."""
        return get_kind(cfg.kind).hyperparameters | get_kind(cls.partner_kind).hyperparameters \
            | cls.own_hyperparameters

    def __init__(self, cfg: ModelConfig, base: Model, gbm: Model, weight: float | None = None):
        super().__init__(cfg)
        self.base, self.gbm = base, gbm
        self.weight = weight

    def fit(self, train: FeatureTable, tcfg, val: FeatureTable | None = None, state_dir=None, fold=-1) -> None:
        self.base.fit(train, tcfg, val=val, state_dir=state_dir, fold=fold)
        self.history = self.base.history
        if self.cfg.fusion_weight == "auto":
            if val is None or not len(val):
                raise ConfigError("model.fusion_weight: auto needs train.val_fraction > 0 (it is chosen on the "
                                  "training fold's validation split)")
            self.gbm.fit(train, tcfg)
            pb, pg = self.base.predict_proba(val), self.gbm.predict_proba(val)
            losses = [log_loss((1 - w) * pb + w * pg, val.y) for w in WEIGHT_GRID]
            self.weight = WEIGHT_GRID[int(np.argmin(losses))]
            self.gbm.fit(train.concat(val), tcfg)
        else:
            self.weight = float(self.cfg.fusion_weight)
            self.gbm.fit(train if val is None else train.concat(val), tcfg)

    def predict_proba(self, data: FeatureTable) -> np.ndarray:
        w = float(self.weight)
        return (1 - w) * self.base.predict_proba(data) + w * self.gbm.predict_proba(data)

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tb, mb = self.base.to_tensors()
        tg, mg = self.gbm.to_tensors()
        mb = {**mb, MEMBER_CONFIG: self.base.cfg.model_dump(mode="json")}  # its own (a seed may select apart)
        return {**with_prefix(tb, "base"), **with_prefix(tg, "gbm")}, \
            {self.kind: {"weight": self.weight, "base": mb, "gbm": mg}}

    @classmethod
    def from_tensors(cls, cfg: ModelConfig, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> FusedModel:
        try:
            f = meta[cls.kind]
            base = model_from_tensors(cfg, split_prefix(tensors, "base"), f["base"])
            gbm = get_kind(cls.partner_kind).from_tensors(cfg, split_prefix(tensors, "gbm"), f["gbm"])
            weight = float(f["weight"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"fusion checkpoint is incomplete ({err})") from None
        return cls(cfg, base, gbm, weight)

