"""Convert dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) to ONNX.

``app.model_packs.dlib_reader`` reads the file's layers and weights; this
module checks its input layer against the input the model pack's manifest
declares (``DLIB_INPUT``) and emits the equivalent ONNX graph, each affine
folded into the convolution before it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.model_packs.dlib_reader import (
    EMBEDDING_DIM,
    AddPrev,
    DlibNetwork,
    Layer,
    Parsed,
    Skip,
    Tag,
    parse_dlib_resnet,
)
from app.model_packs.installed import locate_package_file
from app.pipeline.manifest import InputSpec

logger = logging.getLogger(__name__)

DISTRIBUTION = "face_recognition_models"
MODEL_FILE = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"

# input_rgb_image_sized<150>: pixel (R, G, B) becomes (value - mean) / 256 in
# NCHW float32. The means are stored in the .dat as float32 (122.78199768...)
# and checked against these on conversion.
DLIB_INPUT_SIZE: Final = 150
DLIB_PIXEL_MEAN: Final = [122.782, 117.001, 104.298]
DLIB_PIXEL_STD: Final = [256.0, 256.0, 256.0]
# The manifest's input block is written from this, so the converted graph and
# the manifest that says how to feed it cannot disagree.
DLIB_INPUT: Final = InputSpec(
    name="input",
    width=DLIB_INPUT_SIZE,
    height=DLIB_INPUT_SIZE,
    color_order="RGB",
    layout="NCHW",
    mean=DLIB_PIXEL_MEAN,
    std=DLIB_PIXEL_STD,
)

OPSET = 13
IR_VERSION = 8


# ---------------------------------------------------------------- graph


class GraphBuilder:
    """Emits ONNX nodes while tracking each tensor's static (C, H, W)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def emit(self, op: str, inputs: list[str], shape: tuple[int, int, int], **attrs: Any) -> str:
        out = f"t{len(self.nodes)}_{op.lower()}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{len(self.nodes)}_{op}", **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, stride: int) -> str:
        """dlib's con_: cross-correlation, padding kernel//2 only when the stride is 1."""
        _, height, width = self.shapes[x]
        filters, _, kernel, _ = weight.shape
        pad = kernel // 2 if stride == 1 else 0
        size = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
        name = f"conv{len(self.nodes)}"
        w = self.constant(f"{name}.weight", weight.astype(np.float32))
        b = self.constant(f"{name}.bias", bias.astype(np.float32))
        return self.emit(
            "Conv", [x, w, b], (filters, *size),
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
        )  # fmt: skip

    def pool(self, op: str, x: str, kernel: int, stride: int) -> str:
        channels, height, width = self.shapes[x]
        size = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        return self.emit(op, [x], (channels, *size), kernel_shape=[kernel, kernel], strides=[stride, stride])

    def pad_to(self, x: str, shape: tuple[int, int, int]) -> str:
        """Zero-pad channels and spatial ends, as dlib's tt::add treats missing values as 0."""
        grow = [target - have for target, have in zip(shape, self.shapes[x], strict=True)]
        if not any(grow):
            return x
        pads = self.constant(f"pads{len(self.nodes)}", np.array([0, 0, 0, 0, 0, *grow], dtype=np.int64))
        return self.emit("Pad", [x, pads], shape)

    def add(self, a: str, b: str) -> str:
        """add_prev_: the sum has the larger of each dimension (ares_down at 8x8 adds 3x3 to 4x4)."""
        (ca, ha, wa), (cb, hb, wb) = self.shapes[a], self.shapes[b]
        target = (max(ca, cb), max(ha, hb), max(wa, wb))
        return self.emit("Add", [self.pad_to(a, target), self.pad_to(b, target)], target)


def _check_input_layer(network: DlibNetwork, source: Path) -> None:
    """The file's input layer must be the one ``DLIB_INPUT`` describes, or the manifest would mislead."""
    size = (DLIB_INPUT.height, DLIB_INPUT.width)
    if network.input_size != size or not np.allclose(network.pixel_means, DLIB_INPUT.mean, atol=1e-4):
        raise ModelPackError(
            f"{source} is not the dlib face ResNet this converter knows: its input is "
            f"{network.input_size} pixels with means {network.pixel_means}, "
            f"expected {size} and {DLIB_INPUT.mean}",
            {"path": str(source)},
        )


def build_onnx(layers: list[Parsed]) -> onnx.ModelProto:
    """The ONNX graph for ``layers`` (input first); each affine is folded into its con."""
    graph = GraphBuilder()
    x = DLIB_INPUT.name
    graph.shapes[x] = (3, DLIB_INPUT.height, DLIB_INPUT.width)
    tags: dict[int, str] = {}
    index = 0
    while index < len(layers):
        item = layers[index]
        node = item.node
        index += 1
        if isinstance(node, Tag):
            tags[node.id] = x
        elif isinstance(node, Skip):
            x = tags[node.id]
        elif isinstance(node, AddPrev):
            x = graph.add(x, tags[node.tag])
        elif node.kind == "con":
            weight = item.weights["weight"].astype(np.float64)  # (O, I, kh, kw)
            bias = item.weights["bias"].astype(np.float64)  # (O,)
            following = layers[index] if index < len(layers) else None
            if following is None or not isinstance(following.node, Layer) or following.node.kind != "affine":
                raise ModelPackError("dlib ResNet: every con_ must be followed by its affine_")
            gamma = following.weights["gamma"].astype(np.float64)  # (O,)
            beta = following.weights["beta"].astype(np.float64)  # (O,)
            weight, bias = weight * gamma[:, None, None, None], bias * gamma + beta
            index += 1
            x = graph.conv(x, weight, bias, stride=node.args[2])
        elif node.kind == "relu":
            x = graph.emit("Relu", [x], graph.shapes[x])
        elif node.kind == "max_pool":
            x = graph.pool("MaxPool", x, *node.args)
        elif node.kind == "avg_pool" and node.args[0] == 0:
            x = graph.emit("GlobalAveragePool", [x], (graph.shapes[x][0], 1, 1))
        elif node.kind == "avg_pool":
            x = graph.pool("AveragePool", x, *node.args)
        elif node.kind == "fc":
            flat = graph.emit("Flatten", [x], (int(np.prod(graph.shapes[x])), 1, 1), axis=1)  # (N, C*H*W)
            fc_weight = graph.constant("fc.weight", item.weights["weight"])  # (C*H*W, 128)
            graph.nodes.append(helper.make_node("MatMul", [flat, fc_weight], ["embedding"], name="fc"))
        else:
            raise ModelPackError(f"dlib ResNet: unexpected {node.kind} layer")

    input_shape: list[str | int] = ["N", 3, DLIB_INPUT.height, DLIB_INPUT.width]
    inputs = [helper.make_tensor_value_info(DLIB_INPUT.name, TensorProto.FLOAT, input_shape)]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBEDDING_DIM])]
    onnx_graph = helper.make_graph(graph.nodes, "dlib_resnet_v1", inputs, outputs, graph.initializers)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="facerec",
        doc_string=(
            "dlib_face_recognition_resnet_model_v1 converted from its .dat. Input: RGB NCHW 150x150, "
            f"(pixel - {DLIB_PIXEL_MEAN}) / 256. Output: the raw 128-d descriptor, not L2-normalised."
        ),
    )
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- public API


def locate_dlib_model_file() -> Path:
    """The .dat inside the installed ``face_recognition_models`` wheel, found without importing it.

    Its ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships.
    """
    return locate_package_file(DISTRIBUTION, MODEL_FILE)


def convert_dlib_resnet(dat_path: Path, onnx_path: Path) -> None:
    """Write the ONNX equivalent of ``dat_path``; the same input always gives the same bytes."""
    try:
        data = dat_path.read_bytes()
    except OSError as exc:
        raise ModelPackError(f"cannot read {dat_path}: {exc}", {"path": str(dat_path)}) from exc
    network = parse_dlib_resnet(data, dat_path)
    _check_input_layer(network, dat_path)
    model = build_onnx(network.layers)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(model.SerializeToString(deterministic=True))
    log_event(logger, "dlib_resnet_converted", source=dat_path.name, nodes=len(model.graph.node))
