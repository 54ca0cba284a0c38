"""``radiomics_logreg``: logistic regression on preprocessed radiomics (a bar for AutoRad to clear)."""

from __future__ import annotations

from autorad.train.kinds import register_kind
from autorad.train.kinds._logistic import LogisticModel
from autorad.train.kinds.base import fit_radiomics_pre, load_radiomics_pre, save_radiomics_pre


@register_kind("radiomics_logreg")
class RadiomicsLogReg(LogisticModel):
    """Multinomial logistic regression on the radiomics preprocessed as AutoRad preprocesses them."""

    needs_radiomics = True

    def _fit_inputs(self, train):
        self.pre = fit_radiomics_pre(train)

    def _inputs(self, data):
        return self.pre.transform(data.radiomics)

    def _input_state(self):
        tensors, meta = {}, {}
        save_radiomics_pre(self.pre, tensors, meta)
        return tensors, meta

    def _load_input_state(self, tensors, meta):
        self.pre = load_radiomics_pre(tensors, meta)
        return self.pre.n_features_out
