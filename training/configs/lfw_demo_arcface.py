"""Demo: LightCNN-9 + ArcFace (s=32, m=0.5) on LFW, 12 minutes of CPU."""

from training.configs.lfw_demo import lfw_demo_config

CONFIG = lfw_demo_config("lfw-demo-arcface", "arcface", {"s": 32.0, "m2": 0.5})
