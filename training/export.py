"""`export`: the backbone alone to ONNX, checked against PyTorch, with the manifest the service reads.

The exported graph is `FaceEmbedder`: (N, 3, H, W) RGB crops normalised with
the manifest's mean/std -> (N, D) raw embeddings, batch dimension dynamic.
A grey backbone converts RGB to luminance inside the graph, so every exported
model takes what the service feeds every embedder (`normalise_pixels` on RGB
crops) and loads by configuration alone:

    FACEREC_MODELS_DIR=<folder holding this model and the detector folder>
    FACEREC_EMBEDDER=<this model's folder name>

Parity: ONNX Runtime and PyTorch must agree on real crops to 1e-4 (max
absolute difference of the L2-normalised embeddings), or the export fails.
Thresholds: calibrated through the service's own pipeline (detector, the
exported ONNX model) on every pair among a pair list's images, as
`facerec eval calibrate` does for the shipped models.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from app.core.arrays import ImageArray
from app.core.logging import log_event
from app.core.settings import Settings
from app.eval.calibrate import calibrate_on_pair_list, write_calibration
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import normalise_pixels, template_for_size
from app.pipeline.manifest import (
    InputSpec,
    LicenceStatus,
    ModelManifest,
    file_sha256,
    load_manifest,
    write_manifest,
)
from training.config import ModelConfig
from training.models import create_backbone
from training.network import FaceEmbedder
from training.train import MODEL_NAME

logger = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
OPSET = 18
PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the exported model's embeddings."""


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    manifest: ModelManifest
    parity_max_abs_diff: float
    parity_crops: int
    calibration: dict[str, Any] | None


def load_trained_network(run_dir: Path) -> FaceEmbedder:
    """The network a training run saved (its config.json names the backbone and its arguments)."""
    config_path, weights_path = run_dir / "config.json", run_dir / MODEL_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished training run (no config.json or {MODEL_NAME})")
    model = ModelConfig(**json.loads(config_path.read_text())["model"])
    net = FaceEmbedder(create_backbone(model.backbone, **model.backbone_arguments()))
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return net.eval()


def untrained_network(backbone: str, **arguments: Any) -> FaceEmbedder:
    """A randomly initialised backbone (for checking the export and serving path end to end)."""
    return FaceEmbedder(create_backbone(backbone, **arguments)).eval()


def export_onnx(net: FaceEmbedder, path: Path) -> None:
    """Write `net` (eval mode, CPU) as one ONNX file with a dynamic batch dimension."""
    net = net.cpu().eval()
    example = torch.zeros(2, 3, net.input_size, net.input_size)  # (B, 3, H, W)
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )


def check_parity(
    net: FaceEmbedder, onnx_path: Path, crops: ImageArray, tolerance: float = PARITY_TOLERANCE
) -> float:
    """Max |ONNX − torch| over L2-normalised embeddings of real crops; raises above `tolerance`."""
    if len(crops) == 0:
        raise ValueError("the parity check needs at least one real crop")
    pixels = normalise_pixels(crops, net.pixel_mean, net.pixel_std)  # (N, 3, H, W), as the service feeds
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {INPUT_NAME: pixels})
    with torch.no_grad():
        torch_out = F.normalize(net.cpu().eval()(torch.from_numpy(pixels)), dim=1).numpy()  # (N, D)
    onnx_unit = onnx_out / np.linalg.norm(onnx_out, axis=1, keepdims=True)  # (N, D)
    difference = float(np.abs(onnx_unit - torch_out).max())
    if not np.isfinite(difference) or difference >= tolerance:
        raise ExportParityError(
            f"ONNX Runtime and PyTorch embeddings differ by {difference:.3g} on {len(crops)} real crops "
            f"(allowed {tolerance:g}); the exported model would not serve what was trained"
        )
    return difference


def build_manifest(
    net: FaceEmbedder, name: str, *, version: str, description: str, source: str
) -> ModelManifest:
    size = net.input_size
    grey = net.backbone.in_channels == 1
    return ModelManifest(
        name=name,
        version=version,
        kind="embedder",
        file=ONNX_NAME,
        source_package=source,
        licence="trained by this project (see the run's data licence)",
        licence_status=LicenceStatus(
            terms="trained by this project; the training data's licence applies",
            commercial_use=None,
            source="facerec training export",
        ),
        description=description,
        input=InputSpec(
            name=INPUT_NAME,
            width=size,
            height=size,
            color_order="RGB",
            layout="NCHW",
            mean=list(net.pixel_mean),
            std=list(net.pixel_std),
        ),
        template=template_for_size(size).astype(float).round(4).tolist(),
        template_note=f"the ArcFace 112x112 five-point template scaled to {size}x{size}",
        embedding_size=net.embedding_size,
        metric="cosine",
        similarity_note="cosine of the L2-normalised embeddings"
        + ("; the graph converts the RGB input to BT.601 luminance for its grey backbone" if grey else ""),
    )


def export_model(
    net: FaceEmbedder,
    out_dir: Path,
    *,
    parity_crops: ImageArray,
    version: str = "1",
    description: str = "",
    source: str = "facerec training",
    settings: Settings | None = None,
    calibration_root: Path | None = None,
    calibration_pairs: Path | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write `out_dir` (model.onnx + manifest.json), check parity, and calibrate thresholds if asked.

    `settings` supplies the detector used for calibration (models_dir/detector).
    The folder's name is the model's name, the value FACEREC_EMBEDDER takes.
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    onnx_path = out_dir / ONNX_NAME
    export_onnx(net, onnx_path)
    difference = check_parity(net, onnx_path, parity_crops)
    manifest = build_manifest(net, out_dir.name, version=version, description=description, source=source)
    manifest.evaluation = {"parity_max_abs_diff": difference, "parity_crops": len(parity_crops)}
    manifest.sha256 = file_sha256(onnx_path)
    manifest_path = write_manifest(out_dir, manifest)
    calibration = None
    if calibration_root is not None and calibration_pairs is not None:
        calibration = calibrate(
            out_dir, settings or Settings(), calibration_root, calibration_pairs, progress
        )
        write_calibration(manifest_path, calibration)  # beside the parity figures
    manifest = load_manifest(out_dir)  # what the service will read, sha256 checked
    log_event(
        logger, "training.export.done", model=manifest.name, parity=difference, calibrated=bool(calibration)
    )
    return ExportResult(out_dir, manifest, difference, len(parity_crops), calibration)


def calibrate(
    model_dir: Path, settings: Settings, root: Path, pairs_file: Path, progress: bool = True
) -> dict[str, Any]:
    """Thresholds at FAR 1e-2…1e-5 through the service's pipeline: its detector, this ONNX model."""
    embedder = OnnxEmbedder(model_dir, load_manifest(model_dir), threads=settings.inference_threads)
    pipeline = FacePipeline.from_settings(settings, embedder=embedder)
    return calibrate_on_pair_list(pipeline, root, pairs_file, progress=progress)
