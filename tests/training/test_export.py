"""Export: ONNX parity on real crops, the manifest, and the service loading an exported pack.

What a user notices: an exported model gives the embeddings it gave in
PyTorch (or the export refuses), and the service serves it by configuration
alone: FACEREC_MODELS_DIR with the detector beside it and FACEREC_EMBEDDER.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.core.arrays import ImageArray
from app.core.settings import Settings
from app.main import create_app
from app.pipeline.decode import read_image_file
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import ARCFACE_112, normalise_pixels, template_for_size
from app.pipeline.manifest import file_sha256, load_manifest
from tests.conftest import LFW_ROOT, require_data
from training.data.prepare import FaceCropper
from training.export import INPUT_NAME, ExportParityError, check_parity, export_model, untrained_network

PHOTOS = [
    LFW_ROOT / name / f"{name}_{i:04d}.jpg"
    for name, count in (("Bill_Gates", 3), ("Jennifer_Lopez", 3), ("Andre_Agassi", 2))
    for i in range(1, count + 1)
]
ADMIN_KEY = "test-admin-key-of-the-training-export"


def real_crops(settings: Settings, size: int) -> ImageArray:
    cropper = FaceCropper.from_settings(settings, size)
    crops = [cropper.crop(read_image_file(require_data(p))) for p in PHOTOS]
    assert all(c is not None for c in crops)
    return np.stack([c for c in crops if c is not None])  # (8, size, size, 3)


def packs_dir(tmp: Path, settings: Settings) -> Path:
    """A models folder holding only the service's detector (linked); exports go beside it."""
    folder = tmp / "models"
    folder.mkdir()
    (folder / settings.detector).symlink_to((settings.models_dir / settings.detector).resolve())
    return folder


def test_grey_lightcnn_exports_with_parity_and_a_manifest_the_service_reads(
    settings: Settings, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    net = untrained_network("lightcnn9", input_size=64)
    crops = real_crops(settings, 64)
    result = export_model(net, tmp_path / "lightcnn9-test", parity_crops=crops, settings=settings)

    assert result.parity_max_abs_diff < 1e-4
    manifest = load_manifest(result.model_dir)  # sha256 verified
    assert manifest.sha256 == file_sha256(result.model_dir / "model.onnx")
    assert (manifest.kind, manifest.metric, manifest.embedding_size) == ("embedder", "cosine", 256)
    assert (manifest.input.width, manifest.input.height, manifest.input.color_order) == (64, 64, "RGB")
    assert manifest.input.mean == [127.5] * 3 and manifest.input.std == [127.5] * 3
    assert np.allclose(manifest.template or [], template_for_size(64), atol=1e-4)

    # The service's path: RGB crops through normalise_pixels, any batch size, into the grey net.
    session = ort.InferenceSession(str(result.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == INPUT_NAME == manifest.input.name
    pixels = normalise_pixels(crops, manifest.input.mean, manifest.input.std)
    (one,) = session.run(None, {INPUT_NAME: pixels[:1]})
    (all_,) = session.run(None, {INPUT_NAME: pixels})
    assert one.shape == (1, 256) and all_.shape == (8, 256)
    grey = (crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) - 127.5) / 127.5
    with torch.no_grad():
        direct = net.backbone(torch.from_numpy(grey[:, None])).numpy()  # (8, 256): the grey model itself
    unit = all_ / np.linalg.norm(all_, axis=1, keepdims=True)
    assert np.abs(unit - direct / np.linalg.norm(direct, axis=1, keepdims=True)).max() < 1e-4


def test_export_refuses_a_model_that_does_not_match_torch(settings: Settings, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = untrained_network("lightcnn9", input_size=64)
    crops = real_crops(settings, 64)
    result = export_model(net, tmp_path / "lightcnn9-test", parity_crops=crops, settings=settings)
    with torch.no_grad():  # the torch model drifts from what was exported
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.weight.add_(0.05 * torch.randn_like(first_conv.weight))
    with pytest.raises(ExportParityError, match="differ"):
        check_parity(net, result.model_dir / "model.onnx", crops)


def test_service_loads_an_exported_arcface_style_112_pack_and_embeds_a_real_photo(
    settings: Settings, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    net = untrained_network("iresnet18")  # 112x112 RGB, 512-d: an insightface-shaped model
    models = packs_dir(tmp_path, settings)
    export_model(
        net, models / "iresnet18-untrained", parity_crops=real_crops(settings, 112), settings=settings
    )

    served = Settings(models_dir=models, embedder="iresnet18-untrained")
    pipeline = FacePipeline.from_settings(served)
    assert np.allclose(pipeline.embedder.template, ARCFACE_112, atol=1e-4)
    photo = read_image_file(PHOTOS[0])
    faces = pipeline.analyze(photo)
    assert faces and faces[0].crop.shape == (112, 112, 3) and faces[0].embedding.shape == (512,)
    # The service's embedding is the trained network's embedding of its crop, averaged with the
    # mirrored crop's under the default FACEREC_MIRROR_FACES.
    assert pipeline.mirror
    crops = np.stack([faces[0].crop, np.ascontiguousarray(faces[0].crop[:, ::-1])])
    with torch.no_grad():
        raw = net(torch.from_numpy(normalise_pixels(crops, net.pixel_mean, net.pixel_std)))
        expected = F.normalize(raw.mean(dim=0, keepdim=True), dim=1).numpy()[0]
    served_unit = faces[0].embedding / np.linalg.norm(faces[0].embedding)
    assert np.abs(served_unit - expected).max() < 1e-4

    app = create_app(
        Settings(
            models_dir=models,
            embedder="iresnet18-untrained",
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'facerec.db'}",
            admin_key=ADMIN_KEY,
        )
    )
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        files = [("file", ("gates.jpg", PHOTOS[0].read_bytes(), "image/jpeg"))]
        response = client.post("/enroll", data={"subject_id": "bill-gates"}, files=files)
        assert response.status_code in (200, 201), response.text
        assert len(response.json()["faces"]) == 1
        pair = [
            ("file_a", ("a.jpg", PHOTOS[1].read_bytes(), "image/jpeg")),
            ("file_b", ("b.jpg", PHOTOS[3].read_bytes(), "image/jpeg")),
        ]
        verified = client.post("/verify", files=pair).json()
        assert verified["model"]["name"] == "iresnet18-untrained"  # the exported model answers
        assert -1.0 <= verified["similarity"] <= 1.0
