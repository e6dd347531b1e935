"""Face-embedding backbones behind one registry: `create_backbone("iresnet50", input_size=112)`."""

from training.models import iresnet, lightcnn, mobilefacenet  # noqa: F401  (registers the backbones)
from training.models.base import Backbone
from training.models.registry import create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]
