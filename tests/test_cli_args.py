"""Command-line parsing details: values that start with '-', option bounds read from the config models."""

from __future__ import annotations

import pytest

from autorad.apps.cli import _join_dash_values, build_parser


@pytest.mark.parametrize(("argv", "attr", "value"), [
    (["predict", "r", "--dicom", "d", "--center", "-1,360,7"], "center", "-1,360,7"),
    (["ingest", "phantom", "--seed", "-3", "--out", "o"], "seed", -3),
    (["sweep", "ds", "--config", "c", "--param", "x", "--values", "-1", "0", "--out", "o"], "values", ["-1", "0"]),
    (["train", "d", "--config", "c", "--out", "-odd-name"], "out", "-odd-name"),
])
def test_values_starting_with_a_dash(argv, attr, value):
    """A value starting with '-' that is no option is the option's value (argparse alone would say 'expected
    one argument'); negative numbers and multi-value options keep argparse's own handling."""
    p = build_parser()
    assert getattr(p.parse_args(_join_dash_values(p, argv)), attr) == value


def test_a_real_option_is_not_taken_as_a_value(capsys):
    p = build_parser()
    with pytest.raises(SystemExit) as err:
        p.parse_args(_join_dash_values(p, ["ingest", "phantom", "--out", "--overwrite"]))
    assert err.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("autorad: error: autorad ingest: argument --out: expected one argument")
    assert "\n" not in line
