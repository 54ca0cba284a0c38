"""``autorad``: AutoRad-Lung (the paper): context shifted by a MetaNet of the preprocessed radiomics."""

from __future__ import annotations

from autorad.train.kinds import register_kind
from autorad.train.kinds.prompting import PromptModel


@register_kind("autorad")
class AutoRad(PromptModel):
    """AutoRad-Lung (the paper): context shifted by a MetaNet of the preprocessed radiomics."""

    conditioning = ("radiomics",)
