"""Typed experiment configs: YAML in, validated, unknown keys rejected.

One :class:`ExperimentConfig` describes a whole run (``autorad run CONFIG``): where the data comes from, how
labels and folds are made, the radiomics settings, the model and the training schedule. Every section has
defaults equal to the paper's settings, so a config only lists what it changes.
"""

from __future__ import annotations

import itertools
import json
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from autorad import CLASS_NAMES
from autorad.core.devices import DEVICE_PATTERN
from autorad.core.errors import ConfigError
from autorad.core.safe_yaml import excerpt, load_yaml_file, load_yaml_text

INGEST_SOURCES = ("lidc", "maxslice", "phantom")  # what `autorad ingest` reads


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
    # options added after run folders existed: {key: (the option that switches it, that option's "off" value)}.
    # While switched off they are left out of the dump, so config.yaml and run fingerprints stay what they were
    # before the option existed, and earlier run folders resume instead of being retrained.
    _later_options: ClassVar[dict[str, tuple[str, Any]]] = {}

    @model_serializer(mode="wrap")
    def _omit_later_options_when_off(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key, (switch, off) in self._later_options.items():
            if getattr(self, switch) == off:
                data.pop(key, None)
        return data


class LabelConfig(_Strict):
    """How the readers' malignancy ratings (1-5) become benign / unsure / malignant."""

    rule: Literal["median", "mean"] = "median"
    min_readers: int = Field(3, ge=1, le=4)


CROP_FACTOR = 2.0  # the crop side is this many times the equivalent diameter (the paper's 2x)
CROP_MIN_PX = 16  # but at least this many pixels


class CropConfig(_Strict):
    """The encoder crop: a square of ``factor`` x equivalent diameter around the nodule, at least ``min_px``."""

    factor: float = Field(CROP_FACTOR, gt=0)
    min_px: int = Field(CROP_MIN_PX, ge=4)


class FoldConfig(_Strict):
    """Patient-level folds, stratified by label."""

    n_folds: int = Field(5, ge=2)
    seed: int = 0


class DataConfig(_Strict):
    """Which source to ingest and how."""

    source: Literal[(*INGEST_SOURCES, "dataset")] = "phantom"  # "dataset": a folder ingested before
    path: str | None = None  # DICOM root, NPZ file or an existing dataset folder; None for phantom
    labels: LabelConfig = LabelConfig()
    crop: CropConfig = CropConfig()
    folds: FoldConfig = FoldConfig()
    phantom_n: int = Field(240, ge=10)  # nodules in the phantom set
    phantom_seed: int = 0
    limit: int | None = Field(None, ge=1)  # keep only the first N nodules (quick runs)


# the masks of every nodule grown and shrunk by one pixel (autorad.data.mask_perturb)
ONE_PIXEL_MASKS = ("grow1", "shrink1")
# radiomics.stability -> the mask perturbations whose radiomics a feature must agree with
STABILITY_MASKS = {"one_pixel": ONE_PIXEL_MASKS}
# radiomics.mask_augment: the mask perturbations whose radiomics training may draw instead of the dataset mask's
AUGMENT_MASKS = ONE_PIXEL_MASKS


class RadiomicsConfig(_Strict):
    """PyRadiomics extraction settings, and the stability-aware feature selection
    (:mod:`autorad.radiomics.stability`)."""

    params: str | None = None  # a shipped parameter set name or a PyRadiomics YAML; None: the mode's own set
    mode: Literal["2d", "3d"] = "2d"
    jobs: int = Field(1, ge=1)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    classes: list[str] | None = None  # subset of feature classes for ablations (e.g. ["glcm", "glrlm"])
    # keep only features whose values agree (Lin's concordance >= min_agreement on the training rows) between the
    # dataset's masks and each mask of STABILITY_MASKS[stability]; costs one extra extraction per perturbation
    stability: Literal["none", "one_pixel"] = "none"
    min_agreement: float = Field(0.9, gt=0, le=1)
    # training-time augmentation of the prompt learners' radiomics input: each epoch, every training nodule reads
    # the radiomics of its own mask or of one of AUGMENT_MASKS (one-pixel grown / shrunk), drawn at random, so the
    # model learns what a boundary change does not alter; prediction reads the given mask's radiomics only. Costs
    # the same extra extractions as stability (shared with it)
    mask_augment: bool = False

    _later_options = {"stability": ("stability", "none"), "min_agreement": ("stability", "none"),
                      "mask_augment": ("mask_augment", False)}


class ModelConfig(_Strict):
    """The classifier: an AutoRad prompt learner or a baseline."""

    kind: str = "autorad"  # a registered model kind (autorad.train.kinds)
    vision_encoder: str = "aimv2-large-patch14-224"
    text_encoder: str = "clip-vit-b16-text"
    vision_weights: str | None = None  # local path or hub id; None = the registry entry's own source
    text_weights: str | None = None
    n_ctx: int = Field(50, ge=1)
    ctx_init: str | None = None  # e.g. "a CT image of a" (its tokens initialise the first context vectors)
    class_names: list[str] = list(CLASS_NAMES)  # the word each class has in the prompts, in CLASS_NAMES order
    metanet_hidden: int | None = None  # None = input_dim // 16 as in CoCoOp
    logit_scale_init: float = Field(4.6052, description="log(100), CLIP's value")
    learn_logit_scale: bool = True
    # dihedral views of the crop (autorad.encoders.views): training draws one per nodule per epoch, prediction
    # averages the probabilities over all of them; 1 = the crop as it is (the paper)
    views: int = Field(1, ge=1, le=8)
    # parameter-efficient adaptation of the image encoder, beyond the paper (frozen in AutoRad): "tail" trains the
    # encoder layers after the feature map that vision_encoder caches (efficientnet-lite0-stage6-map: its last block
    # and head convolution) with the prompt learner, at image_tuning_lr times train.lr; "none": frozen encoder
    image_tuning: Literal["none", "tail"] = "none"
    image_tuning_lr: float = Field(0.1, gt=0)
    _later_options = {"views": ("views", 1), "image_tuning": ("image_tuning", "none"),
                      "image_tuning_lr": ("image_tuning", "none")}
    # late fusion with the radiomics GBM (autorad.train.kinds.fusion): weight of the GBM, or auto (inner validation)
    fusion: Literal["none", "gbm"] = "none"
    fusion_weight: float | Literal["auto"] = 0.5
    # baselines (scikit-learn)
    logreg_c: float = Field(0.05, gt=0)  # inverse L2 strength of the logistic-regression baselines
    gbm_max_iter: int = Field(300, ge=1)
    gbm_learning_rate: float = Field(0.05, gt=0)
    gbm_max_leaf_nodes: int = Field(15, ge=2)
    gbm_max_bins: int = Field(32, ge=2, le=255)  # 32 bins: ~25x faster than 255 on 1,497 features, same accuracy

    @field_validator("class_names")
    @classmethod
    def _three_classes(cls, v: list[str]) -> list[str]:
        if len(v) != len(CLASS_NAMES):
            raise ValueError(f"class_names must list exactly {len(CLASS_NAMES)} names ({', '.join(CLASS_NAMES)} "
                             "order)")
        return v


SELECT_METRICS = ("log_loss", "macro_auc", "accuracy", "macro_f1")  # log_loss: lower is better; others: higher
SELECT_MAX_CANDIDATES = 64  # a bigger grid is refused: every candidate costs a training per inner split and fold


class SelectConfig(_Strict):
    """Nested selection (``train.select``, :mod:`autorad.train.select`): every combination of ``grid`` is trained on
    the inner part of each training fold and scored on its inner validation part; the best is refitted on the
    whole training fold. The test fold is never seen."""

    grid: dict[str, list[Any]]  # dotted config key (as for --set) -> candidate values, e.g. {model.n_ctx: [4, 16]}
    folds: int = Field(1, ge=1, le=10)  # 1: one inner patient-level split; k >= 2: inner k-fold (scores pooled)
    fraction: float = Field(0.2, gt=0, lt=0.5)  # the inner validation share when folds is 1
    metric: Literal[SELECT_METRICS] = "log_loss"


# train keys that organise a run rather than shape what a fold's model learns: never selected by train.select
# train.* keys applied after the models are trained (to the out-of-fold predictions): no model depends on them, so
# fingerprints of trained models and the resume check leave them out
POST_TRAINING_KEYS = ("calibration",)
TRAIN_RUN_KEYS = ("seed", "n_seeds", "seed_ensemble", "executor", "jobs", "ray_address", "device", "final_model",
                  "select", *POST_TRAINING_KEYS)


def learning_keys() -> frozenset[str]:
    """Every ``train.*`` key that changes what a trained model learns (all but :data:`TRAIN_RUN_KEYS`)."""
    return frozenset(f"train.{k}" for k in TrainConfig.model_fields if k not in TRAIN_RUN_KEYS)


class TrainConfig(_Strict):
    """Optimisation schedule (paper: SGD, momentum 0.9, wd 5e-7, lr 1e-4, cosine decay)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-7, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    class_weighting: Literal["none", "balanced"] = "none"
    val_fraction: float = Field(0.0, ge=0, lt=0.5)  # >0: select the best epoch on a patient-level split
    # quality levers of the prompt learners (autorad.train.losses; 0 = the paper's cross-entropy)
    soft_targets: float = Field(0.0, ge=0, le=1)  # weight of the readers' own class distribution in the target
    ordinal_weight: float = Field(0.0, ge=0)  # expected |class distance| penalty (benign < unsure < malignant)
    aux_attributes: float = Field(0.0, ge=0)  # weight of the 8 radiologist attributes as auxiliary targets
    seed: int = 0
    n_seeds: int = Field(1, ge=1)  # train seeds seed .. seed+n_seeds-1 under the same folds (autorad.train.seeds)
    seed_ensemble: bool = False  # with n_seeds > 1: the shipped model and pooled predictions average the seeds
    executor: Literal["local", "ray"] = "local"  # how the seeds run (independent tasks)
    jobs: int = Field(1, ge=1)  # seeds trained at once (local worker processes or Ray CPUs)
    ray_address: str | None = None
    device: str = Field("cpu", pattern=DEVICE_PATTERN)  # embedding, training and prediction
    final_model: bool = True  # also train on all data after cross-validation
    select: SelectConfig | None = None  # choose model/train settings by nested validation (None: off)
    # after cross-validation, fit a temperature on the out-of-fold predictions (autorad.train.calibration); the
    # final model's probabilities are scaled by it. Changes no model: fold and final models are kept on a resume
    calibration: Literal["none", "temperature"] = "none"

    _later_options = {"select": ("select", None), "calibration": ("calibration", "none")}


class ExperimentConfig(_Strict):
    """A whole experiment; ``autorad run CONFIG`` executes it."""

    name: str = "autorad"
    out_dir: str = "runs/default"
    data: DataConfig = DataConfig()
    radiomics: RadiomicsConfig = RadiomicsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _selection_grid(self) -> ExperimentConfig:
        if self.train.select is not None:
            self.train.select.grid = check_selection(self)
        return self


def selection_candidates(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Every combination of ``train.select.grid`` as ``{dotted key: value}``, in grid order (the first key varies
    slowest); empty when selection is off."""
    sel = cfg.train.select
    if sel is None:
        return []
    keys = list(sel.grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(sel.grid[k] for k in keys))]


def candidate_label(overrides: dict[str, Any]) -> str:
    """``model.n_ctx=16 train.lr=0.001``: a candidate as the --set overrides that make it."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())


def candidate_config(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with one candidate's values and selection off: the config a candidate (and the winner) trains with."""
    raw = cfg.model_dump(mode="json")
    raw["train"]["select"] = None
    for key, value in overrides.items():
        raw = set_dotted(raw, key, value)
    return parse_config(raw, source=f"train.select.grid candidate {candidate_label(overrides)}")


def _known_key(dotted: str) -> bool:
    """Whether ``dotted`` names a config option: a field of the config's sections (also the options a default dump
    leaves out while they are off, :attr:`_Strict._later_options`), or a key inside a default value."""
    section: Any = ExperimentConfig
    for part in dotted.split("."):
        fields = getattr(section, "model_fields", None)
        if fields is None or part not in fields:
            break
        section = fields[part].annotation
    else:
        return True
    try:
        get_dotted(ExperimentConfig().model_dump(mode="json"), dotted)
    except KeyError:
        return False
    return True


NOT_SELECTABLE = "it is not a model or training setting that inner validation can choose"


def check_selection(cfg: ExperimentConfig) -> dict[str, list[Any]]:
    """The grid of ``train.select`` with every value as its option validates it (``"1e-3"`` -> 0.001); a ValueError
    naming the option and key, before any training, for an empty grid or value list, an unknown key, too many
    candidates, or a value its option refuses. (Whether ``model.kind`` reads a key is the model kinds' rule:
    :func:`autorad.train.resolve.check_kind_rules`.)"""
    grid = cfg.train.select.grid if cfg.train.select is not None else {}
    if not grid:
        raise ValueError("train.select.grid is empty; give at least one key with its values, e.g. "
                         "{model.n_ctx: [4, 16]}")
    for key, values in grid.items():
        if not values:
            raise ValueError(f"train.select.grid: key '{key}' lists no value")
        run_key = key.startswith("train.") and key.split(".")[1] in TRAIN_RUN_KEYS
        if not run_key and not _known_key(key):
            raise ValueError(f"train.select.grid: unknown config key '{key}'")
        if run_key or not key.startswith(("model.", "train.")):
            raise ValueError(f"train.select.grid: key '{key}' cannot be selected: {NOT_SELECTABLE}")
    n = math.prod(len(v) for v in grid.values())
    if n > SELECT_MAX_CANDIDATES:
        raise ValueError(f"train.select.grid has {n} candidates; at most {SELECT_MAX_CANDIDATES} (each one is "
                         "trained once per inner split and outer fold)")
    if n < 2:
        raise ValueError("train.select.grid has a single candidate; list at least two values to choose among")
    normalised: dict[str, list[Any]] = {}
    for key, values in grid.items():
        normalised[key] = []
        for value in values:
            try:
                one = candidate_config(cfg, {key: value})
            except ConfigError as err:
                raise ValueError(str(err)) from None
            normalised[key].append(get_dotted(one.model_dump(mode="json"), key))
        if len({json.dumps(v, sort_keys=True) for v in normalised[key]}) < len(values):
            raise ValueError(f"train.select.grid: key '{key}' lists a value twice")
    return normalised


def format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if not loc:  # a whole-config rule (e.g. train.select): its message names the option itself
        return f"{source}: {str(first['msg']).removeprefix('Value error, ')}"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'{_key_hint([str(p) for p in first['loc']])}"
    return f"{source}: key '{loc}': {first['msg']} (got {excerpt(first.get('input'))})"


def _section_fields(parts: list[str]) -> list[str] | None:
    """The field names of the config section at ``parts`` (``["model"]`` -> ModelConfig's), None if not one."""
    section: Any = ExperimentConfig
    for part in parts:
        fields = getattr(section, "model_fields", None)
        if fields is None or part not in fields:
            return None
        ann = fields[part].annotation
        models = [a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return None
        section = models[0]
    return list(section.model_fields)


def _key_hint(parts: list[str]) -> str:
    """``; did you mean model.n_ctx?`` for an unknown key, or the valid keys of its section when none is close."""
    *head, last = parts
    fields = _section_fields(head)
    if fields is None:
        return ""
    prefix = ".".join(head) + "." if head else ""
    close = did_you_mean(last, fields)
    if close:
        return f"; did you mean {' or '.join(prefix + c for c in close)}?"
    return f"; valid keys of {'.'.join(head) or 'the top level'}: {', '.join(fields)}"


def parse_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a plain dict against the config schema (unknown keys and wrong types are errors); what the model
    kinds require of it is checked above, by :func:`autorad.train.resolve.config_from_dict`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def _resolve_config_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists() and p.suffix == "" and (shipped := shipped_config_path(str(path))) is not None:
        return shipped
    if p.is_dir():
        raise ConfigError(f"--config {path} is a folder; give a YAML file or a shipped config name")
    if not p.is_file():
        if p.suffix == "" and len(p.parts) == 1:  # meant as a shipped config's name
            close = did_you_mean(str(path), shipped_config_names())
            hint = f"did you mean {' or '.join(close)}?" if close else \
                f"shipped configs: {', '.join(shipped_config_names())}"
            raise ConfigError(f"no config file or shipped config named {path}; {hint} (autorad configs list)")
        raise ConfigError(f"config file not found: {path}")
    return p


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_raw_config(path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """The YAML mapping of a config, with ``extends: OTHER`` resolved (OTHER's keys, overridden by this file's)."""
    p = _resolve_config_path(path)
    raw = load_yaml_file(p) or {}  # bounded: size, aliases, duplicate keys (autorad.core.safe_yaml)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is not None:
        if _depth > 8:
            raise ConfigError(f"{p}: 'extends' chain is too deep (a cycle?)")
        parent_path = Path(parent) if Path(parent).is_absolute() else p.parent / str(parent)
        if not parent_path.exists() and not parent_path.with_suffix(".yaml").exists():
            parent_path = Path(str(parent))
        elif not parent_path.exists():
            parent_path = parent_path.with_suffix(".yaml")
        raw = _deep_merge(load_raw_config(parent_path, _depth + 1), raw)
    return raw


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``raw`` with ``section.key`` set to ``value`` (the one rule for dotted keys: --set, train.select)."""
    raw = dict(raw)
    keys = dotted.strip().split(".")
    node = raw
    for k in keys[:-1]:
        node[k] = dict(node.get(k) or {})
        node = node[k]
    node[keys[-1]] = value
    return raw


def get_dotted(raw: dict[str, Any], dotted: str) -> Any:
    """The value at ``section.key`` of a plain config mapping (KeyError when a part is missing)."""
    node: Any = raw
    for k in dotted.strip().split("."):
        if not isinstance(node, dict):
            raise KeyError(dotted)
        node = node[k]
    return node


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML: numbers, lists, null...)."""
    raw = dict(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        raw = set_dotted(raw, dotted, load_yaml_text(value, f"--set {excerpt(item)}"))
    return raw


def read_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config (None: all defaults), apply ``overrides`` and validate it against the schema
    (:func:`autorad.train.resolve.load_config` adds the model kinds' rules: what users and commands call).

    A bare name (``autorad_lung``) refers to a config shipped with the package (``autorad/configs/*.yaml``).

    Args:
        path: a YAML file, a shipped config's name (``autorad configs list``) or None.
        overrides: ``section.key=value`` strings (values parsed as YAML), as ``--set`` gives them.

    Returns:
        The validated :class:`ExperimentConfig`; a :class:`ConfigError` names an unknown key (with the close
        ones) or a bad value.
    """
    raw = load_raw_config(path) if path is not None else {}
    return parse_config(apply_overrides(raw, overrides), source=str(path or "defaults"))


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_config_path(name: str) -> Path | None:
    """Path of a config shipped inside the package, or None."""
    p = SHIPPED_CONFIGS / f"{name}.yaml"
    return p if p.is_file() and "/" not in name and "\\" not in name else None


def shipped_config_names() -> list[str]:
    """The names of the configs shipped inside the package (what ``--config NAME`` takes), sorted."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def config_description(path: str | Path) -> str:
    """A config's one-line description: the first line of its leading ``#`` comment (the convention of every
    shipped config), or ``""`` when it has none."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("#").strip()
        if text:
            return text
    return ""


def list_configs() -> list[dict[str, str]]:
    """The configs shipped with autorad (``autorad configs list``).

    Returns:
        One ``{"name", "description"}`` dict per config, by name; ``name`` is what ``--config`` takes.
    """
    return [{"name": n, "description": config_description(SHIPPED_CONFIGS / f"{n}.yaml")}
            for n in shipped_config_names()]


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> list[str]:
    """The choices close to a mistyped ``word`` (difflib), best first; possibly none."""
    import difflib

    return difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config (every key, defaults included), for run folders and reports."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
