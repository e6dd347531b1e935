"""Convert dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) to ONNX.

The converter reads dlib's own serialisation with numpy, so building the model
pack never needs dlib (a C++ build) at runtime. What the format looks like,
from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h`` and ``dnn/tensor.h``:

- An integer is a control byte (low nibble: byte count, 0x80: negative) and
  that many little-endian magnitude bytes. A string is its length, then bytes.
  A bool is one ASCII byte, ``'0'`` or ``'1'``.
- A float or double is ``float_details``: an int64 mantissa and an int16
  exponent, each as an integer above; the value is ``mantissa * 2**exponent``.
- A tensor is version 2, then ``num_samples, k, nr, nc``, then raw
  little-endian float32 values (not float_details).
- Wrappers write their version and recurse *before* their own payload, so the
  file holds every wrapper's version from the loss layer inwards, then the
  input layer, then each layer's details from the input outwards.
- Tags, skips and which tag an ``add_prev`` reads are not in the file: they
  come from the network type, ``anet_type`` in ``dnn_face_recognition_ex.cpp``,
  which this module restates as ``ARCHITECTURE``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.model_packs.installed import locate_package_file

logger = logging.getLogger(__name__)

DISTRIBUTION = "face_recognition_models"
MODEL_FILE = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"

# input_rgb_image_sized<150>: pixel (R, G, B) becomes (value - mean) / 256 in
# NCHW float32. The means are stored in the .dat as float32 (122.78199768...)
# and checked against these on conversion.
DLIB_INPUT_SIZE = 150
DLIB_PIXEL_MEAN = [122.782, 117.001, 104.298]
DLIB_PIXEL_STD = [256.0, 256.0, 256.0]
EMBEDDING_DIM = 128

OPSET = 13
IR_VERSION = 8


# ---------------------------------------------------------------- architecture


@dataclass(frozen=True)
class Layer:
    """An ``add_layer``; ``args`` is (filters, kernel, stride) for con, (kernel, stride) for pools."""

    kind: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class Tag:
    id: int


@dataclass(frozen=True)
class Skip:
    id: int


@dataclass(frozen=True)
class AddPrev:
    tag: int


Node = Layer | Tag | Skip | AddPrev


def _block(filters: int, stride: int) -> list[Node]:
    return [
        Layer("affine"),
        Layer("con", (filters, 3, 1)),
        Layer("relu"),
        Layer("affine"),
        Layer("con", (filters, 3, stride)),
    ]


def _ares(filters: int) -> list[Node]:
    return [Layer("relu"), AddPrev(1), *_block(filters, 1), Tag(1)]


def _ares_down(filters: int) -> list[Node]:
    pool = Layer("avg_pool", (2, 2))
    return [Layer("relu"), AddPrev(2), pool, Skip(1), Tag(2), *_block(filters, 2), Tag(1)]


# Outermost first, as the file lists the wrapper versions (loss layer excluded).
ARCHITECTURE: list[Node] = [
    Layer("fc", (EMBEDDING_DIM,)),
    Layer("avg_pool", (0, 1)),  # avg_pool_everything
    *_ares_down(256),
    *_ares(256), *_ares(256), *_ares_down(256),
    *_ares(128), *_ares(128), *_ares_down(128),
    *_ares(64), *_ares(64), *_ares(64), *_ares_down(64),
    *_ares(32), *_ares(32), *_ares(32),
    Layer("max_pool", (3, 2)),
    Layer("relu"),
    Layer("affine"),
    Layer("con", (32, 7, 2)),
]  # fmt: skip


@dataclass
class Parsed:
    """One node of ``ARCHITECTURE`` with the weights read for it."""

    node: Node
    weights: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------- reading


class DlibReader:
    """Sequential reader over dlib's serialisation of one object."""

    def __init__(self, data: bytes, source: Path) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> ModelPackError:
        return ModelPackError(
            f"{self.source} is not the dlib face ResNet this converter knows: {what} at byte {self.pos}",
            {"path": str(self.source), "offset": self.pos},
        )

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("unexpected end of file")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#04x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def expect(self, value: int, what: str) -> None:
        got = self.integer()
        if got != value:
            raise self.fail(f"{what} is {got}, expected {value}")

    def boolean(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        return self.take(self.integer()).decode("ascii", errors="replace")

    def real(self) -> float:
        """A ``float_details``: value = mantissa * 2**exponent, with 32000+ for inf and NaN."""
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:
            raise self.fail("non-finite number")
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        self.expect(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))  # (num_samples, k, nr, nc)
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, ...]:
        self.expect(1, "alias_tensor version")
        return tuple(self.integer() for _ in range(4))  # (num_samples, k, nr, nc)


def _read_window(reader: DlibReader, name: str, kernel: int, stride: int) -> None:
    """The six integers of con_ and the pools; the padding is dlib's default for the stride."""
    padding = kernel // 2 if stride == 1 else 0
    expected = [kernel, kernel, stride, stride, padding, padding]
    got = [reader.integer() for _ in expected]  # nr, nc, stride_y, stride_x, padding_y, padding_x
    if got != expected:
        raise reader.fail(f"{name} window {got}, expected {expected}")


def _read_details(reader: DlibReader, node: Layer) -> dict[str, np.ndarray]:
    """One layer's details object: its version string and, for con/affine/fc, weights."""
    version = reader.string()
    expected = {
        "con": "con_4",
        "affine": "affine_",
        "relu": "relu_",
        "avg_pool": "avg_pool_2",
        "max_pool": "max_pool_2",
        "fc": "fc_2",
    }[node.kind]
    if version != expected:
        raise reader.fail(f"layer {version!r} where {expected!r} belongs")
    if node.kind == "con":
        filters, kernel, stride = node.args
        params = reader.tensor().reshape(-1)
        reader.expect(filters, "con_ filters")
        _read_window(reader, "con_", kernel, stride)
        shape = reader.alias_tensor()  # (filters, k, nr, nc)
        reader.alias_tensor()  # biases: (1, filters, 1, 1)
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        size = int(np.prod(shape))
        if shape[0] != filters or params.size != size + filters:
            raise reader.fail(f"con_ parameters {params.size} do not fit filters {shape}")
        return {"weight": params[:size].reshape(shape), "bias": params[size:]}  # (O, I, kh, kw), (O,)
    if node.kind == "affine":
        params = reader.tensor().reshape(-1)
        gamma, beta = reader.alias_tensor(), reader.alias_tensor()
        if reader.integer() != 0 or gamma != beta or gamma[2:] != (1, 1):
            raise reader.fail("affine_ is not per-channel (CONV_MODE)")
        channels = gamma[1]
        return {"gamma": params[:channels], "beta": params[channels : 2 * channels]}  # (C,), (C,)
    if node.kind in ("avg_pool", "max_pool"):
        kernel, stride = node.args
        _read_window(reader, version, kernel, stride)
        return {}
    if node.kind == "fc":
        reader.expect(node.args[0], "fc_ outputs")
        inputs = reader.integer()
        params = reader.tensor().reshape(-1)
        reader.alias_tensor()  # weights: (inputs, outputs)
        reader.alias_tensor()  # biases: empty without a bias
        reader.expect(1, "fc_ bias mode (FC_NO_BIAS)")
        for _ in range(4):
            reader.real()
        if params.size != inputs * node.args[0]:
            raise reader.fail("fc_ parameters do not fit its sizes")
        return {"weight": params.reshape(inputs, node.args[0])}  # (inputs, 128)
    return {}  # relu_


def _read_add_prev(reader: DlibReader) -> None:
    if reader.string() != "add_prev_":
        raise reader.fail("expected add_prev_")


def parse_dlib_resnet(data: bytes, source: Path) -> list[Parsed]:
    """The network's layers from the input outwards, as ``ARCHITECTURE`` names them."""
    reader = DlibReader(data, source)
    reader.expect(1, "add_loss_layer version")
    if reader.string() != "loss_metric_2":
        raise reader.fail("the loss layer is not loss_metric")
    reader.real()  # margin and distance threshold: used in training only
    reader.real()
    versions = [reader.integer() for _ in ARCHITECTURE]
    if reader.string() != "input_rgb_image_sized":
        raise reader.fail("the input layer is not input_rgb_image_sized")
    means = [reader.real() for _ in range(3)]
    if not np.allclose(means, DLIB_PIXEL_MEAN, atol=1e-4):
        raise reader.fail(f"pixel means {means}, expected {DLIB_PIXEL_MEAN}")
    reader.expect(DLIB_INPUT_SIZE, "input rows")
    reader.expect(DLIB_INPUT_SIZE, "input columns")

    layers: list[Parsed] = []
    innermost = True
    for node, version in reversed(list(zip(ARCHITECTURE, versions, strict=True))):
        if isinstance(node, Tag | Skip):
            if version != 1:
                raise reader.fail(f"tag/skip version {version}")
            layers.append(Parsed(node))
            continue
        if isinstance(node, AddPrev):
            _read_add_prev(reader)
            weights: dict[str, np.ndarray] = {}
        else:
            weights = _read_details(reader, node)
        if version not in ((2, 3) if innermost else (1, 2)):
            raise reader.fail(f"add_layer version {version}")
        for _ in range(3):  # setup called, gradient stale, output disabled
            reader.boolean()
        reader.tensor()  # x_grad and cached_output: training state, empty once cleaned
        reader.tensor()
        if innermost:  # add_layer over the input layer: grad_final, then (v3) sample expansion
            reader.tensor()
            if version >= 3:
                reader.integer()
        elif version >= 2:
            reader.tensor()  # params_grad
        innermost = False
        layers.append(Parsed(node, weights))
    if reader.pos != len(data):
        raise reader.fail(f"{len(data) - reader.pos} unread bytes after the network")
    return layers


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


def build_onnx(layers: list[Parsed]) -> onnx.ModelProto:
    """The ONNX graph for ``layers`` (input first); each affine is folded into its con."""
    graph = GraphBuilder()
    x = "input"
    graph.shapes[x] = (3, DLIB_INPUT_SIZE, DLIB_INPUT_SIZE)
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

    inputs = [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, DLIB_INPUT_SIZE, DLIB_INPUT_SIZE])
    ]
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
    model = build_onnx(parse_dlib_resnet(data, dat_path))
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(model.SerializeToString(deterministic=True))
    log_event(logger, "dlib_resnet_converted", source=dat_path.name, nodes=len(model.graph.node))
