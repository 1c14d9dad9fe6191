from gdrdd.matchers.base import GroupLosses, Matcher
from gdrdd.matchers.dm import DistributionMatcher, embed_classwise

__all__ = ["GroupLosses", "Matcher", "DistributionMatcher", "embed_classwise"]
