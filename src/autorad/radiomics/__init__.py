"""PyRadiomics features per nodule: extraction (cached, parallel, Ray), the table, and model preprocessing.

Heavy imports (PyRadiomics, SimpleITK, Ray) happen only when extraction runs.
"""

from autorad.radiomics.table import (
    feature_class,
    feature_columns,
    load_radiomics,
    radiomics_path,
    select_feature_columns,
)

__all__ = ["feature_class", "feature_columns", "load_radiomics", "radiomics_path", "select_feature_columns"]
