from gdrdd.evaluation.callback import EvaluationCallback
from gdrdd.evaluation.evaluator import METRICS, Evaluator
from gdrdd.evaluation.report import comparison_table
from gdrdd.evaluation.training import TrainSettings, predict, train_network

__all__ = ["EvaluationCallback", "METRICS", "Evaluator", "comparison_table", "TrainSettings", "predict", "train_network"]
