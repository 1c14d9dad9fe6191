from gdrdd.matchers.base import GroupLosses, Matcher
from gdrdd.matchers.dm import DistributionMatcher, embed_classwise
from gdrdd.matchers.gradient import GradientMatcher, gradient_distance, loops_for_ipc

__all__ = ["GroupLosses", "Matcher", "DistributionMatcher", "embed_classwise", "GradientMatcher",
           "gradient_distance", "loops_for_ipc"]
