"""Prompt learners (CoOp, CoCoOp, AutoRad) over frozen text encoders."""

from autorad.prompts.learners import KINDS, PromptLearner, build_prompt_learner
from autorad.prompts.metanet import MetaNet

__all__ = ["KINDS", "MetaNet", "PromptLearner", "build_prompt_learner"]
