"""``coop``: CoOp (Zhou et al. 2022): learned context vectors shared by every nodule."""

from __future__ import annotations

from autorad.train.kinds import register_kind
from autorad.train.kinds.prompting import PromptModel


@register_kind("coop")
class CoOp(PromptModel):
    """CoOp (Zhou et al. 2022): learned context vectors shared by every nodule."""

    conditioning = ()
