"""Training package: backbones, margin heads, losses, augmentation, data preparation and ONNX export.

The service never imports this package. Importing it must stay cheap (no torch at
import time), so each submodule imports its own heavy dependencies.
"""
