"""The distillation stage: the LightningModule, its callbacks (checkpoints, step timer, group statistics), and
the run (``gdrdd.distill.run``)."""
