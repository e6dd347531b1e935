"""The backbone registry: a name to a factory, so configs name a model instead of importing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from training.models.base import Backbone

BackboneFactory = Callable[..., Backbone]
FactoryT = TypeVar("FactoryT", bound=BackboneFactory)

_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[FactoryT], FactoryT]:
    """Register a factory (a class or function taking keyword arguments) under `name`."""

    def decorator(factory: FactoryT) -> FactoryT:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorator


def create_backbone(name: str, **kwargs: object) -> Backbone:
    """Build the backbone registered as `name`; kwargs include embedding_size, input_size, in_channels."""
    try:
        factory = _BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None
    return factory(**kwargs)


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)
