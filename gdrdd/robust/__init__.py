from gdrdd.robust.grouping import ByClass, Grouping, NearestSynthetic, group_means
from gdrdd.robust.risk import CVaR, RiskMeasure, RiskOutput, SumOverGroups, cvar, cvar_tail_weights

__all__ = ["ByClass", "NearestSynthetic", "Grouping", "group_means", "CVaR", "RiskMeasure", "RiskOutput",
           "SumOverGroups", "cvar", "cvar_tail_weights"]
