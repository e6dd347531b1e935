"""The training loop on a handful of real LFW crops: modes, logs, evaluation, checkpoints, budget.

What a user notices: each mode trains and records its loss; an epoch ends with
verification figures (the `facerec eval` metrics) and, for a classifier, top-1
and a confusion matrix on held-out photos; a run resumes where it stopped; a
time budget stops a run that would overrun, still saving and evaluating it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.core.settings import Settings
from tests.conftest import LFW_ROOT, require_data
from training.cli import main
from training.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from training.data.prepare import FaceCropper, IdentitySelection, prepare_identities, prepare_pair_list
from training.schedule import lr_factor
from training.train import CHECKPOINT_NAME, MODEL_NAME, Trainer

CROP = 64
PAIRS = """3
Bill_Gates\t1\t2
Jennifer_Lopez\t1\t3
Andre_Agassi\t2\t3
Bill_Gates\t3\tJennifer_Lopez\t2
Andre_Agassi\t1\tBill_Gates\t4
Jennifer_Lopez\t4\tAndre_Agassi\t4
"""


@pytest.fixture(scope="module")
def data(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Crops of 6 LFW people (5 photos each), and a 6-pair list over three of them with its crops."""
    root = tmp_path_factory.mktemp("train")
    cropper = FaceCropper.from_settings(settings, CROP)
    selection = IdentitySelection(min_images=5, max_identities=6, max_images_per_identity=5)
    prepare_identities(require_data(LFW_ROOT), root / "crops", cropper, selection, progress=False)
    pairs = root / "pairs.txt"
    pairs.write_text(PAIRS)
    prepare_pair_list(LFW_ROOT, pairs, root / "pair-crops", cropper, progress=False)
    return root / "crops", pairs, root / "pair-crops"


def config_for(data: tuple[Path, Path, Path], out: Path, **train: Any) -> ExperimentConfig:
    crops, pairs, pair_crops = data
    return ExperimentConfig(
        name="test-run",
        out_dir=out,
        data=DataConfig(crops_dir=crops, pairs_file=pairs, pairs_crops_dir=pair_crops),
        model=ModelConfig(backbone="lightcnn9", input_size=CROP, head="arcface", head_kwargs={"s": 32.0}),
        optim=OptimConfig(optimizer="adamw", lr=1e-3, warmup_iterations=2),
        train=replace(TrainConfig(epochs=1, iterations_per_epoch=3, batch_size=8, log_every=1), **train),
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_classification_logs_evaluates_and_saves(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    trainer = Trainer(config_for(data, tmp_path, evaluate_before_training=True), device=torch.device("cpu"))
    result = trainer.run()
    assert (result.state.iteration, result.state.epoch, result.stopped_by) == (3, 1, "epochs")

    log = read_csv(result.run_dir / "log.csv")
    assert [row["iteration"] for row in log] == ["1", "2", "3"]
    assert all(math.isfinite(float(row["loss"])) and float(row["loss"]) > 0 for row in log)

    rows = json.loads((result.run_dir / "eval.json").read_text())
    assert [row["epoch"] for row in rows] == [0, 1]  # before training, then after the epoch
    last = rows[-1]
    assert last["pairs_count"] == 6 and last["pairs_without_face"] == 0
    assert 0.0 <= last["pairs_accuracy_mean"] <= 1.0 and 0.0 <= last["pairs_auc"] <= 1.0
    # One held-out photo per person, each counted once in the confusion matrix.
    confusion = np.load(result.run_dir / "confusion.npy")
    assert confusion.shape == (6, 6) and confusion.sum() == 6 == last["held_out_images"]
    assert last["top1"] == pytest.approx(np.trace(confusion) / 6)
    assert (result.run_dir / MODEL_NAME).is_file() and (result.run_dir / CHECKPOINT_NAME).is_file()
    assert json.loads((result.run_dir / "config.json").read_text())["model"]["backbone"] == "lightcnn9"


@pytest.mark.parametrize("mode", ["siamese", "triplet"])
def test_metric_learning_modes_train_on_pk_batches(
    mode: str, data: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    config = config_for(data, tmp_path, mode=mode, identities_per_batch=3, images_per_identity=2)
    result = Trainer(config, device=torch.device("cpu"), progress=False).run()
    log = read_csv(result.run_dir / "log.csv")
    assert len(log) == 3 and all(math.isfinite(float(row["loss"])) for row in log)
    last = result.last_evaluation
    assert "pairs_auc" in last and "top1" not in last  # no classifier head to score


def test_resume_continues_from_the_checkpoint(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    Trainer(config_for(data, tmp_path), device=torch.device("cpu"), progress=False).run()
    resumed = Trainer(config_for(data, tmp_path, epochs=2), device=torch.device("cpu"), progress=False)
    result = resumed.run(resume=True)
    assert (result.state.epoch, result.state.iteration) == (2, 6)
    assert [row["epoch"] for row in result.state.evaluations] == [1, 2]
    assert [row["iteration"] for row in read_csv(result.run_dir / "log.csv")] == [str(i) for i in range(1, 7)]


def test_resume_without_a_checkpoint_is_refused(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(config_for(data, tmp_path), device=torch.device("cpu"), progress=False).run(resume=True)


def test_time_budget_stops_the_run_but_still_evaluates_and_saves(
    data: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    # A budget far below one iteration's cost: the run stops after its first step.
    config = config_for(data, tmp_path, epochs=5, time_budget_minutes=1e-6)
    result = Trainer(config, device=torch.device("cpu"), progress=False).run()
    assert (result.stopped_by, result.state.iteration, result.state.epoch) == ("time budget", 1, 1)
    assert result.last_evaluation["iteration"] == 1
    assert (result.run_dir / MODEL_NAME).is_file()


def test_crops_of_the_wrong_size_are_refused(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    config = config_for(data, tmp_path)
    config.model.input_size = 128
    with pytest.raises(ValueError, match="prepare them with --size 128"):
        Trainer(config, device=torch.device("cpu"), progress=False)


def test_schedule_warms_up_then_decays() -> None:
    cosine = OptimConfig(warmup_iterations=10, schedule="cosine")
    assert [lr_factor(cosine, i, 0.0) for i in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(cosine, 10, 0.0) == 1.0
    assert lr_factor(cosine, 500, 0.5) == pytest.approx(0.5)
    assert lr_factor(cosine, 1000, 1.0) == pytest.approx(0.0)
    step = OptimConfig(warmup_iterations=0, schedule="step", step_milestones=(0.5, 0.75), step_gamma=0.1)
    assert [lr_factor(step, 100, p) for p in (0.1, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])


def test_the_command_line_prepares_trains_and_exports(
    data: tuple[Path, Path, Path], settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crops, pairs, pair_crops = data
    raw = tmp_path / "raw"
    for name in ("Bill_Gates", "Jennifer_Lopez"):
        (raw / name).mkdir(parents=True)
        for photo in sorted((LFW_ROOT / name).glob("*.jpg"))[:2]:
            (raw / name / photo.name).write_bytes(photo.read_bytes())
    models = ["--models-dir", str(settings.models_dir), "--quiet"]
    assert main(["prepare", str(raw), str(tmp_path / "cli-crops"), "--size", "64", *models]) == 0
    assert "2 identities, 4 crops (64x64), 0 images without a usable face" in capsys.readouterr().out

    run = ["train", "--config", "lfw_demo_arcface", "--name", "cli", "--out-dir", str(tmp_path / "runs")]
    paths = ["--crops", str(crops), "--pairs", str(pairs), "--pairs-crops", str(pair_crops)]
    assert main([*run, *paths, "--epochs", "1", "--iterations-per-epoch", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cli: 2 iterations in 1 epochs" in out and "pairs accuracy" in out and "held-out top-1" in out

    export = ["export", str(tmp_path / "models" / "lightcnn9-cli"), "--run", str(tmp_path / "runs" / "cli")]
    assert main([*export, "--parity-crops", str(crops), *models]) == 0
    out = capsys.readouterr().out
    assert "ONNX vs torch max |diff|" in out and "FACEREC_EMBEDDER=lightcnn9-cli" in out
    assert (tmp_path / "models" / "lightcnn9-cli" / "manifest.json").is_file()
