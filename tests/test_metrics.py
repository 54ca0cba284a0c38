"""Metrics against hand-computed values, edge cases and JSON stability."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from autorad import CLASS_NAMES
from autorad.core.errors import AutoradError, InputError
from autorad.evaluate.metrics import (
    compute_metrics,
    flatten_scalars,
    metrics_summary_line,
    reliability_bins,
)


def table(labels, probs, preds=None, folds=None) -> pd.DataFrame:
    """A predictions table; ``pred`` defaults to the argmax class."""
    probs = np.asarray(probs, dtype=float)
    n = len(labels)
    if preds is None:
        preds = [CLASS_NAMES[i] for i in probs.argmax(axis=1)]
    return pd.DataFrame({
        "nodule_id": [f"n{i}" for i in range(n)],
        "patient_id": [f"p{i}" for i in range(n)],
        "fold": folds if folds is not None else [i % 2 for i in range(n)],
        "label": labels,
        "prob_benign": probs[:, 0], "prob_unsure": probs[:, 1], "prob_malignant": probs[:, 2],
        "pred": preds,
    })


def random_table(n: int = 90, seed: int = 0, folds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.0  # better than chance
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return table([CLASS_NAMES[i] for i in y], p, folds=list(np.arange(n) % folds))


def test_perfect_predictions():
    labels = ["benign", "unsure", "malignant"] * 4
    probs = np.eye(3)[[CLASS_NAMES.index(c) for c in labels]]
    m = compute_metrics(table(labels, probs))
    p = m["pooled"]
    assert p["n"] == 12 and m["n"] == 12
    assert p["accuracy"] == p["balanced_accuracy"] == p["macro_auc"] == p["macro_f1"] == 1.0
    assert p["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    assert p["ece"] == 0.0
    for c in CLASS_NAMES:
        assert p["per_class"][c] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "auc": 1.0, "support": 4}
    for view in p["binary"].values():
        assert view["auc"] == view["accuracy"] == view["sensitivity"] == view["specificity"] == 1.0


def test_known_confusion_matrix():
    # true benign x3: pred B, B, U; true unsure x2: U, M; true malignant x4: M, M, M, B
    labels = ["benign"] * 3 + ["unsure"] * 2 + ["malignant"] * 4
    preds = ["benign", "benign", "unsure", "unsure", "malignant"] + ["malignant"] * 3 + ["benign"]
    probs = np.eye(3)[[CLASS_NAMES.index(c) for c in preds]] * 0.8 + 0.2 / 3
    p = compute_metrics(table(labels, probs, preds))["pooled"]
    assert p["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert p["accuracy"] == round(6 / 9, 6)
    assert p["balanced_accuracy"] == round((2 / 3 + 1 / 2 + 3 / 4) / 3, 6)
    pc = p["per_class"]
    assert (pc["benign"]["precision"], pc["benign"]["recall"]) == (round(2 / 3, 6), round(2 / 3, 6))
    assert (pc["unsure"]["precision"], pc["unsure"]["recall"], pc["unsure"]["f1"]) == (0.5, 0.5, 0.5)
    assert pc["malignant"]["f1"] == 0.75
    assert [pc[c]["support"] for c in CLASS_NAMES] == [3, 2, 4]
    assert p["macro_f1"] == round((2 / 3 + 0.5 + 0.75) / 3, 6)


def test_binary_views_by_hand():
    labels = ["benign", "benign", "unsure", "malignant", "malignant"]
    probs = [[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.45, 0.15, 0.40]]
    b = compute_metrics(table(labels, probs), by_fold=False)["pooled"]["binary"]
    # benign vs malignant: scores 1/7, 5/7 (negatives), 7/8, 8/17 (positives); 3 of 4 pairs ordered
    assert b["benign_vs_malignant"] == {"n": 4, "n_positive": 2, "n_negative": 2, "auc": 0.75,
                                        "accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5}
    # unsure as benign: score p_m; negatives .1 .5 .3, positives .7 .4 -> 5 of 6 pairs
    assert b["unsure_as_benign"] == {"n": 5, "n_positive": 2, "n_negative": 3, "auc": round(5 / 6, 6),
                                     "accuracy": 0.6, "sensitivity": 0.5, "specificity": round(2 / 3, 6)}
    # unsure as malignant: score p_u + p_m; negatives .4 .8, positives .8 .9 .55 -> 1.5 + 2 + 1 = 4.5 of 6
    assert b["unsure_as_malignant"] == {"n": 5, "n_positive": 3, "n_negative": 2, "auc": 0.75,
                                        "accuracy": 0.8, "sensitivity": 1.0, "specificity": 0.5}


def test_ece_by_hand():
    # confidences .9 (correct), .9 (wrong), .7, .7 (correct): bins (13/15, 14/15] and (10/15, 11/15]
    # ECE = .5 * |.5 - .9| + .5 * |1 - .7| = .2 + .15
    labels = ["benign", "malignant", "unsure", "unsure"]
    probs = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.7, 0.2], [0.1, 0.7, 0.2]]
    assert compute_metrics(table(labels, probs), by_fold=False)["pooled"]["ece"] == 0.35
    bins = reliability_bins(np.array([0.9, 0.9, 0.7, 0.7]), np.array([1, 0, 1, 1]))
    assert bins["count"].sum() == 4 and bins["count"][13] == 2 and bins["count"][10] == 2
    assert bins["accuracy"][13] == 0.5 and np.isnan(bins["accuracy"][0])
    # the boundary: 1.0 goes to the last bin, 0.0 to the first
    assert list(reliability_bins(np.array([0.0, 1.0]), np.array([0, 1]))["count"][[0, 14]]) == [1, 1]


def test_matches_sklearn_on_random_data():
    df = random_table(120, seed=3)
    p = compute_metrics(df, by_fold=False)["pooled"]
    y = df["label"].map(CLASS_NAMES.index).to_numpy()
    probs = df[["prob_benign", "prob_unsure", "prob_malignant"]].to_numpy()
    assert p["macro_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"), abs=1e-6)
    assert p["macro_f1"] == pytest.approx(f1_score(df["label"], df["pred"], average="macro"), abs=1e-6)


def test_absent_class_in_a_fold_is_explicit():
    df = random_table(90, seed=1)
    df = df[~((df["fold"] == 0) & (df["label"] == "unsure"))]  # fold 0 has no unsure nodule
    m = compute_metrics(df)
    f0 = m["per_fold"]["0"]
    assert f0["per_class"]["unsure"]["auc"] is None and f0["per_class"]["unsure"]["recall"] is None
    assert f0["per_class"]["unsure"]["support"] == 0
    assert f0["macro_auc"] is not None  # averaged over the two defined classes, and said so
    assert any("unsure" in n and "absent" in n for n in f0["notes"])
    assert any("2 of 3" in n for n in f0["notes"])
    # fold mean of the undefined value uses the other folds only, with a note
    other = [m["per_fold"][k]["per_class"]["unsure"]["auc"] for k in ("1", "2")]
    assert m["fold_mean"]["per_class.unsure.auc"] == pytest.approx(np.mean(other), abs=1e-6)
    assert any("per_class.unsure.auc" in n and "2 of 3" in n for n in m["notes"])
    json.dumps(m, allow_nan=False)  # valid strict JSON (no NaN)


def test_single_class_only():
    labels = ["benign"] * 5
    probs = [[0.7, 0.2, 0.1]] * 4 + [[0.2, 0.2, 0.6]]
    m = compute_metrics(table(labels, probs))
    p = m["pooled"]
    assert p["macro_auc"] is None
    assert all(p["per_class"][c]["auc"] is None for c in CLASS_NAMES)
    assert p["accuracy"] == 0.8 and p["balanced_accuracy"] == 0.8
    bvm = p["binary"]["benign_vs_malignant"]
    assert bvm["auc"] is None and bvm["sensitivity"] is None and bvm["specificity"] == 0.8
    assert m["fold_mean"]["macro_auc"] is None and m["fold_std"]["macro_auc"] is None
    assert "n/a" in metrics_summary_line(m)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.iloc[0:0], "empty"),
    (lambda d: d.drop(columns=["prob_unsure"]), "prob_unsure"),
    (lambda d: d.assign(label=["cancer"] + list(d["label"][1:])), "cancer"),
    (lambda d: d.assign(prob_benign=d["prob_benign"] * 0.5), "sum to 1"),
    (lambda d: d.assign(prob_benign=np.nan), "non-finite"),
    (lambda d: d.drop(columns=["fold"]), "fold"),
    (lambda d: d.assign(fold="first"), "integer fold"),
])
def test_bad_input_raises_user_error(mutate, message):
    with pytest.raises(InputError, match=message):
        compute_metrics(mutate(random_table(12)))
    assert issubclass(InputError, AutoradError)


def test_without_folds():
    df = random_table(30).drop(columns=["fold"])
    m = compute_metrics(df, by_fold=False)
    assert m["per_fold"] == {} and m["fold_mean"] == {} and m["pooled"]["n"] == 30


def test_fold_mean_and_std():
    m = compute_metrics(random_table(90, seed=2))
    accs = [m["per_fold"][k]["accuracy"] for k in ("0", "1", "2")]
    assert m["fold_mean"]["accuracy"] == pytest.approx(np.mean(accs), abs=1e-6)
    assert m["fold_std"]["accuracy"] == pytest.approx(np.std(accs, ddof=1), abs=1e-6)
    assert set(m["fold_mean"]) == set(flatten_scalars(m["pooled"]))
    assert "per_class.unsure.f1" in m["fold_mean"] and "binary.unsure_as_benign.auc" in m["fold_mean"]


def test_json_is_deterministic_and_order_independent():
    df = random_table(90, seed=4)
    a = json.dumps(compute_metrics(df), sort_keys=True, allow_nan=False)
    b = json.dumps(compute_metrics(df.sample(frac=1.0, random_state=7)), sort_keys=True, allow_nan=False)
    assert a == b
    # every float is rounded to 6 decimals
    for v in flatten_scalars(json.loads(a)["pooled"]).values():
        assert v is None or round(v, 6) == v


def test_summary_line():
    m = compute_metrics(random_table(60, seed=5))
    line = metrics_summary_line(m)
    assert line.startswith("n=60, accuracy ")
    assert f"{m['pooled']['macro_auc']:.3f}" in line and "unsure F1" in line and "±" in line
