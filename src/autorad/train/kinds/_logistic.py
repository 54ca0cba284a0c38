"""Multinomial logistic regression over one feature matrix; the kinds differ only in their inputs."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from autorad.core.errors import CheckpointError
from autorad.core.strict import check_state, shapes_of
from autorad.train.kinds.base import Model, full_proba, sklearn_class_weight


class LogisticModel(Model):
    """Logistic regression (L2, ``model.logreg_c``) on the inputs :meth:`_inputs` makes from a feature table."""

    hyperparameters = frozenset({"model.logreg_c", "train.class_weighting"})

    @abstractmethod
    def _fit_inputs(self, train) -> None:
        """Fit the input preprocessing on the training rows."""

    @abstractmethod
    def _inputs(self, data) -> np.ndarray:
        """The preprocessed input matrix of ``data``."""

    @abstractmethod
    def _input_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Tensors and metadata of the fitted input preprocessing."""

    @abstractmethod
    def _load_input_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
        """Restore the input preprocessing; return the number of model inputs."""

    def fit(self, train, tcfg, val=None, state_dir=None, fold=-1):
        from sklearn.linear_model import LogisticRegression

        self._fit_inputs(train)
        self.clf = LogisticRegression(C=self.cfg.logreg_c, max_iter=5000, class_weight=sklearn_class_weight(tcfg))
        self.clf.fit(self._inputs(train), train.y)

    def predict_proba(self, data):
        return full_proba(self.clf, self._inputs(data))

    def to_tensors(self):
        t, meta = self._input_state()
        t.update({"coef": self.clf.coef_, "intercept": self.clf.intercept_,
                  "classes": self.clf.classes_.astype(np.int64)})
        return t, meta

    @classmethod
    def from_tensors(cls, cfg, tensors, meta):
        from sklearn.linear_model import LogisticRegression

        m = cls(cfg)
        try:
            m.clf = LogisticRegression()
            m.clf.coef_, m.clf.intercept_ = tensors["coef"], tensors["intercept"]
            m.clf.classes_ = tensors["classes"]
            n_in = m._load_input_state(tensors, meta)
        except KeyError as err:
            raise CheckpointError(f"checkpoint lacks tensor {err}") from None
        n_cls = len(m.clf.classes_)
        check_state(shapes_of({k: tensors[k] for k in ("coef", "intercept")}),
                    {"coef": (n_cls, n_in), "intercept": (n_cls,)}, f"{cls.kind} checkpoint")
        return m
