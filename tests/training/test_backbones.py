"""Every registered backbone: declared shapes, published sizes, trainable end to end, and ONNX-exportable.

What a user notices: a config that names a backbone gets the embedding size and
input size it asked for, every layer learns, and the exported ONNX model gives
the same embeddings in ONNX Runtime as the PyTorch model did in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training.models import Backbone, create_backbone, list_backbones

# name -> (input_size, in_channels, embedding_size, parameters in millions as published)
DEFAULTS = {
    "lightcnn9": (128, 1, 256, 5.5),
    "lightcnn29": (128, 1, 256, 12.6),
    "iresnet18": (112, 3, 512, 24.0),
    "iresnet50": (112, 3, 512, 43.6),
    "mobilefacenet": (112, 3, 128, 0.99),
}


@pytest.fixture(autouse=True, scope="module")
def _two_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def default_backbones() -> dict[str, Backbone]:
    """One eval-mode instance per backbone with default arguments (building iresnet50 is slow)."""
    torch.manual_seed(0)
    return {name: create_backbone(name).eval() for name in DEFAULTS}


def batch_for(backbone: Backbone, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    side = backbone.input_size
    return torch.randn(size, backbone.in_channels, side, side, generator=generator)  # (B, C, S, S)


def test_registry_lists_every_backbone_and_refuses_unknown_names() -> None:
    assert list_backbones() == sorted(DEFAULTS)
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet9000")
    with pytest.raises(ValueError, match="in_channels"):
        create_backbone("lightcnn9", in_channels=2)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_match_the_contract_and_the_published_size(
    name: str, default_backbones: dict[str, Backbone]
) -> None:
    input_size, in_channels, embedding_size, millions = DEFAULTS[name]
    backbone = default_backbones[name]
    assert (backbone.input_size, backbone.in_channels, backbone.embedding_size) == (
        input_size,
        in_channels,
        embedding_size,
    )
    assert backbone.pixel_mean == (127.5,) * in_channels and backbone.pixel_std == (127.5,) * in_channels
    parameters = sum(p.numel() for p in backbone.parameters()) / 1e6
    assert parameters == pytest.approx(millions, rel=0.03)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_forward_gives_the_declared_embedding_without_nans(
    name: str, default_backbones: dict[str, Backbone]
) -> None:
    backbone = default_backbones[name]
    with torch.no_grad():
        embeddings = backbone(batch_for(backbone, 2))
    assert embeddings.shape == (2, backbone.embedding_size)
    assert torch.isfinite(embeddings).all()


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_layer_gets_a_gradient(name: str) -> None:
    # Small crops keep the backward pass quick; which layers are in the graph does not depend on size.
    torch.manual_seed(0)
    backbone = create_backbone(name, input_size=32)
    embeddings = backbone(batch_for(backbone, 2))  # train mode: BN on batch statistics
    embeddings.square().sum().backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters outside the graph: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("lightcnn9", {"input_size": 112, "in_channels": 3, "embedding_size": 128}),
        ("lightcnn29", {"input_size": 96}),
        ("iresnet18", {"input_size": 128, "in_channels": 1}),
        ("mobilefacenet", {"input_size": 128, "embedding_size": 512}),
    ],
)
def test_input_size_and_embedding_size_are_parameters(name: str, kwargs: dict[str, int]) -> None:
    backbone = create_backbone(name, **kwargs).eval()
    for key, value in kwargs.items():
        assert getattr(backbone, key) == value
    with torch.no_grad():
        embeddings = backbone(batch_for(backbone, 2))
    assert embeddings.shape == (2, backbone.embedding_size)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_onnx_export_with_a_dynamic_batch_matches_torch(
    name: str, default_backbones: dict[str, Backbone], tmp_path: Path
) -> None:
    """The exporter settings recorded in notes/training_api.md: dynamo, opset 18, one file."""
    backbone = default_backbones[name]
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        backbone,
        (batch_for(backbone, 2),),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["embedding"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = batch_for(backbone, 3, seed=1)  # a batch size the export never saw
    (onnx_embeddings,) = session.run(None, {"input": images.numpy()})
    with torch.no_grad():
        torch_embeddings = F.normalize(backbone(images), dim=1).numpy()  # (3, D)
    onnx_embeddings = onnx_embeddings / np.linalg.norm(onnx_embeddings, axis=1, keepdims=True)
    assert onnx_embeddings.shape == (3, backbone.embedding_size)
    assert np.abs(onnx_embeddings - torch_embeddings).max() < 1e-4
