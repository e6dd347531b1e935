"""Read dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) into layers and weights.

Read with numpy, so building the model pack never needs dlib (a C++ build);
``app.model_packs.dlib_resnet`` turns the layers into ONNX. What the format
looks like, from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h`` and
``dnn/tensor.h``:

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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.errors import ModelPackError

EMBEDDING_DIM = 128


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


@dataclass(frozen=True)
class DlibNetwork:
    """What the file holds: its input layer's settings and its layers from the input outwards."""

    input_size: tuple[int, int]  # rows, columns
    pixel_means: list[float]  # R, G, B, as stored (float32 precision)
    layers: list[Parsed]


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


def parse_dlib_resnet(data: bytes, source: Path) -> DlibNetwork:
    """The network in ``data``, its layers as ``ARCHITECTURE`` names them; the caller checks its input."""
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
    input_size = (reader.integer(), reader.integer())

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
    return DlibNetwork(input_size, means, layers)
