"""The distillation stage: the LightningModule, multi-formation, coreset starts and its callbacks (checkpoints,
step timer, group statistics, progress). The run itself is a job: ``gdrdd.jobs.distill``."""
