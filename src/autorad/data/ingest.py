"""``autorad ingest``: one entry point for every source."""

from __future__ import annotations

from pathlib import Path

from autorad.config import INGEST_SOURCES, DataConfig
from autorad.core.errors import InputError
from autorad.core.outputs import prepare_output_dir
from autorad.data.dataset import Dataset, write_dataset

SOURCES = INGEST_SOURCES


def ingest(source: str, out: str | Path, path: str | Path | None = None, cfg: DataConfig | None = None,
           overwrite: bool = False) -> Dataset:
    """Build a dataset folder at ``out`` from ``source`` (lidc DICOM root, maxslice NPZ, or phantom).

    ``out`` must be new or empty, or (with ``overwrite``) a folder autorad wrote; it is replaced atomically only
    when the ingest succeeds (:func:`autorad.core.outputs.prepare_output_dir`).

    Args:
        source: ``lidc``, ``maxslice`` or ``phantom``.
        out: the dataset folder to write.
        path: the DICOM root (lidc) or NPZ file (maxslice); None for the phantom.
        cfg: labels, crop, folds, limits (default :class:`DataConfig`).
        overwrite: let ``out`` replace an earlier autorad dataset.

    Returns:
        The written :class:`Dataset`.
    """
    prepare_output_dir(out, kind="dataset", inputs=(path,), overwrite=overwrite, create=False)
    cfg = cfg or DataConfig(source=source if source in SOURCES else "phantom")
    common = {"labels": cfg.labels, "crop": cfg.crop, "folds": cfg.folds}
    if source == "maxslice":
        from autorad.data.maxslice import count_maxslice, iter_maxslice, open_maxslice

        if path is None:
            raise InputError("ingest maxslice needs the path of the NPZ file")
        open_maxslice(path)  # validate before starting
        total = count_maxslice(path) if cfg.limit is None else cfg.limit
        return write_dataset(iter_maxslice(path, cfg.limit), out, "lidc-maxslice", total=total, overwrite=overwrite,
                             **common)
    if source == "lidc":
        from autorad.data.lidc import iter_lidc

        if path is None:
            raise InputError("ingest lidc needs the DICOM root folder")
        # the input path is not recorded: a folder named after a patient would leak the name
        return write_dataset(iter_lidc(path, limit=cfg.limit), out, "lidc-dicom", overwrite=overwrite, **common)
    if source == "phantom":
        from autorad.data.phantom import iter_phantom

        return write_dataset(iter_phantom(cfg.phantom_n, cfg.phantom_seed), out, "phantom", total=cfg.phantom_n,
                             extra_info={"phantom_seed": cfg.phantom_seed}, overwrite=overwrite, **common)
    raise InputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
