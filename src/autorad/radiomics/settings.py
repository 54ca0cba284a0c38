"""PyRadiomics parameter sets: the shipped ones (``params/*.yaml``) or a user's YAML, validated once.

A :class:`RadiomicsParams` carries the parsed settings and a hash of them plus the PyRadiomics version; that
hash is part of every cache key, so changing a parameter (or upgrading PyRadiomics) recomputes everything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from autorad.core.errors import ConfigError, MissingDependencyError
from autorad.core.io import hash_json

PARAMS_DIR = Path(__file__).parent / "params"
DEFAULT_PARAMS = {"2d": "autorad_2d", "3d": "autorad_3d"}
# Bump when the way autorad turns arrays into SimpleITK images changes (invalidates every cache entry).
EXTRACTION_VERSION = 1


def shipped_params() -> list[str]:
    """Names of the parameter files shipped with autorad."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def pyradiomics_version() -> str:
    """The installed PyRadiomics version, read from package metadata (importing it costs ~1 s)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("pyradiomics-bhklab", "pyradiomics"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    import radiomics

    return str(radiomics.__version__).lstrip("v")


@dataclass(frozen=True)
class RadiomicsParams:
    """A validated PyRadiomics parameter set."""

    name: str  # shipped name or the file's path
    settings: dict[str, Any]  # the parsed YAML (imageType, featureClass, setting, ...)

    @cached_property
    def key(self) -> str:
        """Hash of the settings, the PyRadiomics version and autorad's extraction version."""
        return hash_json({"settings": self.settings, "pyradiomics": pyradiomics_version(),
                          "autorad_extraction": EXTRACTION_VERSION})

    @property
    def image_types(self) -> dict[str, Any]:
        return dict(self.settings.get("imageType") or {"Original": {}})

    @property
    def feature_classes(self) -> list[str]:
        return list((self.settings.get("featureClass") or {}).keys())


def load_params(params: str | Path | dict[str, Any] | RadiomicsParams = "autorad_2d",
                validate: bool = True) -> RadiomicsParams:
    """Resolve a shipped name, a YAML path or a dict into validated :class:`RadiomicsParams`.

    ``validate=False`` skips PyRadiomics' schema check and the dependency check (about 0.4 s); call
    :func:`validate_params` before extracting anything with the result.

    Raises :class:`ConfigError` for an unknown name, unreadable YAML or settings PyRadiomics rejects, and
    :class:`MissingDependencyError` when an enabled filter needs a package that is absent (LBP2D: scikit-image;
    PyRadiomics would otherwise silently drop its 93 features).
    """
    if isinstance(params, RadiomicsParams):
        return params
    if isinstance(params, dict):
        name, raw = "custom", params
    else:
        p = Path(params)
        if not p.is_file() and p.suffix == "" and (PARAMS_DIR / f"{params}.yaml").is_file():
            p = PARAMS_DIR / f"{params}.yaml"
            name = str(params)
        else:
            name = str(p)
        if not p.is_file():
            raise ConfigError(f"radiomics parameter file not found: {params} "
                              f"(shipped: {', '.join(shipped_params())})")
        from autorad.core.safe_yaml import load_yaml_file

        raw = load_yaml_file(p) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"radiomics parameters {name}: expected a mapping at the top level")
    p = RadiomicsParams(name=name, settings=json.loads(json.dumps(raw)))
    if validate:
        validate_params(p)
    return p


def validate_params(params: RadiomicsParams) -> None:
    """PyRadiomics' schema check and the dependency check (:class:`ConfigError`, :class:`MissingDependencyError`)."""
    _validate(dict(params.settings), params.name)
    check_dependencies(params.settings)


def _validate(raw: dict[str, Any], name: str) -> None:
    """Let PyRadiomics' own schema check the settings (unknown keys, wrong types)."""
    from autorad.radiomics.quiet import quiet_radiomics, quiet_warnings

    quiet_radiomics()
    from radiomics import featureextractor

    try:
        with quiet_warnings():
            featureextractor.RadiomicsFeatureExtractor(dict(raw))
    except Exception as err:  # pykwalify raises its own SchemaError; report any rejection the same way
        msg = " ".join(str(err).split())[:300]
        raise ConfigError(f"radiomics parameters {name} rejected by PyRadiomics: {msg}") from None


def check_dependencies(raw: dict[str, Any]) -> None:
    """Fail when an enabled image type needs a package that is not installed."""
    image_types = raw.get("imageType") or {}
    if "LBP2D" in image_types:
        try:
            from skimage.feature import local_binary_pattern  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "the LBP2D filter needs scikit-image (pip install scikit-image); without it PyRadiomics "
                "silently drops its 93 features") from None
    if "LBP3D" in image_types:
        try:
            import scipy  # noqa: F401
            import trimesh  # noqa: F401
        except ImportError:
            raise MissingDependencyError("the LBP3D filter needs scipy and trimesh (pip install trimesh)") from None
