"""``autorad_image``: AutoRad+image: context shifted by a MetaNet of the image embedding and the radiomics."""

from __future__ import annotations

from autorad.train.kinds import register_kind
from autorad.train.kinds.prompting import PromptModel


@register_kind("autorad_image")
class AutoRadImage(PromptModel):
    """AutoRad+image: context shifted by a MetaNet of the image embedding and the radiomics."""

    conditioning = ("image", "radiomics")
