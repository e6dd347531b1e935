"""A tiny ONNX graph with SCRFD's signature whose outputs encode known faces.

No SCRFD weights are available offline, so this graph stands in for one: the
nine outputs of an InsightFace SCRFD (scores, box distances and landmark
offsets for strides 8, 16 and 32, two anchors per cell, rank-2 outputs like
det_10g's), any input size. It "detects" colour: a stride-32 cell whose
network input is pure red scores ~1 (a large face), a stride-16 cell pure
green (a small face); every box and landmark offset is a constant. So a
test knows exactly which box and points insightface's decoding must return,
and where. It checks decoding and adaptation, not detection quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.pipeline.geometry import ARCFACE_112

STRIDES = (8, 16, 32)
ANCHORS = 2
INPUT_NAME = "input.1"
# The network sees RGB (insightface swaps OpenCV's BGR): channel 0 red, 1 green.
CHANNEL_FOR_STRIDE = {16: 1, 32: 0}
# Box distances (left, top, right, bottom) from the anchor point, in strides.
BOX_IN_STRIDES = {8: 1.0, 16: 1.0, 32: 2.0}


@dataclass(frozen=True)
class EncodedFace:
    """Where a face the graph reports lands in the network's input pixels."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) in arcface_dst's order


def landmark_offsets(stride: int) -> np.ndarray:
    """(5, 2) landmark offsets from the anchor, in strides: the ArcFace template filling the box."""
    side = 2 * BOX_IN_STRIDES[stride]  # the box's side, in strides
    return (ARCFACE_112 - 56.0) * (side / 112.0)  # (5, 2)


def encoded_face(stride: int, anchor_xy: tuple[float, float]) -> EncodedFace:
    """The face the graph reports at the anchor point ``anchor_xy`` (input pixels) of ``stride``."""
    anchor = np.asarray(anchor_xy, np.float32)
    half = BOX_IN_STRIDES[stride] * stride
    box = np.array([anchor[0] - half, anchor[1] - half, anchor[0] + half, anchor[1] + half], np.float32)
    return EncodedFace(box, (anchor + landmark_offsets(stride) * stride).astype(np.float32))


def write_scrfd_graph(path: Path) -> Path:
    nodes: list[onnx.NodeProto] = []
    initialisers = [
        numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_channel"),
    ]
    outputs: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        s = str(stride)
        channel = CHANNEL_FOR_STRIDE.get(stride, 0)
        initialisers += [
            numpy_helper.from_array(np.array([channel], np.int64), f"start_{s}"),
            numpy_helper.from_array(np.array([channel + 1], np.int64), f"end_{s}"),
            numpy_helper.from_array(np.full((1, 4), BOX_IN_STRIDES[stride], np.float32), f"box_{s}"),
            numpy_helper.from_array(landmark_offsets(stride).reshape(1, 10).astype(np.float32), f"marks_{s}"),
        ]
        nodes += [
            helper.make_node("Slice", [INPUT_NAME, f"start_{s}", f"end_{s}", "axis_channel"], [f"plane_{s}"]),
            helper.make_node(
                "AveragePool",
                [f"plane_{s}"],
                [f"pooled_{s}"],
                kernel_shape=[stride, stride],
                strides=[stride, stride],
            ),  # (1, 1, H/s, W/s): the cell's mean, about 1 where the colour fills it
            helper.make_node("Relu", [f"pooled_{s}"], [f"lit_{s}"]),
        ]
        if stride not in CHANNEL_FOR_STRIDE:  # no faces at this stride
            nodes.append(helper.make_node("Mul", [f"lit_{s}", "zero"], [f"level_{s}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"lit_{s}"], [f"level_{s}"]))
        nodes += [
            helper.make_node("Transpose", [f"level_{s}"], [f"cells_{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"cells_{s}", "column"], [f"cell_scores_{s}"]),  # (h*w, 1)
            helper.make_node("Concat", [f"cell_scores_{s}"] * ANCHORS, [f"pairs_{s}"], axis=1),  # (h*w, 2)
            helper.make_node("Reshape", [f"pairs_{s}", "column"], [f"score_{s}"]),  # (h*w*2, 1)
            helper.make_node("Mul", [f"score_{s}", "zero"], [f"nothing_{s}"]),
            helper.make_node("Add", [f"nothing_{s}", f"box_{s}"], [f"bbox_{s}"]),  # (h*w*2, 4)
            helper.make_node("Add", [f"nothing_{s}", f"marks_{s}"], [f"kps_{s}"]),  # (h*w*2, 10)
        ]
        for kind in outputs:
            outputs[kind].append(f"{kind}_{s}")
    widths = {"score": 1, "bbox": 4, "kps": 10}
    graph = helper.make_graph(
        nodes,
        "scrfd_stand_in",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "height", "width"])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n_{name}", widths[kind]])
            for kind in ("score", "bbox", "kps")
            for name in outputs[kind]
        ],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
