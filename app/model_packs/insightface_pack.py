"""Import InsightFace model packs through the insightface library.

An InsightFace pack (``buffalo_l``: det_10g.onnx, w600k_r50.onnx, 1k3d68.onnx,
2d106det.onnx, genderage.onnx) is a folder of ONNX files without our
manifest. insightface tells its models apart by their graphs' shapes
(``model_zoo.get_model``) and reads off each graph how to feed it; we ask it
the same way and write what it says into our manifests, so the service feeds
each model what insightface would: the recogniser RGB crops aligned to the
ArcFace template, normalised with the mean and std insightface reads off
its graph; the SCRFD detector runs through insightface's own decoder
(``app.pipeline.scrfd``). Landmark, attribute and face-swap models are
reported and left out: the service aligns on the detector's five points.

The pack's terms (``MODEL.LICENSE``, or InsightFace's non-commercial terms
without one) are recorded in each manifest and the file copied beside each
model. Thresholds: an imported recogniser has none until it is calibrated
through our own pipeline, its pack's detector or else the configured one
(``calibrate``; see ``app.model_packs.catalog.Calibrate``).

Nothing is downloaded: insightface is asked only about files already here.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from insightface.model_zoo import SCRFD, ArcFaceONNX, get_model
from insightface.model_zoo.model_license import LICENSE_FILENAME

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.core.settings import Settings
from app.model_packs.catalog import Calibrate, calibrate_model
from app.model_packs.insightface_licence import inspect_pack_licence, pack_source
from app.pipeline.geometry import template_for_size
from app.pipeline.manifest import (
    MANIFEST_NAME,
    InputSpec,
    LicenceStatus,
    ModelManifest,
    file_sha256,
    load_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_DETECTOR_SUFFIX = "-detector"
# Recorded until the model is calibrated; a calibration replaces this entry.
UNCALIBRATED = (
    "not calibrated: no thresholds were measured for this model, so a collection can use it only "
    "with thresholds given explicitly; measure them with `facerec models calibrate {name} "
    "--calibrate-root DIR --calibrate-pairs FILE`"
)


@dataclass(frozen=True)
class RecognisedModel:
    """An ONNX file insightface routes to a model the service runs, and how insightface feeds it."""

    path: Path
    kind: Literal["embedder", "detector"]
    input_name: str
    input_size: tuple[int, int]  # (width, height)
    mean: float
    std: float
    embedding_size: int | None = None  # embedders only
    fixed_input: bool = True  # detectors: False when the graph takes any size


@dataclass(frozen=True)
class SkippedFile:
    file: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    installed: list[ModelManifest]
    skipped: list[SkippedFile]

    @property
    def uncalibrated(self) -> list[str]:
        """The installed embedders without thresholds."""
        return [m.name for m in self.installed if m.kind == "embedder" and not m.calibrated]


def recognise_onnx(path: Path) -> RecognisedModel | SkippedFile:
    """What insightface's model router makes of one ONNX file (opened on the CPU)."""
    try:
        model = get_model(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # any file insightface cannot open or route is reported, not fatal
        return SkippedFile(path.name, f"insightface cannot read it ({type(error).__name__}: {error})")
    if isinstance(model, ArcFaceONNX):
        width, height = (int(v) for v in model.input_size)
        return RecognisedModel(
            path,
            "embedder",
            model.input_name,
            (width, height),
            float(model.input_mean),
            float(model.input_std),
            embedding_size=_embedding_size(model),
        )
    if isinstance(model, SCRFD):
        if not model.use_kps:
            return SkippedFile(path.name, "an SCRFD detector without landmarks: faces cannot be aligned")
        width, height = (int(v) for v in model.input_size)
        return RecognisedModel(
            path,
            "detector",
            model.input_name,
            (width, height),
            float(model.input_mean),
            float(model.input_std),
            fixed_input=model.static_input_size is not None,
        )
    if model is None:
        return SkippedFile(path.name, "not a model insightface recognises by its input shape")
    task = getattr(model, "taskname", type(model).__name__)
    if task.startswith("landmark"):
        reason = f"a landmark model ({task}): the service aligns faces on the detector's five points"
    elif task == "genderage":
        reason = "an attribute model (gender and age): the service does not estimate attributes"
    else:
        reason = f"a {task} model: not used for recognition"
    return SkippedFile(path.name, reason)


def _embedding_size(model: Any) -> int:
    """From the output's shape, or from one zero crop when the graph leaves it open."""
    size = model.output_shape[-1]
    if isinstance(size, int) and size > 0:
        return size
    width, height = model.input_size
    zeros = np.zeros((1, 3, height, width), np.float32)  # (1, 3, H, W)
    (out,) = model.session.run(model.output_names, {model.input_name: zeros})
    return int(np.asarray(out).reshape(1, -1).shape[1])


def import_pack(
    path: Path,
    models_dir: Path,
    *,
    name: str | None = None,
    settings: Settings,
    calibrate: Calibrate | None = None,
    force: bool = False,
) -> ImportResult:
    """Install an InsightFace pack folder, any subset of one, or a single recogniser .onnx file.

    The recogniser becomes the folder ``name`` (default: the pack folder's name,
    or the file's stem), the SCRFD detector ``name-detector`` (or ``name``
    alone when there is no recogniser). Each folder is staged and then moved
    into place; an installed one is replaced only with ``force``. With
    ``calibrate``, the recogniser's thresholds are measured before it is
    installed, behind the pack's detector when it has one, else behind
    ``settings``' detector.
    """
    files, pack_dir = _onnx_files(path)
    _refuse_facerec_folder(pack_dir)
    source = path.resolve()
    base = _model_name(name, source.name if source.is_dir() else source.stem)
    embedder, detector, skipped = _recognise_all(path, files)
    detector_name = None if detector is None else (f"{base}{_DETECTOR_SUFFIX}" if embedder else base)
    targets = [n for n in (detector_name, base if embedder else None) if n is not None]
    _refuse_taken(models_dir, targets, force)

    model_id, licence = inspect_pack_licence(pack_dir)
    licence_file = pack_dir / LICENSE_FILENAME
    pack = _Pack(
        pack_dir.name, pack_source(model_id), licence, licence_file if licence_file.is_file() else None
    )
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{base}-import-") as tmp:
        staging = Path(tmp)
        installed: list[ModelManifest] = []
        if detector is not None and detector_name is not None:
            installed.append(_stage_detector(staging / detector_name, detector, pack))
        if embedder is not None:  # staged after its detector, which calibrating it may run
            model_dir = staging / base
            manifest = _stage_embedder(model_dir, embedder, pack, detector_name)
            if calibrate is not None:
                manifest = calibrate_model(model_dir, settings, calibrate)
            installed.insert(0, manifest)
        _refuse_taken(models_dir, targets, force)  # again: calibrating takes a while
        for manifest in installed:
            target = models_dir / manifest.name
            if target.exists():
                shutil.rmtree(target)
            (staging / manifest.name).rename(target)
    for manifest in installed:
        log_event(
            logger,
            "model_pack_imported",
            model=manifest.name,
            kind=manifest.kind,
            sha256=manifest.sha256[:12],
            licence=licence.status,
            calibrated=manifest.calibrated,
        )
    return ImportResult(installed, skipped)


@dataclass(frozen=True)
class _Pack:
    """What every model of one pack shares in its manifest."""

    folder: str
    source_package: str
    licence: LicenceStatus
    licence_file: Path | None


def _onnx_files(path: Path) -> tuple[list[Path], Path]:
    """The ONNX files to look at and the pack folder they belong to (whose licence applies)."""
    if not path.exists():
        raise ModelPackError(f"{path} does not exist", {"path": str(path)})
    if path.is_dir():
        files = sorted(p for p in path.glob("*.onnx") if p.is_file())
        if not files:
            raise ModelPackError(f"no ONNX file in {path}", {"path": str(path)})
        return files, path
    if path.suffix.lower() != ".onnx":
        raise ModelPackError(f"{path} is neither a pack folder nor an .onnx file", {"path": str(path)})
    return [path], path.parent


def _recognise_all(
    path: Path, files: list[Path]
) -> tuple[RecognisedModel | None, RecognisedModel | None, list[SkippedFile]]:
    """The pack's recogniser and detector (at most one each), and the files left out."""
    recognised: list[RecognisedModel] = []
    skipped: list[SkippedFile] = []
    for file in files:
        found = recognise_onnx(file)
        if isinstance(found, SkippedFile):
            skipped.append(found)
        else:
            recognised.append(found)
    embedder = _only(path, [r for r in recognised if r.kind == "embedder"], "recognisers")
    detector = _only(path, [r for r in recognised if r.kind == "detector"], "SCRFD detectors")
    if embedder is None and detector is None:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in skipped)
        raise ModelPackError(f"no recogniser or SCRFD detector in {path}: {reasons}", {"path": str(path)})
    return embedder, detector, skipped


def _refuse_facerec_folder(folder: Path) -> None:
    """A folder with our own manifest is already a model folder: it is copied, not imported."""
    manifest = folder / MANIFEST_NAME
    try:
        ModelManifest.model_validate(json.loads(manifest.read_text()))
    except (OSError, ValueError):  # absent, or some other manifest (insightface's own package format)
        return
    raise ModelPackError(
        f"{folder} is already a facerec model folder (it has our {MANIFEST_NAME}); "
        "copy it into the models directory instead of importing it",
        {"path": str(folder)},
    )


def _only(path: Path, found: list[RecognisedModel], what: str) -> RecognisedModel | None:
    if len(found) > 1:
        names = ", ".join(r.path.name for r in found)
        raise ModelPackError(
            f"{path} holds {len(found)} {what} ({names}); import them one file at a time",
            {"path": str(path)},
        )
    return found[0] if found else None


def _model_name(requested: str | None, default: str) -> str:
    """``requested`` when it is a valid folder name; else ``default`` made into one."""
    if requested is not None:
        if not _NAME.fullmatch(requested):
            raise ModelPackError(
                f"model name {requested!r} is not 1-64 letters, digits, '_', '-' or '.' "
                "(not starting with '.')",
                {"name": requested},
            )
        return requested
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", default).lstrip(".-")[:64].rstrip(".-")
    if not _NAME.fullmatch(cleaned):
        raise ModelPackError(f"cannot make a model name of {default!r}; give one", {"name": default})
    return cleaned


def _refuse_taken(models_dir: Path, names: list[str], force: bool) -> None:
    taken = [n for n in names if (models_dir / n).exists()]
    if taken and not force:
        raise ModelPackError(
            f"{', '.join(taken)} already installed in {models_dir}; replace with --force (force=True)",
            {"names": taken},
        )


def _copy_files(model_dir: Path, model: RecognisedModel, pack: _Pack) -> str:
    model_dir.mkdir()
    shutil.copy2(model.path, model_dir / model.path.name)
    if pack.licence_file is not None:
        shutil.copy2(pack.licence_file, model_dir / LICENSE_FILENAME)
    return file_sha256(model_dir / model.path.name)


def _stage_embedder(
    model_dir: Path, model: RecognisedModel, pack: _Pack, detector_name: str | None
) -> ModelManifest:
    sha256 = _copy_files(model_dir, model, pack)
    width, height = model.input_size
    manifest = ModelManifest(
        name=model_dir.name,
        version="1",
        kind="embedder",
        file=model.path.name,
        sha256=sha256,
        source_package=pack.source_package,
        licence=pack.licence.terms,
        licence_status=pack.licence,
        source_format="insightface",
        description=(
            f"InsightFace recogniser {model.path.name} of the pack {pack.folder}, read by insightface's "
            f"ArcFaceONNX: {width}x{height} RGB crops aligned to the ArcFace template, "
            f"(pixel - {model.mean:g}) / {model.std:g}, {model.embedding_size}-d embeddings."
        ),
        input=_input(model),
        detector=detector_name,
        template=template_for_size(width).astype(float).round(4).tolist(),
        template_note=f"the ArcFace 112x112 template (insightface's arcface_dst) scaled to {width}x{height}",
        embedding_size=model.embedding_size,
        metric="cosine",
        similarity_note="cosine of the L2-normalised embeddings, as insightface compares them",
        evaluation={"calibrated_on": UNCALIBRATED.format(name=model_dir.name)},
    )
    write_manifest(model_dir, manifest)
    return load_manifest(model_dir)


def _stage_detector(model_dir: Path, model: RecognisedModel, pack: _Pack) -> ModelManifest:
    sha256 = _copy_files(model_dir, model, pack)
    width, height = model.input_size
    size = f"a fixed {width}x{height} input" if model.fixed_input else "any input size"
    manifest = ModelManifest(
        name=model_dir.name,
        version="1",
        kind="detector",
        file=model.path.name,
        sha256=sha256,
        source_package=pack.source_package,
        licence=pack.licence.terms,
        licence_status=pack.licence,
        source_format="insightface",
        detector_format="scrfd",
        description=(
            f"InsightFace SCRFD detector {model.path.name} of the pack {pack.folder} ({size}; the "
            "manifest records the working size), run through insightface's own decoder: boxes, scores "
            "and five landmarks."
        ),
        input=_input(model),
    )
    write_manifest(model_dir, manifest)
    return load_manifest(model_dir)


def _input(model: RecognisedModel) -> InputSpec:
    """insightface feeds every model OpenCV's BGR with the channels swapped: RGB, one mean and std."""
    width, height = model.input_size
    return InputSpec(
        name=model.input_name,
        width=width,
        height=height,
        color_order="RGB",
        layout="NCHW",
        mean=[model.mean] * 3,
        std=[model.std] * 3,
    )
