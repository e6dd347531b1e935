"""End to end on CPU: prepare LFW photos, train LightCNN-9 with ArcFace, export, serve, enroll, verify.

What a user notices: a model trained with `facerec-train` and exported is
served by the unchanged service (configuration only), and it tells people
apart: a person's photo that training never saw scores higher against that
person's enrolment than against anyone else's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.eval import verification
from app.main import create_app
from tests.conftest import LFW_ROOT, require_data
from training.augment import AugmentConfig
from training.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from training.data.dataset import load_crops
from training.data.prepare import FaceCropper, IdentitySelection, prepare_identities, prepare_pair_list
from training.export import export_model
from training.train import Trainer

CROP = 64
ADMIN_KEY = "test-admin-key-of-the-training-e2e"
# Few people with many photos each: a few hundred CPU iterations learn them well enough to
# recognise a photo training never saw.
IDENTITIES = 8
PHOTOS_PER_IDENTITY = 10
ENROLLED = 8  # identities enrolled in the service


def write_pair_list(path: Path, people: list[str], photos: int) -> Path:
    """A View-1 pair list over the given people: photo 1 vs every other photo, and cross-person pairs."""
    same = [f"{name}\t1\t{j}" for name in people for j in range(2, photos + 1)]
    rng = np.random.default_rng(0)
    different = []
    for _ in range(len(same)):
        a, b = rng.choice(len(people), size=2, replace=False)
        different.append(
            f"{people[a]}\t{rng.integers(1, photos + 1)}\t{people[b]}\t{rng.integers(1, photos + 1)}"
        )
    path.write_text("\n".join([str(len(same)), *same, *different]) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    root = tmp_path_factory.mktemp("e2e")
    cropper = FaceCropper.from_settings(settings, CROP)
    selection = IdentitySelection(
        min_images=PHOTOS_PER_IDENTITY, max_identities=IDENTITIES, max_images_per_identity=PHOTOS_PER_IDENTITY
    )
    summary = prepare_identities(require_data(LFW_ROOT), root / "crops", cropper, selection, progress=False)
    assert summary.identities == IDENTITIES and not summary.failures
    people = sorted(p.name for p in (root / "crops").iterdir() if p.is_dir())
    pairs = write_pair_list(root / "pairs.txt", people, PHOTOS_PER_IDENTITY)
    prepare_pair_list(LFW_ROOT, pairs, root / "pair-crops", cropper, progress=False)

    config = ExperimentConfig(
        name="e2e",
        out_dir=root / "runs",
        data=DataConfig(
            crops_dir=root / "crops",
            held_out_per_identity=1,
            pairs_file=pairs,
            pairs_crops_dir=root / "pair-crops",
        ),
        model=ModelConfig(backbone="lightcnn9", input_size=CROP, head="arcface", head_kwargs={"s": 32.0}),
        optim=OptimConfig(optimizer="adamw", lr=1e-3, warmup_iterations=10),
        train=TrainConfig(
            epochs=4, iterations_per_epoch=30, batch_size=32, log_every=10, evaluate_before_training=True
        ),
        augment=AugmentConfig(),
    )
    trainer = Trainer(config, device=torch.device("cpu"), progress=False)
    trainer.run()
    return trainer, pairs


def test_training_learns_the_identities(trained: tuple[Trainer, Path]) -> None:
    trainer, _ = trained
    first, last = trainer.state.evaluations[0], trainer.state.evaluations[-1]
    assert trainer.state.iteration == 120
    # Held-out photos of the training people: far above chance (1/8) after training.
    assert last["top1"] >= 0.5, last
    losses = np.loadtxt(trainer.run_dir / "log.csv", delimiter=",", skiprows=1, usecols=4)
    assert losses[-4:].mean() < losses[:4].mean()
    assert last["pairs_auc"] > first["pairs_auc"]


def test_the_exported_model_serves_and_tells_people_apart(
    trained: tuple[Trainer, Path], settings: Settings, tmp_path: Path
) -> None:
    trainer, pairs = trained
    models = tmp_path / "models"
    models.mkdir()
    (models / settings.detector).symlink_to((settings.models_dir / settings.detector).resolve())
    parity = load_crops(list(trainer.held_out.paths))
    result = export_model(
        trainer.net,
        models / "lightcnn9-e2e",
        parity_crops=parity,
        settings=settings,
        calibration_root=LFW_ROOT,
        calibration_pairs=pairs,
        progress=False,
    )
    assert result.parity_max_abs_diff < 1e-4
    assert {p.far for p in result.manifest.thresholds} >= {1e-3, 1e-4}

    # Enrol each person with a training photo; probe with the photo training held out.
    held_out = {p.parent.name: LFW_ROOT / p.parent.name / f"{p.stem}.jpg" for p in trainer.held_out.paths}
    people = sorted(held_out)[:ENROLLED]
    app = create_app(
        Settings(
            models_dir=models,
            embedder="lightcnn9-e2e",
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'facerec.db'}",
            admin_key=ADMIN_KEY,
        )
    )
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        for name in people:
            enrol_photo = next(p for p in sorted((LFW_ROOT / name).glob("*.jpg")) if p != held_out[name])
            files = [("file", (enrol_photo.name, enrol_photo.read_bytes(), "image/jpeg"))]
            response = client.post("/enroll", data={"subject_id": name}, files=files)
            assert response.status_code in (200, 201), response.text

        scores = np.zeros((len(people), len(people)))  # (probe person, enrolled person)
        for i, probe_name in enumerate(people):
            probe = held_out[probe_name].read_bytes()
            for j, subject in enumerate(people):
                files = [("file", ("probe.jpg", probe, "image/jpeg"))]
                response = client.post("/verify", data={"subject_id": subject}, files=files)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["model"]["name"] == "lightcnn9-e2e"
                scores[i, j] = body["similarity"]

    genuine = np.diag(scores)  # (P,) each unseen photo against its own person
    impostor = scores[~np.eye(len(people), dtype=bool)].reshape(len(people), -1)  # (P, P-1)
    # Nearly every person's unseen photo scores above what it scores, on average, against other
    # people (chance would get 7 of 8 or more 3.5% of the time), and a same-person comparison
    # outranks a different-person one far more often than chance.
    assert (genuine > impostor.mean(axis=1)).sum() >= len(people) - 1, scores.round(4)
    assert verification.auc(genuine, impostor.ravel()) >= 0.75, scores.round(4)
