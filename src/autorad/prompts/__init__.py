"""Prompt learning over frozen encoders (the maths); which learner a model kind uses lives in autorad.train.kinds."""

from autorad.prompts.learners import CONDITIONING_INPUTS, PromptLearner
from autorad.prompts.metanet import MetaNet

__all__ = ["CONDITIONING_INPUTS", "MetaNet", "PromptLearner"]
