"""The featurizer lives with the agent's inference path (:mod:`agent.featurizer`):
training imports what devices run, never the reverse. Re-exported here for training code."""

from agent.featurizer import Featurizer, default_spec, reference_features

__all__ = ["Featurizer", "default_spec", "reference_features"]
