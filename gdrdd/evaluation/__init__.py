from gdrdd.evaluation.callback import EvaluationCallback
from gdrdd.evaluation.evaluator import METRICS, Evaluator
from gdrdd.evaluation.tables import comparison_table

__all__ = ["EvaluationCallback", "METRICS", "Evaluator", "comparison_table"]
