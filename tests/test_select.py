"""Nested selection (train.select): chosen inside the training folds only, the best inner score wins, recorded per
fold, deterministic, independent of the executor, per seed; bad grids refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from autorad.config import candidate_config, dump_config, selection_candidates
from autorad.core.errors import ConfigError
from autorad.data.dataset import Dataset
from autorad.evaluate.metrics import log_loss
from autorad.train.entry import train
from autorad.train.features import build_features
from autorad.train.fitting import fit_model
from autorad.train.kinds.seed_ensemble import SeedEnsemble
from autorad.train.resolve import load_config
from autorad.train.run import Run, load_model, save_model
from autorad.train.select import inner_splits, select_config

TINY = ["model.kind=autorad", "model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2",
        "train.epochs=2", "train.lr=0.01"]
GRID = "train.select.grid={model.n_ctx: [1, 3], train.lr: [0.001, 0.05]}"
PROBS = ["prob_benign", "prob_unsure", "prob_malignant"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    """60 phantom nodules (no real data needed); radiomics and tiny embeddings are cached on first use."""
    from autorad.config import DataConfig
    from autorad.data.ingest import ingest

    return ingest("phantom", tmp_path_factory.mktemp("select") / "ds", None,
                  DataConfig(source="phantom", phantom_n=60)).path


def _without_seconds(record: dict) -> dict:
    return {**record, "candidates": [{k: v for k, v in c.items() if k != "seconds"} for c in record["candidates"]]}


@pytest.mark.parametrize(("config", "override", "expected"), [
    ("offline", "train.select.grid={}", "train.select.grid is empty"),
    ("offline", "train.select.grid={model.n_ctx: []}", "key 'model.n_ctx' lists no value"),
    ("offline", "train.select.grid={model.nctx: [1, 2]}", "unknown config key 'model.nctx'"),
    ("offline", "train.select.grid={train.jobs: [1, 2]}", "key 'train.jobs' cannot be selected"),
    ("offline", "train.select.grid={train.select.folds: [1, 2]}", "key 'train.select.folds' cannot be selected: it is"),
    ("offline", "train.select.grid={data.phantom_n: [20, 30]}", "key 'data.phantom_n' cannot be selected"),
    ("offline", "train.select.grid={model.gbm_max_iter: [10, 20]}",
     "key 'model.gbm_max_iter' cannot be selected: model.kind autorad does not use it"),
    ("radiomics_gbm", "train.select.grid={model.n_ctx: [4, 16]}",
     "key 'model.n_ctx' cannot be selected: model.kind radiomics_gbm does not use it"),
    ("radiomics_logreg", "train.select.grid={train.lr: [0.1, 0.2]}", "key 'train.lr' cannot be selected"),
    ("offline", "train.select.grid={model.n_ctx: [0, 4]}", "candidate model.n_ctx=0: key 'model.n_ctx'"),
    ("offline", "train.select.grid={model.n_ctx: [4]}", "a single candidate"),
    ("offline", "train.select.grid={model.n_ctx: [4, 4.0]}", "key 'model.n_ctx' lists a value twice"),
    ("offline", "train.select.grid={model.n_ctx: [1, 2, 3, 4, 5, 6, 7, 8, 9], train.lr: [1, 2, 3, 4, 5, 6, 7, 8]}",
     "72 candidates; at most 64"),
    ("offline", "train.select={grid: {model.n_ctx: [4, 16]}, metric: auc}", "train.select.metric"),
])
def test_bad_grids_are_refused_naming_the_option(config, override, expected):
    with pytest.raises(ConfigError, match="train.select") as err:
        load_config(config, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_option_left_out_of_the_default_dump_is_selectable():
    """model.image_tuning_lr is dropped from config.yaml while image tuning is off; with it on, a grid may list it."""
    cfg = load_config("offline_cpu", ["model.kind=autorad_image", "model.vision_encoder=efficientnet-lite0-stage6-map",
                                      "model.image_tuning=tail", "train.select.grid={model.image_tuning_lr: [0.1, 1]}"])
    assert [c["model.image_tuning_lr"] for c in selection_candidates(cfg)] == [0.1, 1.0]


def test_grid_values_candidates_and_the_off_default():
    cfg = load_config("offline_cpu", ["train.select.grid={train.lr: [1e-3, 2e-3], model.n_ctx: [4, 16]}"])
    assert cfg.train.select.grid == {"train.lr": [0.001, 0.002], "model.n_ctx": [4, 16]}  # as the options read them
    assert cfg.train.select.metric == "log_loss" and cfg.train.select.folds == 1
    cands = selection_candidates(cfg)
    assert cands[1] == {"train.lr": 0.001, "model.n_ctx": 16} and len(cands) == 4
    one = candidate_config(cfg, cands[1])
    assert (one.train.lr, one.model.n_ctx, one.train.select) == (0.001, 16, None)
    assert load_config("radiomics_gbm", ["model.kind=autorad", "model.fusion=gbm",  # a fused model reads both
                                         "train.select.grid={model.gbm_max_iter: [10, 20]}"]).train.select
    # off by default, and then config.yaml and the run fingerprints are what they were before train.select existed
    plain = load_config("offline_cpu")
    assert plain.train.select is None and "select" not in plain.model_dump(mode="json")["train"]
    assert "select:" not in dump_config(plain) and "select:" in dump_config(cfg)
    assert load_config("offline_cpu", ["train.select=null"]).model_dump() == plain.model_dump()


def test_cli_refuses_a_bad_grid_before_any_work(phantom, tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "autorad", "train", str(phantom), "--config", "radiomics_logreg",
                        "--set", "train.select.grid={model.n_ctx: [4, 16]}", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.select.grid: key 'model.n_ctx'" in lines[0], r.stderr
    assert not out.exists()


def test_selection_sees_only_training_rows_and_the_best_inner_score_wins(phantom, tmp_path):
    cfg = load_config("offline", [*TINY, GRID])
    ds = Dataset(phantom)
    table = build_features(ds, cfg)
    rows = np.flatnonzero(table.folds != 0)
    chosen = select_config(Run(tmp_path / "a"), ds, table, rows, cfg, 0)
    rec = json.loads(Run(tmp_path / "a").selection_file(0).read_text())
    scores = [c["score"] for c in rec["candidates"]]
    assert rec["winner"] == int(np.argmin(scores)) and rec["chosen"] == selection_candidates(cfg)[rec["winner"]]
    assert (chosen.model.n_ctx, chosen.train.lr) == (rec["chosen"]["model.n_ctx"], rec["chosen"]["train.lr"])
    assert len(set(scores)) == len(scores)  # the candidates really trained differently
    # the inner split: patient-level, inside the training rows
    (tr, va), = inner_splits(table.subset(rows), cfg, 0)
    assert not set(table.patient_ids[rows[tr]]) & set(table.patient_ids[rows[va]])
    assert rec["inner"]["n_train"] == [len(tr)] and rec["inner"]["n_validation"] == [len(va)]
    # a score is the candidate trained on the inner-training rows, scored on the inner-validation rows
    c = 2
    model = fit_model(candidate_config(cfg, rec["candidates"][c]["overrides"]), table.subset(rows[tr]), None, 0)
    again = log_loss(model.predict_proba(table.subset(rows[va])), table.y[rows[va]])
    assert again == pytest.approx(scores[c], abs=1e-6)
    # scrambling the test fold (labels, radiomics, embeddings, reader targets) changes nothing: it is never seen
    rng = np.random.default_rng(0)
    test = table.folds == 0

    def scrambled(a):
        if a is None or a.dtype.kind not in "fi":
            return a
        b = a.copy()
        b[test] = rng.normal(size=b[test].shape) * 100 if a.dtype.kind == "f" else (b[test] + 1) % 3
        return b

    scr = replace(table, y=scrambled(table.y), radiomics=scrambled(table.radiomics), image=scrambled(table.image),
                  soft=scrambled(table.soft), attributes=scrambled(table.attributes))
    assert not np.array_equal(scr.y[test], table.y[test])
    select_config(Run(tmp_path / "b"), ds, scr, rows, cfg, 0)
    rec_b = json.loads(Run(tmp_path / "b").selection_file(0).read_text())
    assert _without_seconds(rec_b) == _without_seconds(rec)  # same scores to the digit: deterministic too


def test_train_records_each_folds_choice_and_resumes(phantom, tmp_path):
    cfg = load_config("offline", [*TINY, GRID, "train.select.folds=2"])
    run = Run(train(phantom, cfg, tmp_path / "run"))
    metrics = run.read_metrics()
    folds = sorted(int(f) for f in metrics["per_fold"])
    sel = metrics["selection"]
    assert [r["fold"] for r in sel["rows"]] == [*folds, "final"] and sum(sel["outer_fold_wins"]) == len(folds)
    pred = run.read_predictions()
    table = build_features(Dataset(phantom), cfg)
    for fold in [*folds, None]:
        rec = json.loads(run.selection_file(fold).read_text())
        assert len(rec["inner"]["n_validation"]) == 2  # inner 2-fold
        model, meta = run.load_model(fold)  # its checkpoint holds the winner's config (n_ctx may differ from cfg's)
        assert meta["config"]["model"]["n_ctx"] == rec["chosen"]["model.n_ctx"]
        assert meta["config"]["train"]["lr"] == rec["chosen"]["train.lr"]
        if fold is not None:
            te = table.subset(table.folds == fold)
            saved = pred[pred["fold"] == fold].set_index("nodule_id").loc[te.nodule_ids, PROBS].to_numpy()
            assert np.allclose(model.predict_proba(te), saved, atol=1e-6)
    assert "Nested selection" in run.report_file.read_text()
    again = Run(train(phantom, cfg, tmp_path / "run")).read_metrics()  # everything done: loaded, same numbers
    assert again == metrics


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_results_do_not_depend_on_the_executor(executor, phantom, tmp_path):
    if executor == "ray":
        pytest.importorskip("ray")
    grid = ["train.select.grid={model.logreg_c: [0.003, 0.05, 1.0]}"]
    ds = Dataset(phantom)
    records = []
    for name, extra in (("in_process", []), ("tasks", ["train.jobs=2", f"train.executor={executor}"])):
        cfg = load_config("radiomics_logreg", [*grid, *extra])
        table = build_features(ds, cfg)
        select_config(Run(tmp_path / name), ds, table, np.flatnonzero(table.folds != 1), cfg, 1)
        records.append(json.loads(Run(tmp_path / name).selection_file(1).read_text()))
    a, b = records
    assert a["winner"] == b["winner"] and a["chosen"] == b["chosen"]
    assert np.allclose([c["score"] for c in a["candidates"]], [c["score"] for c in b["candidates"]], atol=1e-9)


def test_each_seed_selects_on_its_own(phantom, tmp_path):
    cfg = load_config("offline", [*TINY, "train.epochs=1", "train.select.grid={model.n_ctx: [1, 3]}",
                                  "train.n_seeds=2", "train.seed_ensemble=true"])
    run = Run(train(phantom, cfg, tmp_path / "run"))
    rows = run.read_metrics()["selection"]["rows"]
    assert {r["seed"] for r in rows} == {0, 1} and sum(r["fold"] == "final" for r in rows) == 2
    assert "<th>Seed</th>" in run.report_file.read_text()  # the report's selection table, per seed
    for seed in (0, 1):  # each seed's run is a complete selected run
        assert Run(run.seed_dir(seed)).selection_file(None).is_file()
    model, _ = run.load_model()
    finals = {r["seed"]: r["chosen"]["model.n_ctx"] for r in rows if r["fold"] == "final"}
    assert isinstance(model, SeedEnsemble) and [m.cfg.n_ctx for m in model.members] == [finals[0], finals[1]]


def test_an_ensemble_of_members_with_different_settings_reloads(phantom, tmp_path):
    cfg = load_config("offline", TINY)
    table = build_features(phantom, cfg)
    members = []
    for n_ctx in (1, 3):
        one = candidate_config(load_config("offline", [*TINY, "train.select.grid={model.n_ctx: [1, 3]}"]),
                               {"model.n_ctx": n_ctx})
        members.append(fit_model(one, table, None, -1))
    ens = SeedEnsemble(cfg.model, members)
    save_model(tmp_path / "model", ens, {"config": cfg.model_dump(mode="json")})
    loaded, _ = load_model(tmp_path / "model")
    assert [m.cfg.n_ctx for m in loaded.members] == [1, 3]
    assert np.allclose(loaded.predict_proba(table), ens.predict_proba(table), atol=1e-6)


def test_a_fused_multi_seed_run_refuses_a_grid_over_the_gbm(phantom, tmp_path):
    cfg = load_config("offline", [*TINY, "model.fusion=gbm", "model.fusion_weight=0.5", "train.n_seeds=2",
                                  "train.select.grid={model.gbm_max_iter: [10, 20]}"])
    with pytest.raises(ConfigError, match="key 'model.gbm_max_iter' cannot be selected with model.fusion: gbm"):
        train(phantom, cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
