"""Run many ``autorad`` command lines cheaply: one Python process imports the CLI and its heavy dependencies
once, then forks one child per command line. Each child runs :func:`autorad.cli.main` exactly as the
``autorad`` script does (own process, own stdout/stderr files, real exit code; an uncaught exception prints
its traceback and exits 1 as the interpreter would), so the tests see what a user would see, without paying
the ~5 s of imports per case.

Usage (what :func:`run_batch` does)::

    python cli_batch.py CASES.json     # [{"argv": [...], "stdout": PATH, "stderr": PATH}, ...]
    -> prints one JSON list of exit codes
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ("autorad.cli", "autorad.config", "autorad.train.cv", "autorad.predict", "autorad.data.dicom",
           "autorad.data.ingest", "autorad.evaluate.apply", "autorad.evaluate.report", "autorad.train.kinds",
           "autorad.radiomics.extract", "pydicom", "SimpleITK", "sklearn.linear_model", "torch", "pandas")


@dataclass
class CliResult:
    """What one command line gave: exit code, stdout and stderr text."""

    argv: list[str]
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith("[autorad]")]


def _child(argv: list[str], out: str, err: str) -> None:
    fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fe = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fo, 1)
    os.dup2(fe, 2)
    rc = 1
    try:
        from autorad.cli import main

        sys.argv = ["autorad", *argv]
        rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        rc = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _serve(cases_file: str) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    cases = json.loads(Path(cases_file).read_text())
    codes = []
    for case in cases:  # one at a time: cases may share folders
        pid = os.fork()
        if pid == 0:
            if case.get("cwd"):
                os.chdir(case["cwd"])
            _child(case["argv"], case["stdout"], case["stderr"])
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    print(json.dumps(codes))


def run_batch(argvs: list[list[str]], workdir: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> list[CliResult]:
    """Run each argv as its own forked ``autorad`` process; return their results in order."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [{"argv": [str(a) for a in argv], "stdout": str(workdir / f"case{i}.out"),
              "stderr": str(workdir / f"case{i}.err"), "cwd": str(cwd) if cwd else None}
             for i, argv in enumerate(argvs)]
    spec = workdir / "cases.json"
    spec.write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, __file__, str(spec)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"cli_batch failed: {proc.stderr[-2000:]}")
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return [CliResult(c["argv"], rc, Path(c["stdout"]).read_text(), Path(c["stderr"]).read_text())
            for c, rc in zip(cases, codes, strict=True)]


def run_cli(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> CliResult:
    """Run ``python -m autorad ARGS`` as a plain subprocess (no pre-imports)."""
    argv = [str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "autorad", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd,
                          env={**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


if __name__ == "__main__":
    _serve(sys.argv[1])
