"""The jobs, one layer above the stages: the builder (``build``: config -> a run's objects) and the runs of
``train.py`` and ``evaluate.py`` (``distill``, ``experts``, ``evaluate``) and of ``python -m gdrdd.jobs.coverage``.
They import the stages; no stage imports them (``tests/test_layers.py``)."""
