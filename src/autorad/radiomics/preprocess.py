"""Radiomics features -> a clean float32 model input, fitted on training nodules only.

Radiomics columns span many orders of magnitude (energies reach 1e8, some are heavy-tailed, some constant,
failed nodules are NaN). :class:`RadiomicsPreprocessor` learns, from the training rows of one fold only:

1. which columns to keep: drop those missing (NaN/inf) in more than ``max_missing`` of the training nodules
   that have features at all, and those constant over the training nodules;
2. which kept columns get a signed log, ``sign(x) * log1p(|x|)``: those whose skewness exceeds
   ``skew_threshold`` and that the log makes less skewed;
3. per column median (imputes missing values), mean and standard deviation (z-score), all after the log;
4. optionally (``perturbed`` given: ``radiomics.stability``), keep only the columns whose transformed values agree
   with those of each perturbed-mask extraction of the same training rows (Lin's concordance >= ``min_agreement``,
   :mod:`autorad.radiomics.stability`). The perturbed values are used for this choice only.

``transform`` applies exactly that and clips z to ``[-clip_z, clip_z]``; its output never holds NaN or inf.
The state is plain arrays (``state_dict`` for safetensors) plus a JSON-able ``config`` with the feature names,
so it is saved with the model and reloaded with :meth:`RadiomicsPreprocessor.from_state`. Hand-written rather
than a scikit-learn Pipeline because the state must be safetensors + JSON (no pickle) and per-column log choice
is not a stock transformer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autorad.core.errors import CheckpointError, InputError
from autorad.core.strict import check_state, shapes_of
from autorad.radiomics.table import feature_columns, select_feature_columns

__all__ = ["RadiomicsPreprocessor", "feature_columns", "preprocess_fold", "select_feature_columns", "signed_log1p"]

_STATE_KEYS = ("columns", "log", "median", "mean", "std")
_VERSION = 1


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses heavy tails, keeps sign and zero."""
    return np.sign(x) * np.log1p(np.abs(x))


def _nan_skew(T: np.ndarray) -> np.ndarray:
    """Column skewness over finite values (scipy's biased estimator; 0 where undefined)."""
    from scipy.stats import skew

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: undefined, set to 0 below
        s = np.asarray(np.ma.filled(skew(T, axis=0, nan_policy="omit"), np.nan), dtype=np.float64)
    return np.where(np.isfinite(s), s, 0.0)


class RadiomicsPreprocessor:
    """Signed log for heavy tails, z-score, constant/missing column removal, median imputation, clipping."""

    def __init__(self, skew_threshold: float = 1.0, max_missing: float = 0.2, clip_z: float = 5.0):
        self.skew_threshold = float(skew_threshold)
        self.max_missing = float(max_missing)
        self.clip_z = float(clip_z)
        self.feature_names_in: list[str] = []
        self.n_train = 0
        self.stability: dict[str, Any] | None = None  # what the stability selection did (saved with the state)
        self.agreement: dict[str, np.ndarray] = {}  # fit only: per perturbation, each candidate column's CCC
        self._state: dict[str, np.ndarray] | None = None

    # ---- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, feature_names: Sequence[str], perturbed: Mapping[str, np.ndarray] | None = None,
            min_agreement: float = 0.9) -> RadiomicsPreprocessor:
        """Learn the transform from training rows ``X`` (n_train, n_features) only.

        ``perturbed``: the same rows and columns extracted with each nodule's mask perturbed, by perturbation name
        (``grow1``...); then only columns whose agreement with every perturbation reaches ``min_agreement`` are
        kept (see the module docstring).
        """
        X = np.array(X, dtype=np.float64, copy=True)
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise InputError(f"X has shape {X.shape} but {len(feature_names)} feature names were given")
        perturbed = dict(perturbed or {})
        for name, P in perturbed.items():
            if np.shape(P) != X.shape:
                raise InputError(f"radiomics of masks {name} have shape {np.shape(P)}, expected {X.shape}")
        X[~np.isfinite(X)] = np.nan
        rows = ~np.all(np.isnan(X), axis=1)  # failed extractions carry no information about the columns
        X = X[rows]
        if len(X) < 2:
            raise InputError("radiomics preprocessing needs at least 2 training nodules with features")
        finite_frac = np.mean(~np.isnan(X), axis=0)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: dropped just below
            span = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
            scale = np.maximum(1.0, np.nanmax(np.abs(X), axis=0))
        keep = (finite_frac >= 1.0 - self.max_missing) & np.isfinite(span) & (span > 1e-12 * scale)
        cols = np.flatnonzero(keep)
        Xk = X[:, cols]
        raw_skew, log_skew = _nan_skew(Xk), _nan_skew(signed_log1p(Xk))
        use_log = (np.abs(raw_skew) > self.skew_threshold) & (np.abs(log_skew) < np.abs(raw_skew))
        T = np.where(use_log, signed_log1p(Xk), Xk)
        median = np.nanmedian(T, axis=0)
        mean = np.nanmean(T, axis=0)
        std = np.nanstd(T, axis=0)
        ok = np.isfinite(std) & (std > 1e-12 * np.maximum(1.0, np.abs(mean)))  # constant after the log
        if not ok.any():
            raise InputError(f"no radiomic feature varies across the {len(X)} training nodules (identical or "
                             "too few nodules); nothing to learn from")
        self._state = {"columns": cols[ok].astype(np.int64), "log": use_log[ok].astype(bool),
                       "median": median[ok], "mean": mean[ok], "std": std[ok]}
        self.feature_names_in = [str(n) for n in feature_names]
        self.n_train = int(rows.sum())
        self.stability, self.agreement = None, {}
        if perturbed:
            self._keep_stable(X, {k: np.asarray(v, dtype=np.float64)[rows] for k, v in perturbed.items()},
                              float(min_agreement))
        return self

    def _keep_stable(self, X: np.ndarray, perturbed: dict[str, np.ndarray], min_agreement: float) -> None:
        """Restrict the fitted columns to those that agree with every perturbed version (training rows only)."""
        from autorad.radiomics.stability import concordance

        st = self._require()
        z = self._scaled(X, impute=False)
        stable = np.ones(len(st["columns"]), dtype=bool)
        for name, P in sorted(perturbed.items()):
            self.agreement[name] = concordance(z, self._scaled(P, impute=False))
            stable &= np.nan_to_num(self.agreement[name], nan=-np.inf) >= min_agreement
        if not stable.any():
            best = np.min(np.stack(list(self.agreement.values())), axis=0)
            raise InputError(f"no radiomic feature reaches radiomics.min_agreement {min_agreement} against masks "
                             f"{', '.join(sorted(perturbed))} (best: {np.nanmax(best):.3f}); lower it")
        self._state = {k: v[stable] for k, v in st.items()}
        self.stability = {"perturbations": sorted(perturbed), "min_agreement": min_agreement,
                          "n_candidates": int(len(stable)), "n_kept": int(stable.sum())}

    def fit_transform(self, X: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        return self.fit(X, feature_names).transform(X)

    # ---- applying ------------------------------------------------------------------------------------------
    @property
    def kept_features(self) -> list[str]:
        """Names of the output columns, in order."""
        return [self.feature_names_in[i] for i in self._require()["columns"]]

    @property
    def n_features_out(self) -> int:
        return len(self._require()["columns"])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features_in) raw features -> (n, n_features_out) float32, finite, |z| <= clip_z."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != len(self.feature_names_in):
            raise InputError(f"expected {len(self.feature_names_in)} radiomics features, got {X.shape[1]}")
        return self._scaled(X, impute=True).astype(np.float32)

    def _scaled(self, X: np.ndarray, impute: bool) -> np.ndarray:
        """Kept columns of X after the log, (imputation,) z-score and clipping, in float64; without ``impute``
        missing values stay NaN."""
        st = self._require()
        Xk = X[:, st["columns"]].copy()
        with np.errstate(invalid="ignore", over="ignore"):
            T = np.where(st["log"], signed_log1p(Xk), Xk)
        T = np.where(np.isfinite(T), T, st["median"] if impute else np.nan)
        Z = (T - st["mean"]) / st["std"]
        return np.clip(Z, -self.clip_z, self.clip_z)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        """Transform a radiomics table (columns looked up by name, so their order does not matter)."""
        missing = [n for n in self.feature_names_in if n not in df.columns]
        if missing:
            raise InputError(f"radiomics table lacks {len(missing)} features the model was trained with "
                             f"(first: {missing[0]}); extract with the same parameters")
        return self.transform(df[self.feature_names_in].to_numpy(dtype=np.float64))

    # ---- saving --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays for safetensors (contiguous copies)."""
        return {k: np.ascontiguousarray(v).copy() for k, v in self._require().items()}

    def config(self) -> dict[str, Any]:
        """JSON-able settings, input feature names and kept feature names."""
        self._require()
        out = {"kind": "radiomics_preprocessor", "version": _VERSION, "skew_threshold": self.skew_threshold,
               "max_missing": self.max_missing, "clip_z": self.clip_z, "n_train": self.n_train,
               "feature_names_in": list(self.feature_names_in), "kept_features": self.kept_features}
        if self.stability is not None:
            out["stability"] = dict(self.stability)
        return out

    @classmethod
    def from_state(cls, state_dict: dict[str, Any], config: dict[str, Any]) -> RadiomicsPreprocessor:
        """Rebuild a fitted preprocessor; :class:`CheckpointError` on missing, extra or inconsistent entries."""
        if config.get("kind") != "radiomics_preprocessor" or config.get("version") != _VERSION:
            raise CheckpointError(f"not a version-{_VERSION} radiomics preprocessor config")
        check_state(shapes_of(state_dict), dict.fromkeys(_STATE_KEYS), "radiomics preprocessor state")
        st = {k: np.asarray(state_dict[k]) for k in _STATE_KEYS}
        n = len(st["columns"])
        names = list(config["feature_names_in"])
        if any(v.shape != (n,) for v in st.values()) or (n and int(st["columns"].max()) >= len(names)):
            raise CheckpointError("radiomics preprocessor state arrays have inconsistent shapes")
        p = cls(config["skew_threshold"], config["max_missing"], config["clip_z"])
        p.feature_names_in = names
        p.n_train = int(config.get("n_train", 0))
        p.stability = dict(config["stability"]) if isinstance(config.get("stability"), dict) else None
        p._state = {"columns": st["columns"].astype(np.int64), "log": st["log"].astype(bool),
                    "median": st["median"].astype(np.float64), "mean": st["mean"].astype(np.float64),
                    "std": st["std"].astype(np.float64)}
        if p.kept_features != list(config.get("kept_features", p.kept_features)):
            raise CheckpointError("radiomics preprocessor: kept feature names do not match the state")
        return p

    def _require(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise RuntimeError("RadiomicsPreprocessor is not fitted")
        return self._state


def preprocess_fold(X: np.ndarray, feature_names: Sequence[str], train_index: np.ndarray,
                    **settings: float) -> tuple[RadiomicsPreprocessor, np.ndarray]:
    """Fit a preprocessor on the training rows ``X[train_index]`` only and transform every row of ``X``.

    ``train_index`` is a boolean mask or integer indices (e.g. ``manifest["fold"] != k``). Nothing about the
    other rows (values, NaN, outliers) influences the fitted state.
    """
    X = np.asarray(X, dtype=np.float64)
    prep = RadiomicsPreprocessor(**settings).fit(X[np.asarray(train_index)], feature_names)
    return prep, prep.transform(X)
