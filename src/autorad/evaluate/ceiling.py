"""The label-noise ceiling: how well the readers' own malignancy votes predict the label made from them.

Pure functions on a malignancy-ratings array ``(N, R)`` (1-5, 0 = no reader; reader slots need not be filled in
order). Every panel of ratings is turned into a class by the one label rule, :mod:`autorad.data.labels` (median
of the panel; below 3 benign, 3 unsure, above 3 malignant). Classes are indices into :data:`autorad.CLASS_NAMES`.

* :func:`leave_one_out_labels` - the label of each panel with one reader left out (n-1 of n readers);
* :func:`reader_votes` - each reader's own rating as a class;
* :func:`resampled_label_probs` - the exact distribution of the label of a panel of ``k`` readers drawn with
  replacement from given ratings (the plug-in "perfect model of the readers' distribution");
* :func:`leave_one_out_probs` - the same with the distribution estimated without one reader;
* :func:`split_half_agreement` - how often two disjoint 2-reader panels of a 4-reader nodule agree;
* :func:`fit_latent`, :func:`latent_expected`, :func:`identified_range`, :func:`latent_checks`,
  :func:`plugin_check` - a latent-score model of the readers (free prior, EM) and what a perfect model of
  their distribution would reach under it, with the spread over equally fitting priors and the model's checks;
* :func:`scores` / :func:`patient_bootstrap` - accuracy, unsure F1, macro AUC, confusion (through
  :func:`autorad.evaluate.metrics.compute_metrics`, the model's own definitions) and a patient-level bootstrap CI.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autorad import CLASS_NAMES
from autorad.data.labels import label_from_ratings
from autorad.evaluate.metrics import compute_metrics

_BASE = 6  # ratings 0..5 as base-6 digits of a panel code
_CLASS_INDEX = {c: i for i, c in enumerate(CLASS_NAMES)}
_PANEL_CACHE: dict[tuple[int, ...], int] = {}


def reader_count(malignancy: np.ndarray) -> np.ndarray:
    """Readers who rated malignancy, per nodule (non-zero entries, as the label rule counts them)."""
    return (np.asarray(malignancy) > 0).sum(axis=1)


def rated(malignancy: np.ndarray, n_readers: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with exactly ``n_readers`` readers and their ratings packed to ``(M, n_readers)`` (reader order kept)."""
    m = np.asarray(malignancy)
    rows = np.flatnonzero(reader_count(m) == n_readers)
    packed = np.array([m[i][m[i] > 0] for i in rows], dtype=np.int64).reshape(len(rows), n_readers)
    return rows, packed


def _panel_class(panel: tuple[int, ...]) -> int:
    if panel not in _PANEL_CACHE:
        label = label_from_ratings(panel, "median", min_readers=len(panel))
        if label is None:  # pragma: no cover - a panel of k non-zero ratings always has k readers
            raise ValueError(f"panel {panel} has no label")
        _PANEL_CACHE[panel] = _CLASS_INDEX[label]
    return _PANEL_CACHE[panel]


def panel_labels(panels: np.ndarray) -> np.ndarray:
    """Class index of every panel along the last axis (``(..., k)`` ratings 1-5) by the label rule.

    The rule is applied once per distinct multiset of ratings (at most a few hundred) and looked up for the rest.
    """
    p = np.sort(np.asarray(panels, dtype=np.int64), axis=-1)
    if p.size and (p.min() < 1 or p.max() > 5):
        raise ValueError("panel ratings must be 1-5")
    codes = (p * (_BASE ** np.arange(p.shape[-1]))).sum(axis=-1)
    uniq, first, inverse = np.unique(codes.ravel(), return_index=True, return_inverse=True)
    flat = p.reshape(-1, p.shape[-1])
    classes = np.array([_panel_class(tuple(int(x) for x in flat[j])) for j in first], dtype=np.int64)
    return classes[inverse].reshape(codes.shape)


def median_labels(malignancy: np.ndarray) -> np.ndarray:
    """The dataset's label of each nodule (median of all its readers); -1 where no reader rated it."""
    m = np.asarray(malignancy)
    out = np.full(len(m), -1, dtype=np.int64)
    for n in range(1, m.shape[1] + 1):
        rows, packed = rated(m, n)
        if len(rows):
            out[rows] = panel_labels(packed)
    return out


def leave_one_out_labels(ratings: np.ndarray) -> np.ndarray:
    """``(M, n)`` ratings -> ``(M, n)``: column j is the label of the panel without reader j."""
    r = np.asarray(ratings)
    n = r.shape[1]
    if n < 2:
        raise ValueError("leaving one reader out needs at least 2 readers")
    keep = np.array([[k for k in range(n) if k != j] for j in range(n)])  # (n, n-1)
    return panel_labels(r[:, keep])


def reader_votes(ratings: np.ndarray) -> np.ndarray:
    """Each reader's own rating as a class (a panel of one)."""
    r = np.asarray(ratings)
    return panel_labels(r[..., None])


def resampled_label_probs(ratings: np.ndarray, panel: int) -> np.ndarray:
    """``(M, m)`` ratings -> ``(M, 3)``: the probability of each class for the median of ``panel`` readers drawn
    with replacement from the row's ``m`` ratings (exact: all ``m ** panel`` draws are enumerated)."""
    r = np.asarray(ratings)
    m = r.shape[1]
    if m < 1 or panel < 1:
        raise ValueError("need at least one rating and a panel of at least one reader")
    draws = np.array(list(itertools.product(range(m), repeat=panel)), dtype=np.int64)  # (m**panel, panel)
    classes = panel_labels(r[:, draws])  # (M, m**panel)
    counts = np.stack([(classes == k).sum(axis=1) for k in range(len(CLASS_NAMES))], axis=1)
    return counts / draws.shape[0]


def leave_one_out_probs(ratings: np.ndarray) -> np.ndarray:
    """``(M, n)`` ratings -> ``(M, n, 3)``: the plug-in distribution of an n-reader label estimated without
    reader j (n draws with replacement from the other n-1 ratings)."""
    r = np.asarray(ratings)
    n = r.shape[1]
    if n < 2:
        raise ValueError("leaving one reader out needs at least 2 readers")
    return np.stack([resampled_label_probs(np.delete(r, j, axis=1), n) for j in range(n)], axis=1)


def split_half_agreement(ratings: np.ndarray) -> np.ndarray:
    """``(M, 4)`` ratings -> ``(M,)``: share of the 3 ways of splitting the 4 readers into two pairs whose two
    2-reader labels agree. Its mean is unbiased for the chance that two independent 2-reader panels agree,
    sum_c q_c**2 <= max_c q_c (q = the class distribution of a 2-reader label)."""
    r = np.asarray(ratings)
    if r.shape[1] != 4:
        raise ValueError("the split-half agreement needs exactly 4 readers")
    splits = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    agree = [panel_labels(r[:, list(a)]) == panel_labels(r[:, list(b)]) for a, b in splits]
    return np.mean(agree, axis=0)


def bayes_class(probs: np.ndarray) -> np.ndarray:
    """The most probable class (ties to the first in benign, unsure, malignant order, as the metrics do)."""
    return np.asarray(probs).argmax(axis=-1)


def scores(label: np.ndarray, pred: np.ndarray, probs: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy, unsure F1, confusion matrix (rows = label, columns = prediction) and, with ``probs``, macro AUC,
    by :func:`autorad.evaluate.metrics.compute_metrics` (the definitions the model's rows use)."""
    label, pred = np.asarray(label), np.asarray(pred)
    p = np.eye(len(CLASS_NAMES))[pred] if probs is None else np.asarray(probs, dtype=np.float64)
    table = pd.DataFrame({"label": np.asarray(CLASS_NAMES)[label], "pred": np.asarray(CLASS_NAMES)[pred]})
    for k, c in enumerate(CLASS_NAMES):
        table[f"prob_{c}"] = p[:, k]
    pooled = compute_metrics(table, by_fold=False)["pooled"]
    return {"n": int(len(label)), "accuracy": pooled["accuracy"], "unsure_f1": pooled["per_class"]["unsure"]["f1"],
            "macro_auc": pooled["macro_auc"] if probs is not None else None,
            "confusion": pooled["confusion_matrix"]}


def patient_bootstrap(stat: Callable[[np.ndarray], float], patients: Sequence[str] | np.ndarray,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of ``stat(nodule_indices)`` over resamples of patients with replacement (a patient's nodules
    stay together); ``stat`` gets the indices of the resampled nodules, repeats included. Seeded."""
    pid = np.asarray(patients)
    uniq, inverse = np.unique(pid, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        values.append(stat(np.concatenate([members[k] for k in pick])))
    lo, hi = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------ a latent-score model of the readers' ratings

THRESHOLDS = np.array([1.5, 2.5, 3.5, 4.5])  # rating r when the reader's score falls between thresholds r-1 and r
GRID = np.linspace(-1.0, 7.0, 161)  # latent malignancy scores the population prior lives on


def rating_probs(mu: np.ndarray, sigma: float) -> np.ndarray:
    """``(G,)`` latent scores -> ``(G, 5)``: P(rating = 1..5 | mu) for a reader whose score is mu + N(0, sigma^2),
    cut at :data:`THRESHOLDS`."""
    from scipy.stats import norm

    cdf = norm.cdf((THRESHOLDS[None, :] - np.asarray(mu, dtype=float)[:, None]) / sigma)
    cdf = np.concatenate([np.zeros((len(cdf), 1)), cdf, np.ones((len(cdf), 1))], axis=1)
    return np.diff(cdf, axis=1)


def panel_law(probs: np.ndarray, panel: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``5 ** panel`` panels of ratings 1-5 and, per row of ``probs`` (G, 5), the probability of each panel
    for independent readers: returns ``(panels (P, panel), weights (G, P))``."""
    panels = np.array(list(itertools.product(range(1, 6), repeat=panel)), dtype=np.int64)
    weights = np.prod(np.asarray(probs)[:, panels - 1], axis=2)
    return panels, weights


def latent_label_probs(probs: np.ndarray, panel: int) -> np.ndarray:
    """``(G, 5)`` rating distributions -> ``(G, 3)``: class distribution of the label of ``panel`` readers."""
    panels, weights = panel_law(probs, panel)
    onehot = np.eye(len(CLASS_NAMES))[panel_labels(panels)]
    return weights @ onehot


def fit_latent(malignancy: np.ndarray, sigmas: Sequence[float] | None = None, iters: int = 1000) -> dict[str, Any]:
    """Fit the latent-score model to nodules' ratings by maximum marginal likelihood.

    Each nodule has a latent score mu; its readers rate independently, each cutting mu + N(0, sigma^2) at
    :data:`THRESHOLDS` (exchangeable readers). The prior over mu is free (non-parametric, on :data:`GRID`, fitted
    by ``iters`` EM steps from the uniform prior: deterministic). ``sigmas=None``: one reader noise for every
    nodule, found by a bounded scalar search (with a quarter of the steps); a sequence: the prior is free over
    the pairs (mu, sigma) of ``GRID x sigmas`` (some nodules are rated more consistently than others).
    EM approaches the likelihood's flat top slowly and the prior is only partly identified by 3-4 ratings per
    nodule: :func:`identified_range` gives the spread of a functional over priors that fit equally well.
    Returns ``{"support" (K, 5) rating distributions, "prior" (K,), "posterior" (N, K), "loglik", "sigma",
    "counts" (N, 5)}``.
    """
    from scipy.optimize import minimize_scalar

    m = np.asarray(malignancy)
    counts = np.stack([(m == r).sum(axis=1) for r in range(1, 6)], axis=1)  # (N, 5)

    def fit(support: np.ndarray, steps: int) -> dict[str, Any]:
        log_lik = counts @ np.log(np.clip(support, 1e-300, None)).T  # (N, K)
        shift = log_lik.max(axis=1, keepdims=True)
        lik = np.exp(log_lik - shift)
        w = np.full(len(support), 1.0 / len(support))
        for _ in range(steps):
            post = lik * w
            post /= post.sum(axis=1, keepdims=True)
            w = post.mean(axis=0)
        marg = lik @ w
        return {"support": support, "prior": w, "posterior": lik * w / marg[:, None], "counts": counts,
                "loglik": float(np.sum(np.log(marg) + shift[:, 0]))}

    if sigmas is None:
        best = minimize_scalar(lambda s: -fit(rating_probs(GRID, s), max(1, iters // 4))["loglik"],
                               bounds=(0.05, 3.0), method="bounded", options={"xatol": 1e-3})
        return {**fit(rating_probs(GRID, float(best.x)), iters), "sigma": float(best.x)}
    support = np.concatenate([rating_probs(GRID, float(s)) for s in sigmas])
    return {**fit(support, iters), "sigma": None}


def latent_imputations(model: dict[str, Any], n_readers: np.ndarray, n_draws: int = 200,
                       seed: int = 0) -> np.ndarray:
    """``(n_draws, N, 3)``: the perfect model's class probabilities q(mu_i) for nodule i's panel size, with mu_i
    drawn from its posterior (multiple imputation of the unknown score; seeded)."""
    rng = np.random.default_rng(seed)
    post = model["posterior"]
    probs = model["support"]
    q_by_n = {int(n): latent_label_probs(probs, int(n)) for n in np.unique(n_readers)}
    cum = post.cumsum(axis=1)
    u = rng.random((n_draws, len(post), 1))
    k = np.minimum((u > cum[None]).sum(axis=2), post.shape[1] - 1)  # (n_draws, N) grid index
    out = np.empty((n_draws, len(post), len(CLASS_NAMES)))
    for n, q in q_by_n.items():
        rows = np.flatnonzero(np.asarray(n_readers) == n)
        out[:, rows] = q[k[:, rows]]
    return out


def latent_checks(model: dict[str, Any], rows4: np.ndarray) -> dict[str, float]:
    """What the fitted model predicts, on the 4-reader nodules ``rows4``, for the agreements that are also observed:
    3 of 4 readers' label vs all 4 (``loo``), one reader vs the other 3 (``reader``), pair vs pair (``split``)."""
    panels, weights = panel_law(model["support"], 4)  # (P, 4), (G, P)
    full = panel_labels(panels)
    loo = panel_labels(panels[:, :3]) == full
    reader = panel_labels(panels[:, :1]) == panel_labels(panels[:, 1:])
    split = panel_labels(panels[:, :2]) == panel_labels(panels[:, 2:])
    post = model["posterior"][rows4]  # (M, G)
    return {name: float(np.mean(post @ (weights @ ind.astype(float))))
            for name, ind in (("loo", loo), ("reader", reader), ("split", split))}


def latent_functionals(model: dict[str, Any], label: np.ndarray, n_readers: np.ndarray) -> dict[str, np.ndarray]:
    """``(N, K)`` per nodule and support point: ``correct`` = whether the perfect model's class (it knows the
    rating distribution) equals the nodule's actual label; ``max_prob`` = its expected accuracy on a fresh panel
    of the nodule's size (max q)."""
    k = len(model["support"])
    n_readers = np.asarray(n_readers)
    correct, max_prob = np.empty((len(n_readers), k)), np.empty((len(n_readers), k))
    for n in np.unique(n_readers):
        rows = np.flatnonzero(n_readers == n)
        q = latent_label_probs(model["support"], int(n))  # (K, 3)
        correct[rows] = bayes_class(q)[None, :] == np.asarray(label)[rows, None]
        max_prob[rows] = q.max(axis=1)[None, :]
    return {"correct": correct, "max_prob": max_prob}


def latent_expected(model: dict[str, Any], label: np.ndarray, n_readers: np.ndarray) -> dict[str, np.ndarray]:
    """The functionals of :func:`latent_functionals` averaged over each nodule's posterior: ``(N,)`` each."""
    return {name: (model["posterior"] * g).sum(axis=1)
            for name, g in latent_functionals(model, label, n_readers).items()}


def identified_range(model: dict[str, Any], g: np.ndarray, rel_tol: float = 0.01) -> tuple[float, float]:
    """Bounds on the mean posterior functional ``mean_i sum_k post_ik g_ik`` (``g >= 0``) over every prior
    whose probability of each observed rating pattern (the counts of 1..5 among a nodule's readers) is within
    ``rel_tol`` of the fitted one: priors that fit the data (almost) equally well.

    With the pattern probabilities held at the fit the functional is linear in the prior, so two linear
    programs give its extremes; letting them move by ``rel_tol`` changes each posterior by at most that factor,
    so the result is widened by it (lo / (1 + rel_tol), hi / (1 - rel_tol)): an outer bound of the values in
    that set. Such priors can disagree on the ceiling because 3-4 ratings per nodule do not pin it down.
    """
    from scipy.optimize import linprog

    log_s = np.log(np.clip(model["support"], 1e-300, None))
    w = model["prior"]
    lik = np.exp(model["counts"] @ log_s.T)  # (N, K); the multinomial coefficient cancels in the posterior
    h = (lik * g / (lik @ w)[:, None]).mean(axis=0)  # with the fit's pattern probabilities: sum_k w_k h_k
    patterns = np.unique(model["counts"], axis=0)
    lp = np.exp(patterns @ log_s.T)
    lp /= (lp @ w)[:, None]  # each pattern's probability relative to the fit's
    a_ub = np.vstack([lp, -lp])
    b_ub = np.concatenate([np.full(len(lp), 1 + rel_tol), np.full(len(lp), -(1 - rel_tol))])
    out = []
    for sign in (1.0, -1.0):
        res = linprog(sign * h, A_ub=a_ub, b_ub=b_ub, A_eq=np.ones((1, len(w))), b_eq=[1.0], bounds=(0, None),
                      method="highs")
        if res.status != 0:
            raise ValueError(f"identified_range: linear program failed ({res.message})")
        out.append(sign * res.fun)
    return float(out[0] / (1 + rel_tol)), float(out[1] / (1 - rel_tol))


def plugin_check(model: dict[str, Any], rows: np.ndarray, n: int) -> dict[str, float]:
    """The plug-in estimator's bias under the fitted model, on nodules ``rows`` with ``n`` readers: what
    mean max q-hat (resampling the nodule's own ratings) reads on average, and the model's true mean max q."""
    panels, weights = panel_law(model["support"], n)  # (P, n), (K, P)
    plug = resampled_label_probs(panels, n).max(axis=1)  # (P,)
    true = latent_label_probs(model["support"], n).max(axis=1)  # (K,)
    post = model["posterior"][rows]
    return {"plugin": float(np.mean(post @ (weights @ plug))), "true": float(np.mean(post @ true))}
