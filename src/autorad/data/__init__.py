"""Datasets of nodules: label rules, patient-level folds, crops, ingestion of LIDC sources and the phantom."""

from autorad.data.dataset import Dataset, NoduleRecord, write_dataset

__all__ = ["Dataset", "NoduleRecord", "write_dataset"]
