"""PyRadiomics feature extraction: one nodule (:func:`extract_one`) or a whole dataset (:func:`run_radiomics`).

``run_radiomics`` writes ``DATASET/radiomics.parquet`` (``radiomics_3d.parquet`` for ``mode="3d"``): one row per
nodule in manifest order with ``nodule_id``, ``status`` (``ok`` or why it failed) and one float column per
feature, named exactly as PyRadiomics names it. Results are cached per nodule (see :mod:`autorad.radiomics.cache`)
so a rerun recomputes nothing and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autorad.config import RadiomicsConfig
from autorad.core.errors import ConfigError, InputError
from autorad.core.progress import progress
from autorad.core.tasks import run_tasks
from autorad.core.thirdparty import itk_to_log
from autorad.data.mask_perturb import parse_variant, perturb_mask
from autorad.radiomics.cache import FeatureCache, nodule_key
from autorad.radiomics.quiet import quiet_radiomics, quiet_warnings
from autorad.radiomics.settings import (
    DEFAULT_PARAMS,
    PARAMS_DIR,
    RadiomicsParams,
    load_params,
    pyradiomics_version,
    validate_params,
)
from autorad.radiomics.table import (
    CACHE_SUBDIR,
    check_classes,
    radiomics_path,
    write_radiomics_table,
)

if TYPE_CHECKING:
    from autorad.data.dataset import Dataset

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_NO_VOLUME = "no 3D volume for this nodule"
_MAX_STATUS_CHARS = 300

def _extractor(params: RadiomicsParams) -> Any:
    """PyRadiomics' extractor for ``params``, built once per process."""
    return _extractor_for(params.key, json.dumps(params.settings))  # key order kept: it is the feature order


@cache
def _extractor_for(key: str, settings_json: str) -> Any:
    quiet_radiomics()
    from radiomics import featureextractor

    with quiet_warnings():
        return featureextractor.RadiomicsFeatureExtractor(json.loads(settings_json))


def _spacing_tuple(spacing: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    sp = (float(spacing),) * ndim if np.ndim(spacing) == 0 else tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(sp) != ndim:
        raise ValueError(f"spacing has {len(sp)} values for a {ndim}D image")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be positive and finite, got {sp}")
    return sp


def to_sitk(image: np.ndarray, mask: np.ndarray, spacing: float | Sequence[float], label: int = 1):
    """SimpleITK image (float64) and mask (``label`` inside) with ``spacing`` given in array-axis order.

    ``spacing`` is (row, column) for 2D or (slice, row, column) for 3D, in mm; a single number means isotropic.
    """
    import SimpleITK as sitk  # noqa: N813 (the name every SimpleITK example uses)

    img = np.asarray(image)
    m = np.asarray(mask)
    sp = _spacing_tuple(spacing, img.ndim)
    sitk_img = sitk.GetImageFromArray(img.astype(np.float64))
    sitk_mask = sitk.GetImageFromArray((m != 0).astype(np.uint8) * np.uint8(label))
    sitk_img.SetSpacing(sp[::-1])  # SimpleITK wants (x=column, y=row, z=slice)
    sitk_mask.SetSpacing(sp[::-1])
    return sitk_img, sitk_mask


def _precheck(image: np.ndarray, mask: np.ndarray) -> str | None:
    if image.ndim not in (2, 3):
        return f"error: image must be 2D or 3D, got {image.ndim}D"
    if image.shape != mask.shape:
        return f"error: image shape {image.shape} differs from mask shape {mask.shape}"
    if not np.any(mask):
        return "empty mask"
    if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
        return "non-finite image values"
    return None


def extract_one(image: np.ndarray, mask: np.ndarray, spacing: float | Sequence[float],
                params: str | Path | dict[str, Any] | RadiomicsParams = "autorad_2d",
                ) -> tuple[str, dict[str, float]]:
    """Extract every feature of ``params`` from one nodule; never raises for bad inputs.

    Returns ``(status, features)``: status is ``"ok"``; or ``"non-finite: ..."`` with the features (some NaN or
    inf); or the reason nothing could be extracted (``"empty mask"``, ``"failed: <PyRadiomics' message>"``...)
    with an empty dict. Feature names are PyRadiomics' own (``original_firstorder_Mean``...).
    """
    p = _params_for_call(params)
    image, mask = np.asarray(image), np.asarray(mask)
    bad = _precheck(image, mask)
    if bad is not None:
        return bad, {}
    label = int((p.settings.get("setting") or {}).get("label", 1))
    try:
        sitk_img, sitk_mask = to_sitk(image, mask, spacing, label)
        with quiet_warnings(), itk_to_log():
            result = _extractor(p).execute(sitk_img, sitk_mask, label=label)
    except Exception as err:  # PyRadiomics signals unusable masks with ValueError, filters with others
        msg = " ".join(str(err).split()) or type(err).__name__
        return f"failed: {msg}"[:_MAX_STATUS_CHARS], {}
    features = {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}
    nonfinite = [k for k, v in features.items() if not math.isfinite(v)]
    if nonfinite:
        shown = ", ".join(nonfinite[:3]) + (", ..." if len(nonfinite) > 3 else "")
        return f"non-finite: {len(nonfinite)} features ({shown})"[:_MAX_STATUS_CHARS], features
    return STATUS_OK, features


def _params_for_call(params: str | Path | dict[str, Any] | RadiomicsParams) -> RadiomicsParams:
    """Like :func:`load_params`, remembering files already validated (unchanged since) in this process."""
    if isinstance(params, RadiomicsParams | dict):
        return load_params(params)
    p = Path(params)
    path = p if p.is_file() else PARAMS_DIR / f"{params}.yaml"
    if not path.is_file():
        return load_params(params)  # raises the usual ConfigError
    return _params_from_file(str(params), str(path.resolve()), path.stat().st_mtime_ns)


@cache
def _params_from_file(params: str, resolved: str, mtime_ns: int) -> RadiomicsParams:
    """A parameter file validated once per process and version of the file (``resolved``, ``mtime_ns``: the key)."""
    return load_params(params)


@dataclass
class NoduleTask:
    """One extraction to run (possibly in another process or on a Ray worker)."""

    nodule_id: str
    key: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, ...]
    params: dict[str, Any]


def compute_task(task: NoduleTask) -> tuple[str, str, str, dict[str, float]]:
    """Worker side: ``(nodule_id, key, status, features)``."""
    params = _task_params(task.params)
    status, features = extract_one(task.image, task.mask, task.spacing, params)
    return task.nodule_id, task.key, status, features


def _task_params(settings: dict[str, Any]) -> RadiomicsParams:
    return _params_from_json(json.dumps(settings))  # key order kept: it is the feature order


@cache
def _params_from_json(settings_json: str) -> RadiomicsParams:
    """Parameters sent with a task, validated once per worker process."""
    return load_params(json.loads(settings_json))


RADIOMICS_KEYS = {"2d": ("slice_hu", "slice_mask"), "3d": ("volume_hu", "volume_mask", "volume_spacing_mm")}


def radiomics_inputs(arrays: dict[str, np.ndarray], pixel_spacing_mm: float,
                     mode: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]] | None:
    """What PyRadiomics sees for one nodule's stored arrays (see :func:`autorad.data.geometry.nodule_arrays`):
    the middle slice and its mask at ``pixel_spacing_mm`` (2D), or the padded sub-volume (3D; None without one).
    Dataset extraction and prediction both call this."""
    if mode == "3d":
        if any(k not in arrays for k in RADIOMICS_KEYS["3d"]):
            return None
        spacing = tuple(float(s) for s in arrays["volume_spacing_mm"])
        return arrays["volume_hu"], arrays["volume_mask"], spacing
    s = float(pixel_spacing_mm)
    return arrays["slice_hu"], arrays["slice_mask"], (s, s)


def _nodule_arrays(ds: Dataset, row: Any, mode: str,
                   mask_variant: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]] | None:
    keys = RADIOMICS_KEYS[mode]
    with np.load(ds.path / row["array_file"], allow_pickle=False) as z:
        if mode == "2d" and any(k not in z.files for k in keys):
            raise InputError(f"{row['array_file']}: missing {', '.join(k for k in keys if k not in z.files)}")
        arrays = {k: z[k] for k in keys if k in z.files}
    inputs = radiomics_inputs(arrays, float(row["pixel_spacing_mm"]), mode)
    if inputs is None or mask_variant is None:
        return inputs
    image, mask, spacing = inputs
    return image, perturb_mask(mask, mask_variant), spacing  # same dtype: equal masks share cache entries


def resolve_params(cfg: RadiomicsConfig, validate: bool = True) -> RadiomicsParams:
    """The parameter set a config asks for: ``params``, or without it the shipped set of ``mode``
    (``autorad_2d`` / ``autorad_3d``). The shipped set of the other mode is refused, never swapped silently."""
    other = {m: name for m, name in DEFAULT_PARAMS.items() if m != cfg.mode}
    if cfg.params in other.values():
        raise ConfigError(f"radiomics.params {cfg.params!r} is the shipped {next(iter(other))} parameter set but "
                          f"radiomics.mode is {cfg.mode}; leave params unset (the {cfg.mode} set "
                          f"{DEFAULT_PARAMS[cfg.mode]!r}) or name a {cfg.mode} parameter file")
    return load_params(cfg.params or DEFAULT_PARAMS[cfg.mode], validate=validate)


def run_radiomics(dataset: str | Path, cfg: RadiomicsConfig | None = None, mask_variant: str | None = None) -> Path:
    """Extract features for every nodule of ``dataset`` and write the table; returns its path.

    Cached nodules are read back, the rest are computed with ``cfg.jobs`` local processes or as Ray tasks
    (``cfg.executor="ray"``). ``cfg.classes`` is not applied here: the table always holds every feature of the
    parameter set, and :func:`autorad.radiomics.load_radiomics` selects classes from it.

    ``mask_variant`` (``grow1``, ``shrink1``...; :func:`autorad.data.mask_perturb.perturb_mask`) extracts the same
    features with every nodule's mask changed that way into its own table
    (:func:`~autorad.radiomics.table.radiomics_path`), for the stability-aware selection
    (``radiomics.stability``); the cache is shared, keyed by the mask itself.

    Args:
        dataset: the dataset folder.
        cfg: the radiomics settings (default :class:`RadiomicsConfig`).
        mask_variant: extract with every mask perturbed this way instead (None: the dataset's masks).

    Returns:
        The path of the radiomics table written.
    """
    from autorad.data.dataset import Dataset  # here, not at the top: worker processes never need it

    cfg = cfg or RadiomicsConfig()
    ds_path = Path(dataset)
    if not ds_path.is_dir():
        raise InputError(f"dataset folder not found: {dataset}")
    ds = Dataset(ds_path)
    if mask_variant is not None:
        parse_variant(mask_variant)
    if cfg.classes:
        check_classes(cfg.classes)
    if cfg.ray_address and cfg.executor != "ray":
        raise ConfigError("--address needs --executor ray")
    params = resolve_params(cfg, validate=False)  # validated below, unless every nodule is cached
    cache = FeatureCache(ds.path / CACHE_SUBDIR)
    manifest = ds.manifest
    ids = manifest["nodule_id"].astype(str).tolist()
    started = time.perf_counter()

    # Pass 1: keys and cache hits (only features are kept in memory, never the images).
    keys: dict[str, str] = {}
    done: dict[str, tuple[str, dict[str, float]]] = {}
    for (_, row), nid in zip(manifest.iterrows(), ids, strict=True):
        arrs = _nodule_arrays(ds, row, cfg.mode, mask_variant)
        if arrs is None:
            done[nid] = (STATUS_NO_VOLUME, {})
            continue
        keys[nid] = nodule_key(*arrs, params_key=params.key)
        hit = cache.get(keys[nid])
        if hit is not None:
            done[nid] = hit
    if cfg.mode == "3d" and not keys:
        raise InputError(f"{ds.path}: no nodule has a 3D sub-volume (max-slice sources are 2D only); "
                         "ingest from DICOM (autorad ingest lidc) or use --mode 2d")
    todo = [nid for nid in ids if nid not in done]
    if todo:
        validate_params(params)
    n_hit = len(ids) - len(todo)
    log.info("radiomics%s: %d nodules, %d cached, %d to compute", f" (masks {mask_variant})" if mask_variant else "",
             len(ids), n_hit, len(todo))

    def tasks() -> Iterator[NoduleTask]:
        rows = manifest.set_index(manifest["nodule_id"].astype(str))
        for nid in todo:
            arrs = _nodule_arrays(ds, rows.loc[nid], cfg.mode, mask_variant)
            assert arrs is not None
            yield NoduleTask(nid, keys[nid], arrs[0], arrs[1], arrs[2], params.settings)

    results = run_tasks(compute_task, tasks(), jobs=cfg.jobs, executor=cfg.executor, address=cfg.ray_address)
    desc = f"radiomics {cfg.mode}" + (f" {mask_variant}" if mask_variant else "")
    for nid, key, status, features in progress(results, desc=desc, unit="nodule",
                                               total=len(todo)):
        cache.put(key, status, features)
        done[nid] = (status, features)

    out = radiomics_path(ds.path, cfg.mode, mask_variant)
    meta = {"params": params.name, "params_settings": params.settings, "params_key": params.key,
            "pyradiomics": pyradiomics_version(), "mode": cfg.mode, "n_nodules": len(ids), "n_cached": n_hit,
            "n_computed": len(todo), "executor": cfg.executor, "jobs": cfg.jobs,
            "seconds": round(time.perf_counter() - started, 3)}
    if mask_variant:
        meta["mask_variant"] = mask_variant
    write_radiomics_table(out, ids, [done[nid] for nid in ids], meta)
    return out
