"""The run folder as one object, the pipeline's stages run one at a time, logging flags and ``train.device``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorad.apps.cli import main
from autorad.core.devices import resolve_device
from autorad.core.errors import ConfigError
from autorad.data.dataset import Dataset
from autorad.train.cv import cross_validate, fit_final, write_run_report
from autorad.train.features import build_features, ensure_embeddings, ensure_radiomics
from autorad.train.resolve import load_config
from autorad.train.run import Run

TINY = ["model.vision_encoder=tiny-vit-2d", "model.text_encoder=tiny-text", "model.n_ctx=2", "train.epochs=2",
        "train.lr=0.01"]
NO_GPU = not torch.cuda.is_available()


def test_device_names() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cpu" if NO_GPU else "cuda")
    with pytest.raises(ConfigError, match="train.device"):
        load_config(None, ["train.device=gpu"])
    if NO_GPU:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_error_before_any_work(tmp_path, capsys) -> None:
    rc = main(["train", str(tmp_path / "nowhere"), "--config", "coop", "--out", str(tmp_path / "run"),
               "--set", "train.device=cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [err[0]] and "no CUDA GPU" in err[0] and "train.device" in err[0]
    assert not (tmp_path / "run").exists()
    assert main(["embed", str(tmp_path), "--encoder", "tiny-vit-2d", "--device", "cuda"]) == 2
    assert "--device is 'cuda'" in capsys.readouterr().err and not (tmp_path / "embeddings").exists()


@pytest.mark.shared_data
def test_stages_run_alone_and_the_run_folder_is_one_object(small_maxslice_dataset, tmp_path, capsys) -> None:
    cfg = load_config("radiomics_logreg")
    ds = Dataset(small_maxslice_dataset)
    ensure_radiomics(ds, cfg)
    before = sorted(p.relative_to(ds.path) for p in ds.path.rglob("*"))  # the dataset is shared with other tests
    ensure_embeddings(ds, cfg)  # this kind needs no image: a no-op
    assert sorted(p.relative_to(ds.path) for p in ds.path.rglob("*")) == before
    table = build_features(ds, cfg)
    run = Run(tmp_path / "run")
    predictions = cross_validate(run, ds, table, cfg)
    assert sorted(predictions["nodule_id"]) == sorted(ds.nodule_ids)
    assert not run.model_dir(None).exists() and not run.report_file.exists()  # only what this stage does
    fit_final(run, ds, table, cfg)
    write_run_report(run, cfg, ds, [], 0.0)
    assert run.report_file.is_file() and run.read_info()["model_kind"] == "radiomics_logreg"
    model, meta = run.load_model()
    assert run.model_config(meta).model.kind == "radiomics_logreg"
    assert np.allclose(model.predict_proba(table).sum(axis=1), 1.0)
    folds = sorted(set(table.folds.tolist()))
    assert run.read_predictions(folds[0]).shape[0] == int((table.folds == folds[0]).sum())

    # the CLI: progress on stderr by default and in the run's log.txt, nothing but warnings with --quiet
    out = tmp_path / "cli"
    assert main(["train", str(ds.path), "--config", "radiomics_logreg", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[autorad] fold 0:" in err and "fold 0:" in Run(out).log_file.read_text()
    assert main(["-q", "train", str(ds.path), "--config", "radiomics_logreg", "--out", str(out)]) == 0
    assert "[autorad]" not in capsys.readouterr().err
    assert main(["train", str(ds.path), "--config", "radiomics_logreg", "--out", str(out), "-v"]) == 0
    assert "already done" in capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.parametrize("device", ["auto"] + ([] if NO_GPU else ["cuda"]))
def test_prompt_learner_trains_and_predicts_on_the_configured_device(device, small_maxslice_dataset) -> None:
    from autorad.train.kinds import make_model

    cfg = load_config("offline", ["model.kind=autorad", *TINY, f"train.device={device}"])
    table = build_features(small_maxslice_dataset, cfg)
    train, test = table.subset(table.folds != 0), table.subset(table.folds == 0)
    model = make_model(cfg.model)
    model.fit(train, cfg.train, fold=0)
    want = torch.device(resolve_device(device))
    assert {p.device.type for p in model.learner.parameters()} == {want.type}
    p = model.predict_proba(test)
    assert p.shape == (len(test), 3) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    if want.type != "cpu":  # same seed, same result on the GPU as on the CPU (to float tolerance)
        cpu_cfg = load_config("offline", ["model.kind=autorad", *TINY, "train.device=cpu"])
        reference = make_model(cpu_cfg.model)
        reference.fit(train, cpu_cfg.train, fold=0)
        assert np.allclose(p, reference.predict_proba(test), atol=1e-3)
    moved = model.to("cpu")
    assert {q.device.type for q in moved.learner.parameters()} == {"cpu"}
    assert np.allclose(moved.predict_proba(test), p, atol=1e-5)
