"""``method=random``: no distillation; a random real subset of IPC images per class is scored like a distilled
set (the baseline every distilled set is compared with)."""

from gdrdd.matchers.registry import Method, MethodConfig, register

register(Method("random", MethodConfig, build=None))
