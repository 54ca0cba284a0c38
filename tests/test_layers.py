"""The import graph follows the pipeline's layers: no module imports one of a later stage (lazy imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

import autorad

# Bottom to top, as docs/architecture.md draws them. A module belongs to the longest prefix that names it.
LAYERS = [
    "autorad", "autorad.errors", "autorad.devices", "autorad.strict", "autorad.io", "autorad.safe_yaml",
    "autorad.paths", "autorad.progress", "autorad.thirdparty", "autorad.pseudonym", "autorad.outputs",
    "autorad.pretrained", "autorad.samples",
    "autorad.config", "autorad.tasks",
    "autorad.data", "autorad.radiomics", "autorad.encoders", "autorad.prompts",
    "autorad.evaluate.metrics", "autorad.evaluate.ceiling", "autorad.evaluate.plots", "autorad.evaluate.report",
    "autorad.evaluate.compare",
    "autorad.train", "autorad.evaluate.apply", "autorad.segment", "autorad.nodule_input", "autorad.predictor",
    "autorad.dicom_out", "autorad.predict_report", "autorad.predict", "autorad.robustness", "autorad.pipeline",
    "autorad.api", "autorad.serve", "autorad.cli", "autorad.__main__",
]
# The one sanctioned upward lookup: validating ``model.kind`` asks the registry of model kinds (a plugin lookup).
ALLOWED = {("autorad.config", "autorad.train.kinds")}


def _layer(module: str) -> int | None:
    """Index of the module's layer; ``autorad.predictor`` is its own layer, not part of ``autorad.predict``."""
    hits = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    return max(hits, key=lambda i: len(LAYERS[i])) if hits else None


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autorad"):
            # "from autorad.evaluate import plots" imports autorad.evaluate.plots
            out += [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in LAYERS else node.module
                    for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("autorad")]
    return out


def test_no_import_runs_back_up_a_layer() -> None:
    root = Path(autorad.__file__).parent
    upward = []
    for f in sorted(root.rglob("*.py")):
        module = ".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        for target in _imports(ast.parse(f.read_text(encoding="utf-8"))):
            lm, lt = _layer(module), _layer(target)
            if lm is not None and lt is not None and lt > lm and (module, target) not in ALLOWED:
                upward.append(f"{module} imports {target}")
    assert not upward, upward
