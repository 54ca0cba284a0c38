"""``radiomics_gbm``: histogram gradient boosting on preprocessed radiomics (a bar for AutoRad to clear)."""

from __future__ import annotations

import numpy as np

from autorad.core.errors import CheckpointError
from autorad.train.kinds import register_kind
from autorad.train.kinds.base import (
    Model,
    fit_radiomics_pre,
    full_proba,
    load_radiomics_pre,
    save_radiomics_pre,
    sklearn_class_weight,
)

# The estimator is stored with skops (a pickle-free format that loads only the types listed here).
_SKOPS_TRUSTED = [
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "builtins.float", "builtins.int", "numpy.float64", "numpy.int64",
]


@register_kind("radiomics_gbm")
class RadiomicsGBM(Model):
    """scikit-learn's HistGradientBoostingClassifier (``model.gbm_*``) on preprocessed radiomics."""

    needs_radiomics = True
    hyperparameters = frozenset({"model.gbm_max_iter", "model.gbm_learning_rate", "model.gbm_max_leaf_nodes",
                                 "model.gbm_max_bins", "train.class_weighting"})

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.pre = fit_radiomics_pre(train)
        self.clf = HistGradientBoostingClassifier(
            max_iter=self.cfg.gbm_max_iter, learning_rate=self.cfg.gbm_learning_rate,
            max_leaf_nodes=self.cfg.gbm_max_leaf_nodes, max_bins=self.cfg.gbm_max_bins, l2_regularization=1.0,
            early_stopping=False, class_weight=sklearn_class_weight(tcfg), random_state=tcfg.seed)
        self.clf.fit(self.pre.transform(train.radiomics), train.y)

    def predict_proba(self, data):
        return full_proba(self.clf, self.pre.transform(data.radiomics))

    def to_tensors(self):
        import skops.io as sio

        t = {"sklearn_skops": np.frombuffer(sio.dumps(self.clf), dtype=np.uint8).copy()}
        meta: dict = {}
        save_radiomics_pre(self.pre, t, meta)
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        import skops.io as sio

        m = cls(cfg)
        if "sklearn_skops" not in tensors:
            raise CheckpointError("checkpoint lacks tensor 'sklearn_skops'")
        data = tensors["sklearn_skops"].tobytes()
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in _SKOPS_TRUSTED]
        if untrusted:
            raise CheckpointError(f"refusing to load unexpected types from the checkpoint: {untrusted[:3]}")
        m.clf = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        m.pre = load_radiomics_pre(tensors, meta)
        return m
