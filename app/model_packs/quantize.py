"""int8 versions of the default models: ONNX Runtime's static quantisation, from ranges kept here.

Static quantisation needs the range of every activation, measured by running
the fp32 model on representative inputs. Those inputs are faces, which a
user's machine need not have, so the ranges were measured once on LFW by
``tools/calibrate_int8.py`` and are kept beside this file
(``calibration/<model>.int8.json``, in ONNX Runtime's own calibration-cache
format, plus a ``facerec`` block saying what they were measured on). The
build hands that file to ``quantize_static`` as its cache and runs no data:
the same fp32 graph and the same file give the same int8 graph.

QDQ format: weights int8 per output channel, activations uint8 per tensor.
ONNX Runtime fuses each DequantizeLinear → op → QuantizeLinear group into
an int8 kernel (VNNI where the CPU has it); on other hardware it still runs.

Weights use 8 bits where the CPU sums their products in int32 (x86 with
VNNI) and 7 elsewhere (``reduce_range``; ``app.pipeline.int8_kernels``).
Without VNNI, x86 int8 kernels sum pairs of uint8 x int8 products in int16,
which saturates when both are near full scale: on an AVX2 CPU (AMD EPYC,
Zen 3) the 8-bit embedder's templates of LFW crops fell to cosine 0.943 with
the fp32 ones, against 0.9985 with 7-bit weights. With 7 bits no pair can
saturate (255 x 64 x 2 < 2^15). On an Intel Xeon with AVX-512 VNNI the 7-bit
embedder lost 1.13 points of FRR at FAR 1e-4 against fp32 over all LFW
DevTrain pairs and the 8-bit one 0.41 (README, Precision), so a build takes
what the CPU allows, records it in the manifest, and a model with 8-bit
weights is refused on a CPU without VNNI.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import onnx
from onnx import numpy_helper, version_converter

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.core.settings import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, INT8_SUFFIX
from app.pipeline.int8_kernels import FULL_BITS, PORTABLE_BITS
from app.pipeline.manifest import (
    ModelManifest,
    QuantCalibration,
    file_sha256,
    load_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)

CALIBRATION_DIR: Final = Path(__file__).with_name("calibration")
# Per-channel weight scales on DequantizeLinear need opset 13.
QDQ_OPSET: Final = 13
# What tools/calibrate_int8.py writes beside ONNX Runtime's own keys.
PROVENANCE_KEY: Final = "facerec"


@dataclass(frozen=True)
class Int8Recipe:
    """How one fp32 model of the default pack is quantised."""

    source: str  # the fp32 model's folder name
    # Op types given int8 kernels; None: every type ONNX Runtime's quantiser knows.
    op_types: tuple[str, ...] | None
    # Nodes left in fp32, by name prefix: layers where int8 kernels are slower.
    fp32_prefixes: tuple[str, ...] = ()
    ranges_dir: Path = CALIBRATION_DIR

    @property
    def name(self) -> str:
        return self.source + INT8_SUFFIX

    @property
    def ranges_file(self) -> Path:
        return self.ranges_dir / f"{self.source}.int8.json"


RECIPES: Final = {
    DEFAULT_EMBEDDER: Int8Recipe(DEFAULT_EMBEDDER, op_types=None),
    # Softmax stays fp32: its output is a probability the detector thresholds. The
    # backbone's first blocks (strides 2 and 4, 8 to 32 channels) stay fp32 too: on
    # those wide, thin maps ONNX Runtime's int8 convolutions are slower than its fp32
    # ones (measured: 11.8 ms for the first two alone at 500 px, against 5 in fp32),
    # and leaving them out also halves how far the int8 landmarks move. So do the
    # three output heads (1x1 convolutions, 0.5 ms of 9 at 500 px, one thread): the
    # landmarks are read off them, and in fp32 they moved 2.1% of the eye distance
    # from fp32's instead of 2.6% (LFW, AVX-512 VNNI, 8-bit weights).
    DEFAULT_DETECTOR: Int8Recipe(
        DEFAULT_DETECTOR,
        op_types=("Conv", "LeakyRelu", "Relu", "Add", "Concat", "Resize"),
        fp32_prefixes=(
            *(f"/fx/stage1/stage1.{block}/" for block in range(4)),
            "/class_head/",
            "/bbox_head/",
            "/landmark_head/",
        ),
    ),
}


def prepare_for_quantisation(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph at opset ``QDQ_OPSET`` or later, its constants as initializers.

    The quantiser folds a bias into int32 only when it is an initializer,
    and RetinaFace's exported graph feeds some through ``Constant`` and
    ``Identity`` nodes. Tensor names are kept, so ranges measured on this
    graph apply to it. Deterministic, and independent of ONNX Runtime's
    optimiser (whose rewrites, and so tensor names, change between releases).
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QDQ_OPSET)
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
            constants.add(node.output[0])
        elif node.op_type == "Identity" and node.input[0] in constants:
            source = next(init for init in graph.initializer if init.name == node.input[0])
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(source), node.output[0]))
            constants.add(node.output[0])
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.checker.check_model(model)
    return model


def read_provenance(recipe: Int8Recipe) -> dict[str, Any]:
    """The ``facerec`` block of a model's kept ranges: what they were measured on."""
    try:
        recorded = json.loads(recipe.ranges_file.read_text())[PROVENANCE_KEY]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelPackError(
            f"no usable int8 calibration for {recipe.source} at {recipe.ranges_file} ({exc}); "
            "tools/calibrate_int8.py measures it",
            {"path": str(recipe.ranges_file)},
        ) from exc
    return dict(recorded)


def calibration_record(recipe: Int8Recipe, weight_bits: int) -> QuantCalibration:
    """The manifest's account of the calibration, with the hash of the file applied."""
    recorded = read_provenance(recipe)
    return QuantCalibration(
        method=str(recorded["method"]),
        samples=int(recorded["samples"]),
        measured_on=str(recorded["measured_on"]),
        tool=str(recorded["tool"]),
        ranges_file=recipe.ranges_file.name,
        ranges_sha256=file_sha256(recipe.ranges_file),
        source_sha256=str(recorded["source_sha256"]),
        weight_bits=weight_bits,
        fp32_nodes=list(recipe.fp32_prefixes),
    )


def quantise_graph(
    source: Path,
    destination: Path,
    recipe: Int8Recipe,
    ranges: Path,
    *,
    weight_bits: int,
    data_reader: Any = None,
) -> None:
    """``source`` quantised into ``destination`` with the ranges in ``ranges``, weights in ``weight_bits``.

    With ``data_reader`` (an ONNX Runtime ``CalibrationDataReader``) the
    ranges are measured first and written to ``ranges``: what
    ``tools/calibrate_int8.py`` does once; the build passes none.
    """
    # Imported here: the quantiser pulls in modules the serving process never needs.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = prepare_for_quantisation(onnx.load(str(source)))
    kept_fp32 = [
        n.name for n in model.graph.node if recipe.fp32_prefixes and n.name.startswith(recipe.fp32_prefixes)
    ]
    with tempfile.TemporaryDirectory(prefix="facerec-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        onnx.save(model, str(prepared))
        quantize_static(
            str(prepared),
            str(destination),
            data_reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
            nodes_to_exclude=kept_fp32,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=weight_bits == PORTABLE_BITS,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(ranges),
        )


def build_int8_pack(
    recipe: Int8Recipe, fp32_dir: Path, dest_dir: Path, overrides: dict[str, Any], *, weight_bits: int
) -> ModelManifest:
    """``<model>-int8`` from the built fp32 folder: its graph quantised, its manifest with ``overrides``.

    ``overrides``: manifest fields measured for the int8 model itself (an
    embedder's thresholds), from a seed file kept in the repository.
    """
    fp32 = load_manifest(fp32_dir)
    if weight_bits not in (PORTABLE_BITS, FULL_BITS):
        raise ValueError(f"int8 weights take {PORTABLE_BITS} or {FULL_BITS} bits, not {weight_bits}")
    calibration = calibration_record(recipe, weight_bits)
    if calibration.source_sha256 != fp32.sha256:
        raise ModelPackError(
            f"the int8 ranges for {recipe.source} were measured on another graph "
            f"(sha256 {calibration.source_sha256[:12]}…, built {fp32.sha256[:12]}…); "
            "measure them again with tools/calibrate_int8.py",
            {"model": recipe.source},
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facerec-ranges-") as scratch:
        # quantize_static reads the cache by path and would rewrite it on a mismatch: give it a copy.
        ranges = Path(scratch) / recipe.ranges_file.name
        ranges.write_bytes(recipe.ranges_file.read_bytes())
        quantise_graph(fp32_dir / fp32.file, dest_dir / "model.onnx", recipe, ranges, weight_bits=weight_bits)
    fields = fp32.model_dump(mode="json")
    fields.update(overrides)
    fields.update(
        name=recipe.name,
        file="model.onnx",
        sha256=file_sha256(dest_dir / "model.onnx"),
        precision="int8",
        quantized_from=recipe.source,
        quantization=calibration.model_dump(mode="json"),
        description=(
            f"{fp32.description} int8 (QDQ, per-channel {weight_bits}-bit weights) from {recipe.source}."
        ),
    )
    manifest = ModelManifest.model_validate(fields)
    write_manifest(dest_dir, manifest)
    log_event(logger, "int8_model_built", model=recipe.name, sha256=manifest.sha256[:12])
    return manifest
