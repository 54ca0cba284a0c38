"""Built-in models: trained run folders shipped inside the package, reached by name (``autorad predict lidc``).

Every command and API function that takes a RUN folder resolves it with :func:`resolve_run`: an argument that is
exactly a built-in model's name (a string with no path separator) means that model; anything else is a path. A
folder of the same name in the current directory is reached as ``./lidc``. A built-in model is read, never
written: evaluations, reports and tables go to the output folder the user names.

``AUTORAD_BUILTIN_MODELS_DIR`` points the table at another folder holding ``<name>/`` run folders (tests, or
models kept outside the package).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autorad.core.errors import InputError

log = logging.getLogger(__name__)

BUILTIN_DIR_ENV = "AUTORAD_BUILTIN_MODELS_DIR"
DEFAULT_MODEL = "lidc"  # what `autorad serve` serves without a RUN
MODEL_CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: its name, its folder inside the package, and what it is in one line."""

    name: str
    folder: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {m.name: m for m in (
    BuiltinModel("lidc", "lidc", "autorad_quality trained on the LIDC-IDRI dev set (CT crop + PyRadiomics; "
                                 "benign / unsure / malignant)"),
)}


def builtin_root() -> Path:
    """The folder holding the built-in run folders: ``$AUTORAD_BUILTIN_MODELS_DIR`` or this package's folder."""
    override = os.environ.get(BUILTIN_DIR_ENV)
    return Path(override) if override else Path(__file__).parent


def builtin_path(name: str) -> Path:
    """Where the built-in model ``name``'s run folder is (installed or not)."""
    return builtin_root() / BUILTIN_MODELS[name].folder


def is_installed(name: str) -> bool:
    """Whether the built-in model's files are here (its final model's folder)."""
    return (builtin_path(name) / "final" / "model").is_dir()


def is_builtin_name(arg: object) -> bool:
    """Whether ``arg`` names a built-in model: a ``str`` equal to a name, with no path separator (``Path``
    objects are always paths)."""
    return isinstance(arg, str) and arg in BUILTIN_MODELS and not any(s in arg for s in ("/", os.sep))


def builtin_models() -> list[dict[str, Any]]:
    """The built-in models: name, description, whether installed, and cross-validated metrics when recorded.

    Returns:
        One dict per model with keys ``name``, ``description``, ``installed`` (bool), ``path``, ``card`` (whether
        it has a model card) and ``accuracy``, ``unsure_f1``, ``macro_auc`` (None when its metrics.json is absent).
    """
    rows = []
    for name, model in BUILTIN_MODELS.items():
        path = builtin_path(name)
        row: dict[str, Any] = {"name": name, "description": model.description, "installed": is_installed(name),
                               "path": str(path), "card": (path / MODEL_CARD).is_file()}
        row.update(_headline_metrics(path))
        rows.append(row)
    return rows


def _headline_metrics(path: Path) -> dict[str, float | None]:
    out: dict[str, float | None] = {"accuracy": None, "unsure_f1": None, "macro_auc": None}
    try:
        pooled = json.loads((path / "metrics.json").read_text(encoding="utf-8")).get("pooled") or {}
    except (OSError, ValueError, AttributeError):
        return out
    out["accuracy"] = pooled.get("accuracy")
    out["macro_auc"] = pooled.get("macro_auc")
    out["unsure_f1"] = ((pooled.get("per_class") or {}).get("unsure") or {}).get("f1")
    return out


def _not_installed(name: str) -> InputError:
    return InputError(f"the built-in model {name!r} is not installed here (no {builtin_path(name).name}/final/model "
                      "in the package); install a build of autorad that ships it, or give a run folder")


def resolve_run(arg: str | Path) -> Path:
    """The run folder an argument names: a built-in model's folder for its exact name, else the path itself.

    Args:
        arg: a built-in model's name (``"lidc"``; a ``str`` without a path separator) or a run folder's path
            (``"./lidc"`` for a folder of that name in the current directory).

    Returns:
        The run folder's path (not checked further for a path; the caller's loader refuses a folder that is no run).

    Raises:
        InputError: for a built-in name whose files are not installed.
    """
    if not is_builtin_name(arg):
        return Path(arg)
    name = str(arg)
    if not is_installed(name):
        raise _not_installed(name)
    if Path(name).exists():
        log.warning("%s is the built-in model; for the folder of that name here, write ./%s", name, name)
    return builtin_path(name)


def model_card(name: str) -> str:
    """The text of a built-in model's ``MODEL_CARD.md``.

    Args:
        name: a built-in model's name (see :func:`builtin_models`).

    Returns:
        The card's Markdown text.

    Raises:
        InputError: for an unknown name, a model that is not installed, or one without a card.
    """
    if name not in BUILTIN_MODELS:
        raise InputError(f"no built-in model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}")
    if not is_installed(name):
        raise _not_installed(name)
    card = builtin_path(name) / MODEL_CARD
    if not card.is_file():
        raise InputError(f"the built-in model {name!r} has no {MODEL_CARD}")
    return card.read_text(encoding="utf-8")
