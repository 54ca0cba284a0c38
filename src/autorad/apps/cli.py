"""autorad: predict whether a lung nodule on CT is benign, unsure or malignant, and train and evaluate such models.

Every command has a Python twin (see :mod:`autorad.apps.api`). A user or environment fault (bad option value, missing
or unreadable file, an output path autorad must not touch, disk full, read-only file system, permission denied)
ends with one ``autorad: error: ...`` line on stderr naming the option or path, and exit code 2. An unexpected
internal error exits 1 with one line pointing at a log file holding the details.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import sys
import traceback
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from autorad import __version__
from autorad.core.errors import AutoradError, describe_os_error
from autorad.core.outputs import add_overwrite_argument
from autorad.samples import sample_names

DESCRIPTION = ("autorad predicts whether a lung nodule on CT is benign, unsure or malignant (AutoRad-Lung), and "
               "trains and evaluates such models on LIDC-IDRI or your own data.")
EXIT_CODES = ("Exit codes: 0 done; 2 a problem with the input, an option or the environment (one line says "
              "which); 1 an unexpected internal error (one line points at a log with the details); 130 interrupted.")
EPILOG = (EXIT_CODES + " autorad never replaces files or folders it did not write; --overwrite replaces its own "
          "earlier output.")  # only for commands that have --overwrite (and the top level)


def _cmd_ingest(a: argparse.Namespace) -> int:
    from autorad.config import CropConfig, DataConfig, FoldConfig, LabelConfig
    from autorad.data.dataset import class_count_line
    from autorad.data.ingest import ingest

    if a.source != "phantom" and a.path is None:
        raise AutoradError(f"ingest {a.source} needs a PATH (DICOM root or NPZ file)")
    cfg = DataConfig(
        source=a.source, path=a.path,
        labels=LabelConfig(rule=a.label_rule, min_readers=a.min_readers),
        crop=CropConfig(factor=a.crop_factor, min_px=a.crop_min_px),
        folds=FoldConfig(n_folds=a.folds, seed=a.seed), phantom_n=a.n, phantom_seed=a.seed, limit=a.limit)
    ds = ingest(a.source, a.out, a.path, cfg, overwrite=a.overwrite)
    print(f"dataset written to {ds.path}: {class_count_line(ds.class_counts)}; "
          f"{ds.info['n_patients']} patients, {ds.info['n_skipped']} skipped (see skipped.csv)")
    return 0


def _cmd_radiomics(a: argparse.Namespace) -> int:
    from autorad.config import RadiomicsConfig
    from autorad.radiomics.extract import run_radiomics

    cfg = RadiomicsConfig(params=a.params, mode=a.mode, jobs=a.jobs, executor=a.executor,
                          ray_address=a.address)
    out = run_radiomics(a.dataset, cfg, mask_variant=a.mask_variant)
    print(f"radiomics written to {out}")
    return 0


def _cmd_encoders(a: argparse.Namespace) -> int:
    from autorad.encoders.registry import list_encoders

    _print_rows(list_encoders(), [("name", 28, "name"), ("kind", 10, "kind"), ("dim", -5, "dim"),
                                  ("weights here", 12, "weights_available"), ("source", 0, "source")], a.json)
    return 0


def _cmd_models_list(a: argparse.Namespace) -> int:
    from autorad.pretrained import builtin_models

    rows = [{k: v for k, v in r.items() if k != "path"} for r in builtin_models()]
    _print_rows(rows, [("name", 10, "name"), ("installed", 9, "installed"), ("accuracy", -8, "accuracy"),
                       ("unsure F1", -9, "unsure_f1"), ("AUC", -6, "macro_auc"), ("description", 0, "description")],
                a.json)
    if not a.json:
        print("(cross-validated on the model's own training data; autorad models show NAME prints its card)",
              file=sys.stderr)
    return 0


def _cmd_models_show(a: argparse.Namespace) -> int:
    from autorad.pretrained import model_card

    print(model_card(a.name), end="")
    return 0


def _cmd_configs_list(a: argparse.Namespace) -> int:
    from autorad.config import list_configs

    rows = list_configs()
    _print_rows(rows, [("", max(len(r["name"]) for r in rows), "name"), ("", 0, "description")], a.json)
    return 0


def _cell(value: Any) -> str:
    """A table cell: ``-`` for a missing number, three decimals for a fraction, yes/no for a flag."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_rows(rows: list[dict[str, Any]], columns: list[tuple[str, int, str]], as_json: bool) -> None:
    """The rows of a ``list`` command as JSON, or as a text table of ``(title, width, key)`` columns (a negative
    width aligns right, 0 is the last, free column; a table whose titles are all empty prints no header)."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return

    def line(cells: list[str]) -> str:
        out = []
        for (_, width, _), text in zip(columns, cells, strict=True):
            out.append(text if width == 0 else f"{text:>{-width}}" if width < 0 else f"{text:{width}}")
        return " ".join(out).rstrip()

    if any(title for title, _, _ in columns):
        print(line([title for title, _, _ in columns]))
    for r in rows:
        print(line([_cell(r[key]) for _, _, key in columns]))


def _cmd_embed(a: argparse.Namespace) -> int:
    from autorad.core.devices import resolve_device
    from autorad.encoders.embed import embed_dataset

    device = resolve_device(a.device, "--device")
    for view in range(a.views):
        out = embed_dataset(a.dataset, a.encoder, weights=a.weights, batch_size=a.batch_size,
                            executor=a.executor, ray_address=a.address, device=device, view=view)
        print(f"embeddings written to {out}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from autorad.train.entry import train
    from autorad.train.resolve import load_config

    cfg = load_config(a.config, a.set)
    run = train(a.dataset, cfg, a.out, overwrite=a.overwrite)
    print(f"run written to {run}; report: {Path(run) / 'report.html'}")
    return 0


def _cmd_sweep(a: argparse.Namespace) -> int:
    from autorad.train.sweep import sweep

    print(sweep(a.dataset, a.config, a.param, a.values, a.out, overrides=a.set, overwrite=a.overwrite))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from autorad.evaluate.apply import evaluate, evaluation_summary

    out = evaluate(a.run, a.data, a.out, overwrite=a.overwrite)
    print(evaluation_summary(out))
    print(f"metrics written to {Path(out) / 'metrics.json'}")
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from autorad.train.calibration import calibrate_run, summary_line

    print(f"{Path(a.run).name}: {summary_line(calibrate_run(a.run))}")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from autorad.evaluate.compare import compare, output_files

    table = compare(a.runs, out=a.out, overwrite=a.overwrite)
    print(table)
    if a.out is not None:
        print("table written to " + " and ".join(str(p) for p in output_files(a.out)), file=sys.stderr)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from autorad.apps.predict import parse_center, predict, predict_batch
    from autorad.apps.predictor import warn_stderr

    if a.nodules is not None:
        single = [o for o, v in (("--mask", a.mask), ("--center", a.center), ("--diameter-mm", a.diameter_mm),
                                 ("--label", a.label), ("--report", a.report), ("--save-mask", a.save_mask),
                                 ("--dicom-seg", a.dicom_seg), ("--dicom-sr", a.dicom_sr)) if v is not None]
        if single or a.disk:
            raise AutoradError(f"--nodules takes the nodules from its CSV; {', '.join(single) or '--disk'} "
                               "belongs to a single prediction")
        if a.out is None:
            raise AutoradError("--nodules needs --out FOLDER for the table and the per-nodule JSON files")
        table = predict_batch(a.run, a.nodules, a.out, overwrite=a.overwrite)
        ok = int((table["error"] == "").sum())
        print(f"{ok} of {len(table)} nodules predicted; table: {Path(a.out) / 'predictions.csv'}")
        for _, row in table[table["error"] != ""].iterrows():
            print(f"autorad: warning: nodule {row['id']}: {row['error']}", file=sys.stderr)
        return 0
    if a.out is not None:
        raise AutoradError("--out is for --nodules; a single prediction prints its JSON (use --report etc.)")
    if a.sample is not None:
        from autorad.samples import get_sample

        if a.mask is not None or a.center is not None:
            raise AutoradError("--sample comes with its nodule's click; give --dicom with --center or --mask instead")
        sample = get_sample(a.sample)
        a.dicom, a.center = str(sample.path), ",".join(str(v) for v in sample.center)
    result = predict(a.run, dicom=a.dicom, image=a.image, mask=a.mask,
                     center=parse_center(a.center) if a.center else None, diameter_mm=a.diameter_mm,
                     label=a.label, disk=a.disk, report=a.report, save_mask=a.save_mask, dicom_seg=a.dicom_seg,
                     dicom_sr=a.dicom_sr, overwrite=a.overwrite)
    warn_stderr(result)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_robustness(a: argparse.Namespace) -> int:
    from autorad.apps.robustness import VARIANTS, log, overlap_line, robustness

    variants = tuple(a.variants) if a.variants else VARIANTS
    table = robustness(a.run, a.data, a.out, variants=variants, limit=a.limit, jobs=a.jobs, oof=a.oof,
                       overwrite=a.overwrite, log=log.info)
    print(table.to_string(index=False))
    print(overlap_line(json.loads((Path(a.out) / "robustness.json").read_text())["training_overlap"], a.oof))
    print(f"table: {Path(a.out) / 'robustness.csv'} (and .md); figure: {Path(a.out) / 'robustness.png'}")
    return 0


def _cmd_segment(a: argparse.Namespace) -> int:
    from autorad.apps.predict import parse_center
    from autorad.segment.command import segment

    print(json.dumps(segment(parse_center(a.center), a.out, dicom=a.dicom, image=a.image,
                             diameter_mm=a.diameter_mm, overwrite=a.overwrite), indent=2))
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from autorad.apps.serve import serve

    serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb, max_volumes=a.max_volumes,
          max_decodes=a.max_decodes, allowed_hosts=tuple(a.allowed_host or ()))
    return 0


def _cmd_run(a: argparse.Namespace) -> int:
    from autorad.apps.pipeline import run

    report = run(a.config, out=a.out, overrides=a.set, overwrite=a.overwrite)
    print(f"report: {report}")
    return 0


def _add_verbosity(p: argparse.ArgumentParser, default: object) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="also print debug messages")
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="print only warnings and errors")


class _LogFormatter(logging.Formatter):
    """``[autorad] message``; warnings and errors say so (``[autorad] warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"[autorad] {prefix}{record.getMessage()}"


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Progress messages of every autorad module go to stderr (stdout stays machine-readable)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("autorad")
    for h in [h for h in logger.handlers if getattr(h, "autorad_cli", False)]:
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    handler.setLevel(level)
    handler.autorad_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    from autorad.core.thirdparty import route_logs

    route_logs()  # Python warnings and PyRadiomics' logging go to this log, not raw onto stderr
    if quiet:
        os.environ["AUTORAD_NO_PROGRESS"] = "1"  # no progress bars either


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``autorad: error: autorad ingest: argument --folds: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"autorad: error: {self.prog}: {message} (see {self.prog} --help)\n")


def bounded(model: Any, field: str, kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a number and checks the bounds declared on ``model.field`` (one home
    for each bound: the config models), so ``--folds 1`` is refused as ``argument --folds: must be >= 2``."""
    import annotated_types as at

    checks: list[tuple[Callable[[Any], bool], str]] = []
    for m in model.model_fields[field].metadata:
        if isinstance(m, at.Ge):
            checks.append((lambda v, b=m.ge: v >= b, f">= {m.ge}"))
        elif isinstance(m, at.Gt):
            checks.append((lambda v, b=m.gt: v > b, f"> {m.gt}"))
        elif isinstance(m, at.Le):
            checks.append((lambda v, b=m.le: v <= b, f"<= {m.le}"))
        elif isinstance(m, at.Lt):
            checks.append((lambda v, b=m.lt: v < b, f"< {m.lt}"))
    return _number(kind, checks)


def config_option(model: Any, field: str, help: str, kind: type | None = None) -> dict[str, Any]:
    """``add_argument`` keywords for an option that sets ``model.field``: its default, its choices (a Literal)
    or its bounds (``kind`` given), and the help text with the default, all read from the config model."""
    info = model.model_fields[field]
    shown = "" if info.default is None else f" (default: {info.default})"
    kw: dict[str, Any] = {"default": info.default, "help": help + shown}
    if typing.get_origin(info.annotation) is typing.Literal:
        kw["choices"] = list(typing.get_args(info.annotation))
    elif kind is not None:
        kw["type"] = bounded(model, field, kind)
    return kw


def positive(kind: type = float) -> Callable[[str], Any]:
    """An argparse ``type`` for a number > 0 (options that have no config field)."""
    return _number(kind, [(lambda v: v > 0, "> 0")])


def _number(kind: type, checks: list[tuple[Callable[[Any], bool], str]]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and value != value:  # NaN
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        failed = [rule for ok, rule in checks if not ok(value)]
        if failed:
            raise argparse.ArgumentTypeError(f"must be {' and '.join(rule for _, rule in checks)} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def diameter_mm(text: str) -> float:
    """``--diameter-mm``: a number of mm within the range :mod:`autorad.apps.nodule_input` accepts."""
    from autorad.apps.nodule_input import DIAMETER_RANGE_MM

    lo, hi = DIAMETER_RANGE_MM
    return _number(float, [(lambda v: v >= lo, f">= {lo:g}"), (lambda v: v <= hi, f"<= {hi:g}")])(text)


RUN_HELP = ("run folder (written by autorad train) or a built-in model's name (lidc; see autorad models list); a "
            "folder of that name here is ./lidc")


def _config_help(lead: str) -> str:
    """The help of a config argument: the shipped configs' names (``autorad configs list`` describes them)."""
    from autorad.config import shipped_config_names

    return f"{lead}: a YAML file or a shipped config ({', '.join(shipped_config_names())}; autorad configs list)"


def _add_ingest(sub: Any) -> None:
    from autorad.config import INGEST_SOURCES, CropConfig, DataConfig, FoldConfig, LabelConfig

    s = sub.add_parser("ingest", help="build a dataset from LIDC DICOM, the max-slice NPZ or the phantom",
                       description="Build a dataset folder (crops, masks, labels, patient-level folds) from LIDC "
                                   "DICOM with reader XML, the LIDC max-slice NPZ, or synthetic phantom nodules.")
    s.add_argument("source", choices=INGEST_SOURCES,
                   help="lidc: DICOM with reader XML; maxslice: the LIDC max-slice NPZ; phantom: synthetic nodules")
    s.add_argument("path", nargs="?", help="DICOM root (lidc) or NPZ file (maxslice)")
    s.add_argument("--out", required=True, help="dataset folder to write (new or empty)")
    s.add_argument("--label-rule", **config_option(LabelConfig, "rule",
                                                   "how the readers' malignancy ratings become a label"))
    s.add_argument("--min-readers", **config_option(LabelConfig, "min_readers",
                                                    "keep nodules rated by at least this many readers, 1-4", int))
    s.add_argument("--folds", **config_option(FoldConfig, "n_folds", "number of patient-level folds, at least 2",
                                              int))
    s.add_argument("--seed", **config_option(FoldConfig, "seed", "seed of the fold assignment and of the phantom",
                                             int))
    s.add_argument("--crop-factor", **config_option(
        CropConfig, "factor", "crop side as a multiple of the nodule's equivalent diameter, > 0", float))
    s.add_argument("--crop-min-px", **config_option(CropConfig, "min_px", "smallest crop side in pixels, at least 4",
                                                    int))
    s.add_argument("--n", **config_option(DataConfig, "phantom_n", "phantom: number of nodules, at least 10", int))
    s.add_argument("--limit", **config_option(
        DataConfig, "limit", "read only the first N nodules of the source, at least 1; nodules that then fail the "
        "--min-readers filter are dropped, so the dataset can hold fewer", int))
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_ingest, outputs={"out": "--out"})


def _add_radiomics(sub: Any) -> None:
    from autorad.config import RadiomicsConfig

    s = sub.add_parser("radiomics", help="extract PyRadiomics features for every nodule of a dataset",
                       description="Extract PyRadiomics features for every nodule of a dataset into the dataset "
                                   "folder (cached per nodule: a rerun extracts only what changed).")
    s.add_argument("dataset", help="dataset folder (written by autorad ingest)")
    s.add_argument("--params", **config_option(RadiomicsConfig, "params", "shipped parameter set name or a "
                                               "PyRadiomics YAML (none: autorad_2d, or autorad_3d with --mode 3d)"))
    s.add_argument("--mode", **config_option(RadiomicsConfig, "mode", "2d: the middle slice; 3d: the sub-volume"))
    s.add_argument("--jobs", **config_option(RadiomicsConfig, "jobs", "parallel worker processes, at least 1", int))
    s.add_argument("--executor", **config_option(RadiomicsConfig, "executor", "where the extractions run"))
    s.add_argument("--address", **config_option(RadiomicsConfig, "ray_address",
                                                "Ray cluster address (none: start a local Ray)"))
    s.add_argument("--mask-variant", default=None, metavar="grow<n>|shrink<n>",
                   help="extract with every mask grown / shrunk by n pixels into its own table "
                        "(radiomics_mask-<variant>.parquet; what radiomics.stability: one_pixel reads: grow1, "
                        "shrink1). Default: the dataset's own masks")
    s.set_defaults(func=_cmd_radiomics, outputs={"dataset": "DATASET"})


def _add_encoders(sub: Any) -> None:
    s = sub.add_parser("encoders", help="list registered encoders")
    enc = s.add_subparsers(dest="encoders_command", required=True, metavar="ACTION")
    e = enc.add_parser("list", help="print every encoder and whether its real weights are available here")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=_cmd_encoders)


def _add_models(sub: Any) -> None:
    s = sub.add_parser("models", help="list the built-in trained models and show their model cards",
                       description="The built-in trained models: every command that takes a RUN folder also takes "
                                   "a built-in model's name (autorad predict lidc ...).")
    act = s.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    e = act.add_parser("list", help="print every built-in model: installed, cross-validated accuracy, unsure F1, "
                                    "macro AUC")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=_cmd_models_list)
    e = act.add_parser("show", help="print a built-in model's model card (data, labels, figures, limits)")
    e.add_argument("name", help="built-in model name (see autorad models list)")
    e.set_defaults(func=_cmd_models_show)


def _add_configs(sub: Any) -> None:
    s = sub.add_parser("configs", help="list the configs shipped with autorad",
                       description="The configs shipped with autorad; train --config NAME and run NAME take their "
                                   "names.")
    act = s.add_subparsers(dest="configs_command", required=True, metavar="ACTION")
    e = act.add_parser("list", help="print every shipped config's name and what it is, in one line")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=_cmd_configs_list)


def _add_embed(sub: Any) -> None:
    from autorad.config import ModelConfig, TrainConfig

    s = sub.add_parser("embed", help="compute (and cache) frozen image embeddings for a dataset")
    s.add_argument("dataset", help="dataset folder (written by autorad ingest)")
    s.add_argument("--encoder", required=True, help="encoder name (see autorad encoders list)")
    s.add_argument("--weights", default=None, help="local weights path (default: the registry's source)")
    s.add_argument("--batch-size", type=positive(int), default=32, help="images per batch, at least 1")
    s.add_argument("--device", **config_option(TrainConfig, "device", "cpu, cuda, cuda:N or auto (the local "
                                               "executor; Ray workers use their CPU)"))
    s.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="embed in this process or as Ray tasks (default: local)")
    s.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    s.add_argument("--views", **config_option(ModelConfig, "views", "embed dihedral views 0..N-1 of every crop, as "
                                              "model.views does", int))
    s.set_defaults(func=_cmd_embed, outputs={"dataset": "DATASET"})


def _add_train(sub: Any) -> None:
    s = sub.add_parser("train", help="patient-level cross-validation, then a final model",
                       description="Cross-validate a model on a dataset's folds, train a final model on all "
                                   "nodules, and write metrics and an HTML report. Rerunning the same command "
                                   "resumes an interrupted run.")
    s.add_argument("dataset", help="dataset folder (written by autorad ingest)")
    s.add_argument("--config", required=True, help=_config_help("the config"))
    s.add_argument("--out", required=True, help="run folder (new, empty, or an earlier run of the same config to "
                                                "resume)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_train, outputs={"out": "--out"})


def _add_sweep(sub: Any) -> None:
    s = sub.add_parser("sweep", help="train one config for several values of one parameter and compare",
                       description="Train one config for several values of one parameter under the same folds and "
                                   "compare their cross-validated results. Picking a value from that table picks on "
                                   "the test folds; to choose a setting, use train.select (nested validation inside "
                                   "the training folds, docs/training.md).")
    s.add_argument("dataset", help="dataset folder (written by autorad ingest)")
    s.add_argument("--config", required=True, help=_config_help("the config"))
    s.add_argument("--param", required=True, help="dotted key, e.g. model.n_ctx or radiomics.classes")
    s.add_argument("--values", required=True, nargs="+", help="YAML values, e.g. 1 4 16 50 70 or '[shape2D]'")
    s.add_argument("--out", required=True, help="sweep folder: one run per value, compare.md and compare.csv")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_sweep, outputs={"out": "--out"})


def _add_evaluate(sub: Any) -> None:
    s = sub.add_parser("evaluate", help="apply a run's final model to another dataset",
                       description="Apply a trained run's final model (or a built-in model) to every nodule of a "
                                   "dataset; write metrics, predictions and a report to a new folder.")
    s.add_argument("run", help=RUN_HELP)
    s.add_argument("--data", required=True, help="dataset folder to evaluate on")
    s.add_argument("--out", required=True, help="new folder for metrics, predictions and the report "
                                                "(never inside the run or the dataset)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_evaluate, outputs={"out": "--out"})


def _add_calibrate(sub: Any) -> None:
    s = sub.add_parser("calibrate", help="fit a temperature to a finished run's out-of-fold predictions; the final "
                                         "model's probabilities are scaled by it (docs/training.md)")
    s.add_argument("run", help="run folder (written by autorad train); metrics.json, figures/ and the report are "
                               "updated, no model is retrained")
    s.set_defaults(func=_cmd_calibrate, outputs={"run": "RUN"})


def _add_compare(sub: Any) -> None:
    s = sub.add_parser("compare", help="side-by-side metrics of several runs",
                       description="A Markdown table of several runs' (or evaluations') metrics, the best of each "
                                   "column in bold.")
    s.add_argument("runs", nargs="+", help="run or evaluation folders, or built-in model names (lidc)")
    s.add_argument("--out", default=None, help="also write the table as OUT.md and OUT.csv (a .md or .csv suffix "
                                               "is dropped first)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_compare, outputs={"out": "--out"})


def _add_predict(sub: Any) -> None:
    s = sub.add_parser("predict", help="run a trained model on nodules of new CTs (docs/predict.md)",
                       description="Predict benign / unsure / malignant for a nodule of a new CT (a DICOM series or "
                                   "a NIfTI/NRRD volume), given as a mask or a click; or for every nodule of a CSV. "
                                   "See docs/predict.md.")
    s.add_argument("run", help=RUN_HELP)
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--dicom", help="folder holding one CT series")
    src.add_argument("--image", help="NIfTI (.nii, .nii.gz) or NRRD volume")
    src.add_argument("--nodules", help="CSV with one nodule per row (columns ct, center or mask; optional id, "
                                       "diameter_mm, label, disk); writes a table and JSON per nodule to --out")
    src.add_argument("--sample", help="a CT that ships with autorad, predicted at its nodule (the click comes with "
                                      "it): " + ", ".join(sample_names()))
    s.add_argument("--mask", help="nodule mask with the image's geometry (binary, or a label map with --label)")
    s.add_argument("--label", type=int, help="with --mask: the label of the nodule in a label map")
    s.add_argument("--center", help="X,Y,Z voxel indices (column, row, slice in position order) of a click inside "
                                    "the nodule; the nodule is segmented from it")
    s.add_argument("--diameter-mm", type=diameter_mm, help="with --center: the nodule's size as a hint to the "
                                                            "segmentation (2-100 mm), or the disk's diameter with "
                                                            "--disk")
    s.add_argument("--disk", action="store_true", help="with --center and --diameter-mm: use a drawn disk instead "
                                                        "of segmenting (stated as such in every output)")
    s.add_argument("--report", help="write an HTML report here (.html)")
    s.add_argument("--save-mask", help="write the mask used here (.nii.gz / .nii / .nrrd, the CT's geometry)")
    s.add_argument("--dicom-seg", help="with --dicom: write the mask as a DICOM SEG file (.dcm)")
    s.add_argument("--dicom-sr", help="with --dicom: write a DICOM SR measurement report (TID 1500, .dcm)")
    s.add_argument("--out", help="with --nodules: the output folder (new or empty)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_predict, outputs={"report": "--report", "save_mask": "--save-mask",
                                               "dicom_seg": "--dicom-seg", "dicom_sr": "--dicom-sr", "out": "--out"})


def _add_robustness(sub: Any) -> None:
    s = sub.add_parser("robustness", help="evaluate a run with each dataset mask grown, shrunk, replaced by disks "
                                          "or by the click segmentation")
    s.add_argument("run", help=RUN_HELP)
    s.add_argument("--data", required=True, help="dataset folder (its stored slices and masks)")
    s.add_argument("--out", required=True, help="output folder (new or empty)")
    s.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="mask variants (default: all: consensus grow1 grow2 shrink1 shrink2 eqdisk longaxis click)")
    s.add_argument("--limit", type=positive(int), default=None, help="only the first N nodules")
    s.add_argument("--jobs", type=positive(int), default=1, help="radiomics processes")
    s.add_argument("--oof", action="store_true", help="DATASET is the run's own: predict each nodule with the fold "
                                                       "model that did not see it (cross-validated), not the final")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_robustness, outputs={"out": "--out"})


def _add_segment(sub: Any) -> None:
    s = sub.add_parser("segment", help="segment one nodule of a CT from a click; write the mask as NIfTI",
                       description="Segment the nodule under a click (a seed voxel) in 3D with the shipped click "
                                   "segmenter and write the mask with the CT's geometry. See docs/segmentation.md.")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--dicom", help="folder holding one CT series")
    src.add_argument("--image", help="NIfTI (.nii, .nii.gz) or NRRD volume")
    s.add_argument("--center", required=True, help="X,Y,Z voxel indices (column, row, slice in position order)")
    s.add_argument("--diameter-mm", type=diameter_mm, help="optional hint: the nodule's diameter, 2-100 mm")
    s.add_argument("--out", required=True, help="mask file to write (.nii.gz, .nii or .nrrd)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_segment, outputs={"out": "--out"})


def _add_serve(sub: Any) -> None:
    from autorad.pretrained import DEFAULT_MODEL

    s = sub.add_parser("serve", help="web viewer: open a CT, click a nodule, see the mask and the prediction",
                       description="A local web viewer: open a CT, scroll, click a nodule, see the mask and the "
                                   "prediction, download the report. See docs/viewer.md.")
    s.add_argument("run", nargs="?", default=DEFAULT_MODEL,
                   help=f"{RUN_HELP} (default: the built-in {DEFAULT_MODEL})")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "see docs/viewer.md before exposing it)")
    s.add_argument("--port", type=int, default=8000, help="TCP port, 1-65535 (default: 8000)")
    s.add_argument("--max-upload-mb", type=positive(int), default=1024, help="largest upload accepted (MB)")
    s.add_argument("--max-volumes", type=positive(int), default=4, help="open volumes kept in memory")
    s.add_argument("--max-decodes", type=positive(int), default=2, help="uploads decoded at the same time; others "
                   "wait (default: 2)")
    s.add_argument("--allowed-host", action="append", metavar="NAME", help="a host name or address the browser may "
                   "use to reach the server, besides localhost, 127.0.0.1, [::1] and --host (repeatable); requests "
                   "naming any other host are refused (a defence against DNS rebinding)")
    s.set_defaults(func=_cmd_serve)


def _add_run(sub: Any) -> None:
    s = sub.add_parser("run", help="the main job: ingest, radiomics, embeddings, cross-validation, report")
    s.add_argument("config", nargs="?", default=None,
                   help=_config_help("the config (default: demo, the offline embedded demo)"))
    s.add_argument("--out", default=None, help="output folder (default: the config's out_dir under the current "
                                               "folder); rerunning resumes")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    add_overwrite_argument(s)
    s.set_defaults(func=_cmd_run, outputs={"out": "--out"})


COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_ingest, _add_radiomics, _add_encoders, _add_embed, _add_train, _add_sweep, _add_evaluate, _add_calibrate,
    _add_compare, _add_predict, _add_robustness, _add_segment, _add_serve, _add_models, _add_configs, _add_run)


def _finish(parser: argparse.ArgumentParser) -> None:
    """Every subcommand (nested ones too): a description (its help line, when it has none), -v / -q after its name,
    and the epilog, which names --overwrite only where the command has it."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, command in action.choices.items():
            if command.description is None and helps.get(name):
                line = str(helps[name])
                command.description = line[0].upper() + line[1:] + "."
            has_overwrite = any("--overwrite" in a.option_strings for a in command._actions)
            command.epilog = EPILOG if has_overwrite else EXIT_CODES
            _add_verbosity(command, argparse.SUPPRESS)
            _finish(command)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand (one ``_add_<command>`` function each)."""
    p = _Parser(prog="autorad", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"autorad {__version__}")
    p.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error here")
    _add_verbosity(p, False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    _finish(p)
    return p


NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # what argparse itself already takes as a value


def _join_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--center -1,360,7`` -> ``--center=-1,360,7``: argparse would take a value starting with '-' for an
    option and say "expected one argument"; a value that is no known option is joined to its option."""
    known: set[str] = set()
    takes_value: set[str] = set()
    parsers = [parser]
    while parsers:
        ps = parsers.pop()
        for action in ps._actions:
            known.update(action.option_strings)
            if action.option_strings and action.nargs is None:  # exactly one value
                takes_value.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if tok in takes_value and nxt.startswith("-") and nxt != "--" and not NEGATIVE_NUMBER.match(nxt) \
                and nxt.split("=", 1)[0] not in known:
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _output_options(args: argparse.Namespace) -> dict[str, str]:
    """``{"--out": value, ...}`` for the output options of the command (to name them in error lines)."""
    return {label: str(getattr(args, name)) for name, label in getattr(args, "outputs", {}).items()
            if getattr(args, name, None)}


LOG_HOLDS = ("This log holds: the autorad version; the command line with every value replaced (<path> for paths, "
             "<value> for other text; option names, numbers and fixed choices kept); the Python traceback of the "
             "error with those values replaced wherever they appear. Nothing else is recorded.")
KEPT_VALUE = re.compile(r"^[-+]?[\d.,eE+-]+$|^(true|false|none|null|auto)$", re.IGNORECASE)  # numbers, flags


def redacted_argv(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> tuple[list[str], list[str]]:
    """``argv`` with every value that may be a path or a name replaced, and the values replaced (for scrubbing
    other texts). Kept: option names, the command names, numbers and the values of fixed choices."""
    parser = parser or build_parser()
    keep: set[str] = set()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            keep.update(action.option_strings)
            if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
                keep.update(str(c) for c in action.choices)
            if isinstance(action, argparse._SubParsersAction):
                keep.update(action.choices)
                parsers.extend(action.choices.values())
    shown, hidden = [], []

    def value(v: str) -> str:
        if v in keep or KEPT_VALUE.match(v):
            return v
        hidden.append(v)
        return "<path>" if ("/" in v or "\\" in v or "." in v or os.path.exists(v)) else "<value>"

    for tok in argv:
        if tok in keep:
            shown.append(tok)
        elif tok.startswith("-") and "=" in tok and tok.split("=", 1)[0] in keep:
            opt, v = tok.split("=", 1)
            shown.append(f"{opt}={value(v)}")
        elif "=" in tok and not tok.startswith(("/", ".")):  # --set key=value: the key is a config key
            key, v = tok.split("=", 1)
            shown.append(f"{key}={value(v)}")
        else:
            shown.append(value(tok))
    return shown, hidden


def scrub(text: str, values: Sequence[str]) -> str:
    """``text`` with each of ``values``, its absolute and resolved forms and its path parts (those not in
    autorad's own install path) replaced by ``<path>``."""
    own = set(Path(__file__).resolve().parts)
    needles: set[str] = set()
    for v in values:
        if not v:
            continue
        needles.add(v)
        for form in (Path(v), Path(os.path.abspath(v)), Path(v).resolve()):
            needles.add(str(form))
            needles.update(part for part in form.parts if part not in own and part not in (os.sep, ".", ".."))
    for n in sorted(needles, key=len, reverse=True):  # whole words only: "run" is kept inside "return"
        text = re.sub(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", "<path>", text)
    return text


def _log_unexpected(args: argparse.Namespace | None) -> Path | None:
    """Write the traceback of an unexpected error to a log file in autorad's state folder; its path or None.
    The command line and the traceback are kept without the values given (:func:`redacted_argv`)."""
    from autorad.core.paths import state_dir

    try:
        logs = state_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = logs / f"error-{stamp}-{os.getpid()}.log"
        shown, hidden = redacted_argv(sys.argv[1:] if sys.argv else [])
        path.write_text(f"autorad {__version__}\n{LOG_HOLDS}\ncommand: autorad {' '.join(shown)}\n\n"
                        f"{scrub(traceback.format_exc(), hidden)}", encoding="utf-8")
        return path
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autorad`` command."""
    parser = build_parser()
    args = parser.parse_args(_join_dash_values(parser, list(sys.argv[1:] if argv is None else argv)))
    configure_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except AutoradError as err:
        print(f"autorad: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("autorad: interrupted; finished stages are kept and a rerun resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`autorad configs list | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except ValidationError as err:  # a value the options did not check (they should): still the user's value
        from autorad.config import format_validation_error

        print(f"autorad: error: {_one_line(format_validation_error(err, args.command))}", file=sys.stderr)
        return 2
    except OSError as err:
        line = describe_os_error(err, _output_options(args))
        if line is None:
            return _unexpected(err, args)
        print(f"autorad: error: {_one_line(line)}", file=sys.stderr)
        return 2
    except Exception as err:  # an unexpected failure: one line and a log unless --debug
        return _unexpected(err, args)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _unexpected(err: Exception, args: argparse.Namespace) -> int:
    if args.debug or os.environ.get("AUTORAD_DEBUG") == "1":
        raise err
    first = _one_line(str(err).splitlines()[0] if str(err) else "", 200)
    log = _log_unexpected(args)
    where = f"details in {log}" if log else "rerun with --debug for details"
    print(f"autorad: error: unexpected internal error ({type(err).__name__}: {first}); {where}; please report it",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
