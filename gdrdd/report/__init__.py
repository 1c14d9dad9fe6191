"""The sweep report: ``python -m gdrdd.report <folders...>`` (see ``gdrdd.report.run``)."""
