"""Demo baseline: the same run as lfw_demo_arcface with a plain softmax head (no margin)."""

from training.configs.lfw_demo import lfw_demo_config

CONFIG = lfw_demo_config("lfw-demo-softmax", "softmax")
