"""Expert trajectories for trajectory matching (MTT): training, the on-disk cache, and lookup by key."""

from gdrdd.experts.cache import ExpertCache

__all__ = ["ExpertCache"]
