"""``cocoop``: CoCoOp (Zhou et al. 2022): context shifted by a MetaNet of the image embedding."""

from __future__ import annotations

from autorad.train.kinds import register_kind
from autorad.train.kinds.prompting import PromptModel


@register_kind("cocoop")
class CoCoOp(PromptModel):
    """CoCoOp (Zhou et al. 2022): context shifted by a MetaNet of the image embedding."""

    conditioning = ("image",)
