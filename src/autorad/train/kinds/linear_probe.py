"""``linear_probe``: logistic regression on standardised frozen image embeddings (CLIP's linear probe).

With ``model.views`` > 1 every view of a training nodule is a training row, and a prediction averages the class
probabilities over the views, as the prompt learners do."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from autorad.core.errors import ConfigError
from autorad.train.kinds import register_kind
from autorad.train.kinds._logistic import LogisticModel


@register_kind("linear_probe")
class LinearProbe(LogisticModel):
    """Multinomial logistic regression on z-scored embeddings of ``model.vision_encoder``."""

    needs_image = True

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        if train.image is not None and train.image.ndim == 3:  # each view a row with its nodule's label
            n, v, d = train.image.shape
            train = replace(train, image=train.image.reshape(n * v, d), y=np.repeat(train.y, v))
        super().fit(train, tcfg, val, state_dir, fold)

    def predict_proba(self, data):
        if data.image is None or data.image.ndim == 2:
            return super().predict_proba(data)
        return np.mean([super(LinearProbe, self).predict_proba(replace(data, image=data.image[:, v]))
                        for v in range(data.image.shape[1])], axis=0)

    def _fit_inputs(self, train):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(self._embeddings(train))

    @staticmethod
    def _embeddings(data) -> np.ndarray:
        if data.image is None:
            raise ConfigError("linear_probe needs image embeddings")
        return np.asarray(data.image, dtype=np.float64)

    def _inputs(self, data):
        return self.scaler.transform(self._embeddings(data))

    def _input_state(self):
        return {"scaler.mean": self.scaler.mean_, "scaler.std": self.scaler.scale_}, {}

    def _load_input_state(self, tensors, meta):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler()
        self.scaler.mean_, self.scaler.scale_ = tensors["scaler.mean"], tensors["scaler.std"]
        self.scaler.var_ = self.scaler.scale_ ** 2
        self.scaler.n_features_in_ = len(self.scaler.mean_)
        return len(self.scaler.mean_)
