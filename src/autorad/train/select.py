"""Nested selection (``train.select``): model and training settings chosen inside each training fold, never by
its test fold.

For each outer fold k, and for the final model on all nodules:

1. the training rows are cut into patient-level, label-stratified inner folds by the rule ``train.val_fraction``
   uses (:func:`autorad.train.fitting.inner_folds`): ``select.folds: 1`` validates on one inner fold of
   round(1 / ``select.fraction``), ``select.folds: n >= 2`` validates on each of n inner folds in turn;
2. every candidate (one combination of ``select.grid``, :func:`autorad.config.selection_candidates`) is trained on
   the inner-training rows exactly as a fold is trained (:func:`autorad.train.fitting.fit_model`, val_fraction's epoch
   selection included) and predicts the inner-validation rows. These trainings are independent tasks run by
   :func:`autorad.core.tasks.run_tasks` (``train.executor``, ``train.jobs``); each is saved as it finishes
   (``selection/``), so an interrupted run resumes, and none depends on where or in which order it ran;
3. a candidate's score is ``select.metric`` of its inner-validation predictions (pooled over the inner folds);
   the best score wins, ties going to the first candidate in grid order;
4. the winner is refitted on all training rows of the outer fold and predicts the test fold.

The record of every candidate's inner scores and the winner is ``selection.json`` beside the fold's model;
``metrics.json["selection"]`` and the report summarise it over folds (and seeds).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from autorad.config import ExperimentConfig, candidate_config, candidate_label, selection_candidates
from autorad.core.io import write_json
from autorad.data.dataset import Dataset
from autorad.evaluate.metrics import compute_metrics, log_loss
from autorad.train.features import build_features
from autorad.train.fitting import fit_key, fit_model, inner_folds, prediction_frame, split_folds
from autorad.train.resolve import config_from_dict
from autorad.train.run import Run
from autorad.train.table import FeatureTable

log = logging.getLogger(__name__)

LOWER_IS_BETTER = frozenset({"log_loss"})
SELECT_SEED_OFFSET = 101  # inner selection folds differ from val_fraction's epoch-selection split (seed + 7)

_table_cache: dict[tuple[str, str], FeatureTable] = {}  # the feature table of one (dataset, config), per process


def selection_score(metric: str, table: FeatureTable, proba: np.ndarray) -> float:
    """``metric`` of predictions ``proba`` for the rows of ``table`` (NaN where undefined, e.g. AUC of one class)."""
    if metric == "log_loss":
        return log_loss(proba, table.y)
    value = compute_metrics(prediction_frame(table, proba), by_fold=False)["pooled"][metric]
    return float("nan") if value is None else float(value)


def best_candidate(metric: str, scores: list[float]) -> int:
    """Index of the best score (lowest for a loss, else highest); ties and undefined scores go to grid order."""
    arr = np.array([np.nan if s is None else s for s in scores], dtype=np.float64)
    if not np.isfinite(arr).any():
        return 0
    arr = np.where(np.isfinite(arr), arr, np.inf if metric in LOWER_IS_BETTER else -np.inf)
    return int(np.argmin(arr) if metric in LOWER_IS_BETTER else np.argmax(arr))


def inner_splits(train: FeatureTable, cfg: ExperimentConfig, fold: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inner-training, inner-validation) row positions within ``train`` for each inner split."""
    sel = cfg.train.select
    n = sel.folds if sel.folds >= 2 else split_folds(sel.fraction)
    inner = inner_folds(train, n, cfg.train.seed + fold + SELECT_SEED_OFFSET)
    used = sorted(set(inner.tolist()))[: sel.folds if sel.folds >= 2 else 1]
    return [(np.flatnonzero(inner != j), np.flatnonzero(inner == j)) for j in used]


def _cached_table(dataset: str, cfg_json: str) -> FeatureTable:
    key = (dataset, cfg_json)
    if key not in _table_cache:
        _table_cache.clear()
        _table_cache[key] = build_features(dataset, config_from_dict(json.loads(cfg_json)))
    return _table_cache[key]


def inner_fit_task(task: tuple[str, str, int, int, int, list[int], list[int]]) -> dict[str, Any]:
    """One candidate trained on one inner-training part, predicting its inner-validation part (a Ray- and
    process-pool-friendly task: plain values in and out; rows are positions in the run's feature table)."""
    dataset, cfg_json, candidate, split, fold, train_rows, val_rows = task
    outer = config_from_dict(json.loads(cfg_json))
    table = _cached_table(dataset, cfg_json)
    t0 = time.time()
    model = fit_model(candidate_config(outer, selection_candidates(outer)[candidate]),
                      table.subset(np.asarray(train_rows, dtype=np.int64)), None, fold)
    proba = model.predict_proba(table.subset(np.asarray(val_rows, dtype=np.int64)))
    return {"candidate": candidate, "split": split, "proba": proba.tolist(), "seconds": round(time.time() - t0, 2)}


def _task_key(cfg: ExperimentConfig, ds: Dataset, table: FeatureTable, candidate: dict[str, Any],
              fold: int, train_rows: np.ndarray, val_rows: np.ndarray) -> str:
    """What an inner training's result depends on: :func:`~autorad.train.fitting.fit_key` of the candidate's
    config at its outer fold and rows (nodules and labels)."""
    rows = [[table.nodule_ids[r].tolist(), table.y[r].tolist()] for r in (train_rows, val_rows)]
    return fit_key(candidate_config(cfg, candidate), ds, "inner", fold, rows)


def select_config(run: Run, ds: Dataset, table: FeatureTable, rows: np.ndarray, cfg: ExperimentConfig,
                  fold: int | None) -> ExperimentConfig:
    """Choose among ``cfg``'s candidates using only the training rows ``rows`` (positions in ``table``) of outer
    fold ``fold`` (None: the final model); write ``selection.json``; return the winner's config."""
    sel = cfg.train.select
    f = -1 if fold is None else fold
    where = "final model" if fold is None else f"fold {fold}"
    candidates = selection_candidates(cfg)
    train = table.subset(rows)
    splits = [(rows[a], rows[b]) for a, b in inner_splits(train, cfg, f)]
    cfg_json = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    out_dir = run.selection_dir(fold)
    results: dict[tuple[int, int], dict[str, Any]] = {}
    todo, fingerprints = [], {}
    for c, overrides in enumerate(candidates):
        for j, (tr, va) in enumerate(splits):
            fp = fingerprints[c, j] = _task_key(cfg, ds, table, overrides, f, tr, va)
            done = out_dir / f"candidate{c:02d}_split{j}.json"
            if done.is_file():
                saved = json.loads(done.read_text(encoding="utf-8"))
                if saved.get("fingerprint") == fp:
                    results[c, j] = saved
                    continue
            todo.append((str(ds.path), cfg_json, c, j, f, tr.tolist(), va.tolist()))
    log.info("%s: selecting among %d candidates by inner %s (%d inner split%s, %d training%s to run)", where,
             len(candidates), sel.metric, len(splits), "" if len(splits) == 1 else "s", len(todo),
             "" if len(todo) == 1 else "s")
    if todo:
        from autorad.core.tasks import run_tasks

        _table_cache.clear()
        _table_cache[str(ds.path), cfg_json] = table  # the in-process executor uses this very table
        try:
            for res in run_tasks(inner_fit_task, todo, jobs=cfg.train.jobs, executor=cfg.train.executor,
                                 address=cfg.train.ray_address):
                key = (int(res["candidate"]), int(res["split"]))
                results[key] = {**res, "fingerprint": fingerprints[key]}
                write_json(out_dir / f"candidate{key[0]:02d}_split{key[1]}.json", results[key])
        finally:
            _table_cache.clear()
    record = _record(cfg, table, candidates, splits, results, fold)
    run.selection_file(fold).parent.mkdir(parents=True, exist_ok=True)
    write_json(run.selection_file(fold), record)
    log.info("%s: selected %s (inner %s %s; candidates %s)", where, candidate_label(record["chosen"]), sel.metric,
             _fmt(record["candidates"][record["winner"]]["score"]),
             ", ".join(_fmt(c["score"]) for c in record["candidates"]))
    return candidate_config(cfg, record["chosen"])


def _record(cfg: ExperimentConfig, table: FeatureTable, candidates: list[dict[str, Any]],
            splits: list[tuple[np.ndarray, np.ndarray]], results: dict[tuple[int, int], dict[str, Any]],
            fold: int | None) -> dict[str, Any]:
    sel = cfg.train.select
    pooled_rows = np.concatenate([va for _, va in splits])
    entries = []
    for c, overrides in enumerate(candidates):
        probas = [np.asarray(results[c, j]["proba"], dtype=np.float64) for j in range(len(splits))]
        split_scores = [selection_score(sel.metric, table.subset(va), p) for (_, va), p in zip(splits, probas,
                                                                                                strict=True)]
        score = selection_score(sel.metric, table.subset(pooled_rows), np.concatenate(probas))
        entries.append({"overrides": overrides, "score": _json_float(score),
                        "split_scores": [_json_float(s) for s in split_scores],
                        "seconds": round(sum(float(results[c, j].get("seconds", 0)) for j in range(len(splits))), 1)})
    winner = best_candidate(sel.metric, [e["score"] for e in entries])
    return {"fold": fold, "metric": sel.metric, "better": "lower" if sel.metric in LOWER_IS_BETTER else "higher",
            "inner": {"folds": sel.folds, "fraction": sel.fraction if sel.folds == 1 else None,
                      "n_train": [len(tr) for tr, _ in splits], "n_validation": [len(va) for _, va in splits]},
            "candidates": entries, "winner": winner, "chosen": candidates[winner]}


def _json_float(x: float) -> float | None:
    return round(float(x), 6) if x is not None and np.isfinite(x) else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def read_selection(run: Run, fold: int | None) -> dict[str, Any] | None:
    """A fold's (or the final model's) selection record, or None."""
    p = run.selection_file(fold)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def selection_summary(cfg: ExperimentConfig, runs: dict[int | None, Run]) -> dict[str, Any]:
    """What ``metrics.json["selection"]`` says: the grid, and per seed (``runs``: seed -> its run; None for a
    single-seed run) and fold the winner and every candidate's inner score; how often each candidate won."""
    sel = cfg.train.select
    candidates = selection_candidates(cfg)
    rows, wins = [], [0] * len(candidates)
    for seed, run in runs.items():
        folds = sorted(int(p.name) for p in (run.path / "folds").iterdir() if p.is_dir()) \
            if (run.path / "folds").is_dir() else []
        for fold in [*folds, None]:
            rec = read_selection(run, fold)
            if rec is None:
                continue
            if fold is not None:
                wins[rec["winner"]] += 1
            rows.append({"seed": seed, "fold": "final" if fold is None else fold, "winner": rec["winner"],
                         "chosen": rec["chosen"], "scores": [c["score"] for c in rec["candidates"]]})
    return {"metric": sel.metric, "better": "lower" if sel.metric in LOWER_IS_BETTER else "higher",
            "inner": {"folds": sel.folds, "fraction": sel.fraction if sel.folds == 1 else None},
            "candidates": [candidate_label(c) for c in candidates], "outer_fold_wins": wins, "rows": rows}


def attach_selection_summary(run: Run, cfg: ExperimentConfig, runs: dict[int | None, Run] | None = None) -> None:
    """Add :func:`selection_summary` to the run's metrics.json (nothing when selection is off)."""
    if cfg.train.select is None:
        return
    metrics = run.read_metrics()
    metrics["selection"] = selection_summary(cfg, runs or {None: run})
    run.write_metrics(metrics)
