"""The ``autorad`` command line. Thin: parse, call the Python API, print.

Every command has a Python twin (see :mod:`autorad.api`). User mistakes end with a one-line
``autorad: error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autorad import __version__
from autorad.data.crop import CROP_FACTOR, CROP_MIN_PX
from autorad.errors import AutoradError


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
    ds = ingest(a.source, a.out, a.path, cfg)
    print(f"dataset written to {ds.path}: {class_count_line(ds.class_counts)}; "
          f"{ds.info['n_patients']} patients, {ds.info['n_skipped']} skipped (see skipped.csv)")
    return 0


def _cmd_radiomics(a: argparse.Namespace) -> int:
    from autorad.config import RadiomicsConfig
    from autorad.radiomics.extract import run_radiomics

    cfg = RadiomicsConfig(params=a.params, mode=a.mode, jobs=a.jobs, executor=a.executor,
                          ray_address=a.address)
    out = run_radiomics(a.dataset, cfg)
    print(f"radiomics written to {out}")
    return 0


def _cmd_encoders(a: argparse.Namespace) -> int:
    from autorad.encoders.registry import list_encoders

    rows = list_encoders()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':28} {'kind':10} {'dim':>5}  {'weights here':12}  source")
    for r in rows:
        print(f"{r['name']:28} {r['kind']:10} {r['dim']:>5}  {r['weights_available']:12}  {r['source']}")
    return 0


def _cmd_embed(a: argparse.Namespace) -> int:
    from autorad.encoders.embed import embed_dataset

    out = embed_dataset(a.dataset, a.encoder, weights=a.weights, batch_size=a.batch_size,
                        executor=a.executor, ray_address=a.address)
    print(f"embeddings written to {out}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from autorad.config import load_config
    from autorad.train.cv import train

    cfg = load_config(a.config, a.set)
    run = train(a.dataset, cfg, a.out)
    print(f"run written to {run}; report: {Path(run) / 'report.html'}")
    return 0


def _cmd_sweep(a: argparse.Namespace) -> int:
    from autorad.train.sweep import sweep

    print(sweep(a.dataset, a.config, a.param, a.values, a.out, overrides=a.set))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from autorad.evaluate.apply import evaluate

    out = evaluate(a.run, a.data, a.out)
    print(f"metrics written to {Path(out) / 'metrics.json'}")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from autorad.evaluate.compare import compare

    table = compare(a.runs, out=a.out)
    print(table)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from autorad.predict import parse_center, predict, predict_batch
    from autorad.predictor import warn_stderr

    if a.nodules is not None:
        single = [o for o, v in (("--mask", a.mask), ("--center", a.center), ("--diameter-mm", a.diameter_mm),
                                 ("--label", a.label), ("--report", a.report), ("--save-mask", a.save_mask),
                                 ("--dicom-seg", a.dicom_seg), ("--dicom-sr", a.dicom_sr)) if v is not None]
        if single or a.disk:
            raise AutoradError(f"--nodules takes the nodules from its CSV; {', '.join(single) or '--disk'} "
                               "belongs to a single prediction")
        if a.out is None:
            raise AutoradError("--nodules needs --out FOLDER for the table and the per-nodule JSON files")
        table = predict_batch(a.run, a.nodules, a.out)
        ok = int((table["error"] == "").sum())
        print(f"{ok} of {len(table)} nodules predicted; table: {Path(a.out) / 'predictions.csv'}")
        for _, row in table[table["error"] != ""].iterrows():
            print(f"autorad: warning: nodule {row['id']}: {row['error']}", file=sys.stderr)
        return 0
    if a.out is not None:
        raise AutoradError("--out is for --nodules; a single prediction prints its JSON (use --report etc.)")
    result = predict(a.run, dicom=a.dicom, image=a.image, mask=a.mask,
                     center=parse_center(a.center) if a.center else None, diameter_mm=a.diameter_mm,
                     label=a.label, disk=a.disk, report=a.report, save_mask=a.save_mask, dicom_seg=a.dicom_seg,
                     dicom_sr=a.dicom_sr)
    warn_stderr(result)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_robustness(a: argparse.Namespace) -> int:
    from autorad.robustness import VARIANTS, robustness
    from autorad.train.cv import log

    variants = tuple(a.variants) if a.variants else VARIANTS
    table = robustness(a.run, a.data, a.out, variants=variants, limit=a.limit, jobs=a.jobs, oof=a.oof, log=log)
    print(table.to_string(index=False))
    print(f"table: {Path(a.out) / 'robustness.csv'} (and .md); figure: {Path(a.out) / 'robustness.png'}")
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from autorad.serve import serve

    serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb, max_volumes=a.max_volumes)
    return 0


def _cmd_run(a: argparse.Namespace) -> int:
    from autorad.pipeline import run

    report = run(a.config, out=a.out, overrides=a.set)
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="autorad", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"autorad {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="build a dataset from LIDC DICOM, the max-slice NPZ or the phantom")
    s.add_argument("source", choices=["lidc", "maxslice", "phantom"])
    s.add_argument("path", nargs="?", help="DICOM root (lidc) or NPZ file (maxslice)")
    s.add_argument("--out", required=True, help="dataset folder to write")
    s.add_argument("--label-rule", choices=["median", "mean"], default="median")
    s.add_argument("--min-readers", type=int, default=3)
    s.add_argument("--folds", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--crop-factor", type=float, default=CROP_FACTOR)
    s.add_argument("--crop-min-px", type=int, default=CROP_MIN_PX)
    s.add_argument("--n", type=int, default=240, help="phantom: number of nodules")
    s.add_argument("--limit", type=int, default=None, help="keep only the first N nodules")
    s.set_defaults(func=_cmd_ingest)

    s = sub.add_parser("radiomics", help="extract PyRadiomics features for every nodule of a dataset")
    s.add_argument("dataset")
    s.add_argument("--params", default="autorad_2d", help="shipped parameter set name or a PyRadiomics YAML")
    s.add_argument("--mode", choices=["2d", "3d"], default="2d")
    s.add_argument("--jobs", type=int, default=1)
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    s.set_defaults(func=_cmd_radiomics)

    s = sub.add_parser("encoders", help="list registered encoders")
    enc = s.add_subparsers(dest="encoders_command", required=True, metavar="ACTION")
    e = enc.add_parser("list", help="print every encoder and whether its real weights are available here")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_encoders)

    s = sub.add_parser("embed", help="compute (and cache) frozen image embeddings for a dataset")
    s.add_argument("dataset")
    s.add_argument("--encoder", required=True)
    s.add_argument("--weights", default=None, help="local path or hub id (default: the registry's source)")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--address", default=None)
    s.set_defaults(func=_cmd_embed)

    s = sub.add_parser("train", help="patient-level cross-validation, then a final model")
    s.add_argument("dataset")
    s.add_argument("--config", required=True, help="YAML config or a shipped config name (autorad_lung)")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("sweep", help="train one config for several values of one parameter and compare")
    s.add_argument("dataset")
    s.add_argument("--config", required=True)
    s.add_argument("--param", required=True, help="dotted key, e.g. model.n_ctx or radiomics.classes")
    s.add_argument("--values", required=True, nargs="+", help="YAML values, e.g. 1 4 16 50 70 or '[shape2D]'")
    s.add_argument("--out", required=True)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    s.set_defaults(func=_cmd_sweep)

    s = sub.add_parser("evaluate", help="apply a run's final model to another dataset")
    s.add_argument("run")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("compare", help="side-by-side metrics of several runs")
    s.add_argument("runs", nargs="+")
    s.add_argument("--out", default=None, help="write the table here (.md and .csv)")
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("predict", help="run a trained model on nodules of new CTs")
    s.add_argument("run")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--dicom", help="folder holding one CT series")
    src.add_argument("--image", help="NIfTI (.nii, .nii.gz) or NRRD volume")
    src.add_argument("--nodules", help="CSV with one nodule per row (columns ct, center or mask; optional id, "
                                       "diameter_mm, label, disk); writes a table and JSON per nodule to --out")
    s.add_argument("--mask", help="nodule mask with the image's geometry (binary, or a label map with --label)")
    s.add_argument("--label", type=int, help="with --mask: the label of the nodule in a label map")
    s.add_argument("--center", help="X,Y,Z voxel indices (column, row, slice in position order) of a click inside "
                                    "the nodule; the nodule is segmented from it")
    s.add_argument("--diameter-mm", type=float, help="with --center: the nodule's size as a hint to the "
                                                      "segmentation (2-100 mm), or the disk's diameter with --disk")
    s.add_argument("--disk", action="store_true", help="with --center and --diameter-mm: use a drawn disk instead "
                                                        "of segmenting (stated as such in every output)")
    s.add_argument("--report", help="write an HTML report here (.html)")
    s.add_argument("--save-mask", help="write the mask used here (.nii.gz / .nii / .nrrd, the CT's geometry)")
    s.add_argument("--dicom-seg", help="with --dicom: write the mask as a DICOM SEG file (.dcm)")
    s.add_argument("--dicom-sr", help="with --dicom: write a DICOM SR measurement report (TID 1500, .dcm)")
    s.add_argument("--out", help="with --nodules: the output folder (new or empty)")
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("robustness", help="evaluate a run with each dataset mask grown, shrunk, replaced by disks "
                                          "or by the click segmentation")
    s.add_argument("run")
    s.add_argument("--data", required=True, help="dataset folder (its stored slices and masks)")
    s.add_argument("--out", required=True, help="output folder (new or empty)")
    s.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="mask variants (default: all: consensus grow1 grow2 shrink1 shrink2 eqdisk longaxis click)")
    s.add_argument("--limit", type=int, default=None, help="only the first N nodules")
    s.add_argument("--jobs", type=int, default=1, help="radiomics processes")
    s.add_argument("--oof", action="store_true", help="DATASET is the run's own: predict each nodule with the fold "
                                                       "model that did not see it (cross-validated), not the final")
    s.set_defaults(func=_cmd_robustness)

    s = sub.add_parser("serve", help="web viewer: open a CT, click a nodule, see the mask and the prediction")
    s.add_argument("run", help="trained run folder (the one holding final/model)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "see docs/viewer.md before exposing it)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-upload-mb", type=int, default=1024, help="largest upload accepted (MB)")
    s.add_argument("--max-volumes", type=int, default=4, help="open volumes kept in memory")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("run", help="the main job: ingest, radiomics, embeddings, cross-validation, report")
    s.add_argument("config", nargs="?", default=None, help="YAML config (default: the offline embedded demo)")
    s.add_argument("--out", default=None, help="override the config's out_dir")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    s.set_defaults(func=_cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autorad`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except AutoradError as err:
        print(f"autorad: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("autorad: interrupted; finished stages are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as err:  # an unexpected failure: one line unless --debug
        if args.debug or os.environ.get("AUTORAD_DEBUG") == "1":
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"autorad: error: unexpected {type(err).__name__}: {first} (rerun with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
