"""The import graph follows the pipeline's layers: no module imports one of a later stage (lazy imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

import autorad

# Bottom to top, as docs/architecture.md draws them. A module belongs to the longest prefix that names it.
LAYERS = [
    "autorad",
    # core: the foundation, in its own order
    *(f"autorad.core.{m}" for m in ("errors", "devices", "strict", "io", "safe_yaml", "paths", "progress",
                                    "thirdparty", "pseudonym", "outputs")),
    "autorad.pretrained", "autorad.samples",
    "autorad.config", "autorad.core.tasks",
    # the pipeline
    "autorad.data", "autorad.radiomics", "autorad.encoders", "autorad.prompts",
    "autorad.evaluate.metrics", "autorad.evaluate.ceiling", "autorad.evaluate.plots", "autorad.evaluate.report",
    "autorad.evaluate.compare",
    "autorad.train", "autorad.evaluate.apply", "autorad.segment",
    # apps
    *(f"autorad.apps.{m}" for m in ("reading", "nodule_input", "predictor", "dicom_out", "predict_report", "predict",
                                    "robustness", "pipeline", "api", "serve", "cli")),
    "autorad.__main__",
]
ALLOWED: set[tuple[str, str]] = set()  # no sanctioned upward import: the model kinds' rules sit above the config


def _layer(module: str) -> int | None:
    """Index of the module's layer (``autorad.apps.predictor`` is its own layer, not part of
    ``autorad.apps.predict``)."""
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


def _module_graph() -> dict[str, set[str]]:
    """Every autorad module -> the autorad modules it imports (lazy and TYPE_CHECKING imports too; a module
    importing its own package or a package its own submodule is no edge)."""
    root = Path(autorad.__file__).parent
    files = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in sorted(root.rglob("*.py"))}

    def owner(name: str) -> str | None:
        while name not in files and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in files else None

    graph: dict[str, set[str]] = {}
    for module, f in files.items():
        targets = {owner(t) for t in _imports(ast.parse(f.read_text(encoding="utf-8")))}
        graph[module] = {t for t in targets if t and t != module and not t.startswith(module + ".")
                         and not module.startswith(t + ".")}
    return graph


def test_the_import_graph_has_no_circle() -> None:
    """No two modules import each other, directly or through others (Tarjan's strongly connected components)."""
    graph = _module_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_the_config_schema_imports_nothing_of_training() -> None:
    """``autorad.config`` validates the schema only; the model kinds' rules are checked above it."""
    assert not {t for t in _module_graph()["autorad.config"] if t.startswith("autorad.train")}
