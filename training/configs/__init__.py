"""Experiment configs: one module per experiment, each defining `CONFIG: ExperimentConfig`.

`facerec-train train --config <module name>` loads `training.configs.<module name>`.
"""
