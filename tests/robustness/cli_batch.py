"""Run many ``autorad`` command lines cheaply: one Python process imports the CLI and its heavy dependencies
once, then forks one child per command line. Each child runs :func:`autorad.apps.cli.main` exactly as the
``autorad`` script does (own process, own stdout/stderr files, real exit code; an uncaught exception prints
its traceback and exits 1 as the interpreter would), so the tests see what a user would see, without paying
the ~5 s of imports per case.

Usage (what :func:`run_batch` does)::

    python cli_batch.py CASES.json     # [{"argv": [...], "stdout": PATH, "stderr": PATH}, ...]
    -> prints {"codes": [...], "seconds": [...], "max_rss_kb": [...]} (one entry per case)

A case may also name ``cwd`` (the child's working folder), ``env`` (variables set in the child),
``unprivileged`` (as root, the child drops to user ``nobody`` first, so file permissions apply as they do to a
normal user), ``appear`` (``{"when": "module:function", "path": P, "folder": bool, "text": T}``: just before
that function runs, the file P, or the folder P holding mine.txt, is created with T: stands in for another
program writing there while autorad works) and ``inject`` (``"module:function"`` replaced in the child by one
that raises ``RuntimeError("injected fault")``: stands in for a bug, to test how unexpected errors are
reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ("autorad.apps.cli", "autorad.config", "autorad.train.entry", "autorad.apps.predict", "autorad.data.dicom",
           "autorad.data.ingest", "autorad.evaluate.apply", "autorad.evaluate.report", "autorad.train.kinds",
           "autorad.radiomics.extract", "pydicom", "SimpleITK", "sklearn.linear_model", "torch", "pandas",
           "autorad.apps.predictor", "autorad.segment", "autorad.segment.unet", "radiomics.featureextractor",
           "logging.config", "jinja2")


@dataclass
class CliResult:
    """What one command line gave: exit code, stdout and stderr text."""

    argv: list[str]
    rc: int
    out: str
    err: str
    seconds: float = 0.0  # wall time of the child (batch runs only)
    max_rss_kb: int = 0  # the child's peak resident memory in KiB (batch runs only)

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith("[autorad]")]

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.err and "Traceback" not in self.out, self.err

    def refusal_line(self, *words: str) -> str:
        """Exit 2 and exactly one ``autorad: error:`` line holding every word (case-insensitive), no traceback;
        the line."""
        self.assert_no_traceback()
        assert self.rc == 2, (self.rc, self.err)
        lines = self.err_lines
        assert len(lines) == 1 and lines[0].startswith("autorad: error: "), self.err
        for w in words:
            assert str(w).lower() in lines[0].lower(), (w, lines[0])
        return lines[0]


def _child(case: dict) -> None:
    argv = case["argv"]
    fo = os.open(case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fe = os.open(case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fo, 1)
    os.dup2(fe, 2)
    rc = 1
    try:
        _setup_child(case)  # after the output files are open: an unprivileged child could not open them
        from autorad.apps.cli import main

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


def _setup_child(case: dict) -> None:
    import importlib

    os.environ.update(case.get("env") or {})
    if case.get("unprivileged") and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    if case.get("cwd"):
        os.chdir(case["cwd"])
    if case.get("inject"):
        module, name = case["inject"].split(":")

        def fault(*args, **kwargs):
            raise RuntimeError("injected fault")

        setattr(importlib.import_module(module), name, fault)
    if case.get("appear"):  # something appears at a path while the command works (after its up-front checks)
        spec = case["appear"]
        module, name = spec["when"].split(":")
        mod = importlib.import_module(module)
        original = getattr(mod, name)

        def appear_first(*args, **kwargs):
            target = Path(spec["path"])
            if spec.get("folder"):
                target.mkdir(parents=True, exist_ok=True)
                (target / "mine.txt").write_text(spec.get("text", "mine"))
            else:
                target.write_text(spec.get("text", "mine"))
            return original(*args, **kwargs)

        setattr(mod, name, appear_first)


def _serve(cases_file: str) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    cases = json.loads(Path(cases_file).read_text())
    codes, seconds, max_rss_kb = [], [], []
    for case in cases:  # one at a time: cases may share folders
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(case)
        _, status, usage = os.wait4(pid, 0)
        seconds.append(round(time.perf_counter() - t0, 3))
        max_rss_kb.append(usage.ru_maxrss)  # the child's peak resident memory (its copy of the preloads included)
        codes.append(os.waitstatus_to_exitcode(status))
    print(json.dumps({"codes": codes, "seconds": seconds, "max_rss_kb": max_rss_kb}))


def run_batch(argvs: list[list[str] | dict], workdir: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> list[CliResult]:
    """Run each argv as its own forked ``autorad`` process; return their results in order. An item may be a dict
    ``{"argv": [...], "cwd": ..., "env": {...}, "unprivileged": bool, "inject": "module:function", "appear": ...}``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = []
    for i, item in enumerate(argvs):
        one = item if isinstance(item, dict) else {"argv": item}
        case_cwd = one.get("cwd", cwd)
        cases.append({**one, "argv": [str(a) for a in one["argv"]], "stdout": str(workdir / f"case{i}.out"),
                      "stderr": str(workdir / f"case{i}.err"), "cwd": str(case_cwd) if case_cwd else None})
    spec = workdir / "cases.json"
    spec.write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, __file__, str(spec)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"cli_batch failed: {proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    results = [CliResult(c["argv"], rc, Path(c["stdout"]).read_text(), Path(c["stderr"]).read_text(), sec, rss)
               for c, rc, sec, rss in zip(cases, got["codes"], got["seconds"], got["max_rss_kb"], strict=True)]
    _record(results, [bool(c.get("inject")) for c in cases])
    return results


def _record(results: list[CliResult], injected: list[bool] | None = None) -> None:
    """With $AUTORAD_CLI_CASE_LOG set (docs/scripts/make_reliability.py sets it), append one JSON line per
    command line run: the command, exit code, whether a traceback was printed, seconds."""
    log = os.environ.get("AUTORAD_CLI_CASE_LOG")
    if not log:
        return
    with open(log, "a", encoding="utf-8") as f:
        for r, fault in zip(results, injected or [False] * len(results), strict=True):
            command = "--help" if "--help" in r.argv else r.argv[0] if r.argv else ""
            f.write(json.dumps({"command": command, "rc": r.rc, "seconds": r.seconds,
                                "injected_fault": fault,
                                "traceback": "Traceback" in r.err or "Traceback" in r.out}) + "\n")


def run_cli(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> CliResult:
    """Run ``python -m autorad ARGS`` as a plain subprocess (no pre-imports)."""
    argv = [str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "autorad", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd,
                          env={**os.environ, "AUTORAD_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    result = CliResult(argv, proc.returncode, proc.stdout, proc.stderr)
    _record([result])
    return result


if __name__ == "__main__":
    _serve(sys.argv[1])
