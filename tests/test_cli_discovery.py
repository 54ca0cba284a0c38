"""Finding one's way in the CLI: ``autorad configs list``, the configs named in ``train --help`` and ``run --help``,
"did you mean" for config names and keys, a description for every subcommand, ``--overwrite`` only where it
exists, no empty progress bar when everything is cached."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from autorad.apps.cli import EPILOG, EXIT_CODES, build_parser, main
from autorad.config import list_configs, shipped_config_names


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "autorad") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"{prefix} {name}"] = sub
                out.update(_subcommands(sub, f"{prefix} {name}"))
    return out


def test_configs_list_names_every_shipped_config_with_one_line(capsys):
    rows = list_configs()
    assert [r["name"] for r in rows] == shipped_config_names() and "autorad_quality" in shipped_config_names()
    assert all(r["description"] and len(r["description"]) <= 120 and r["description"][-1] in ".)" for r in rows)
    res = subprocess.run([sys.executable, "-m", "autorad", "configs", "list"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(rows)
    for line, r in zip(lines, rows, strict=True):
        assert line.split()[0] == r["name"] and line.endswith(r["description"])


def test_train_and_run_help_list_the_configs(capsys):
    for command in ("train", "run"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in shipped_config_names():
            assert name in text, (command, name)


@pytest.mark.parametrize(("args", "expected"), [
    (["--config", "autorad_qualty"], "did you mean autorad_quality"),
    (["--config", "zzzz"], "shipped configs: autorad_image,"),
    (["--config", "demo", "--set", "model.n_ctxx=3"], "unknown key 'model.n_ctxx'; did you mean model.n_ctx?"),
    (["--config", "demo", "--set", "train.epoch=3"], "did you mean train.epochs"),
    (["--config", "demo", "--set", "modle.n_ctx=3"], "unknown key 'modle'; did you mean model?"),
    (["--config", "demo", "--set", "model.qqq=3"], "valid keys of model: kind, vision_encoder,"),
])
def test_did_you_mean_for_config_names_and_keys(args, expected, tmp_path, capsys):
    assert main(["train", str(tmp_path), *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autorad: error: ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_every_subcommand_has_a_description_and_overwrite_only_where_it_exists(capsys):
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"autorad models list", "autorad models show", "autorad configs list", "autorad serve"} <= set(commands)
    top = {a.dest: a.help for act in parser._actions if isinstance(act, argparse._SubParsersAction)
           for a in act._choices_actions}
    assert all(top.values()) and set(top) == {c.split()[1] for c in commands}
    for name, sub in commands.items():
        assert sub.description and sub.description.strip(), name
        has = any("--overwrite" in a.option_strings for a in sub._actions)
        assert sub.epilog == (EPILOG if has else EXIT_CODES), name
        assert has or "--overwrite" not in sub.format_help(), name
    assert "--overwrite" not in commands["autorad serve"].format_help()
    assert "--overwrite" in commands["autorad evaluate"].format_help()


def test_no_empty_progress_bar_when_there_is_nothing_to_do(monkeypatch, capsys):
    from autorad.core.progress import progress

    monkeypatch.delenv("AUTORAD_NO_PROGRESS", raising=False)
    assert list(progress([], desc="radiomics 2d")) == []
    assert list(progress(iter(()), desc="radiomics 2d", total=0)) == []
    assert capsys.readouterr().err == ""
    assert list(progress([1, 2], desc="radiomics 2d")) == [1, 2]
    assert "radiomics 2d" in capsys.readouterr().err


def test_a_reader_that_goes_away_is_no_internal_error(tmp_path):
    """``autorad configs list | head -1``: the closed pipe ends the command quietly, no crash log."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "autorad", "configs", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**__import__("os").environ, "XDG_STATE_HOME": str(tmp_path)})
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141), err
    assert "internal error" not in err and "Traceback" not in err, err
