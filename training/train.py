"""The training loop: batches -> embeddings -> objective -> optimiser step, with evaluation and checkpoints.

A run writes into `config.run_dir`:
    log.csv          every `log_every` iterations: epoch, iteration, seconds, lr, loss, batch accuracy
    eval.csv         after each epoch (and before training if asked): verification and top-1 figures
    eval.json        the same rows as JSON, with TAR@FAR
    confusion.npy    the last held-out confusion matrix (classification mode; rows = true identity)
    checkpoint.pt    the latest state (network, objective, optimiser, counters), for --resume
    model.pt         the final network weights, what `facerec-train export` reads
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Sampler
from tqdm import tqdm

from app.core.logging import log_event
from training.augment import Augmenter
from training.config import ExperimentConfig
from training.data.dataset import BatchNormaliser, CropDataset, CropIndex, hold_out_images, split_identities
from training.data.samplers import PKBatchSampler
from training.evaluate import PairCrops, most_confused, top1_and_confusion, verify_pairs
from training.models import create_backbone
from training.network import FaceEmbedder
from training.objectives import Objective, create_objective
from training.schedule import lr_factor

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_FIELDS = ("epoch", "iteration", "seconds", "lr", "loss", "accuracy")


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    iteration: int = 0  # optimiser steps taken
    seconds: float = 0.0  # training time spent, across resumes
    evaluations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path
    state: RunState
    stopped_by: str  # "epochs" or "time budget"

    @property
    def last_evaluation(self) -> dict[str, Any]:
        return self.state.evaluations[-1] if self.state.evaluations else {}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_network(config: ExperimentConfig) -> FaceEmbedder:
    return FaceEmbedder(create_backbone(config.model.backbone, **config.model.backbone_arguments()))


class Trainer:
    def __init__(
        self, config: ExperimentConfig, *, device: torch.device | None = None, progress: bool = True
    ) -> None:
        self.config = config
        self.device = device or pick_device()
        self.progress = progress
        self.on_gpu = self.device.type == "cuda"
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.train.seed)

        self.net = build_network(config).to(self.device)
        if self.on_gpu and config.train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        index = CropIndex.scan(config.data.crops_dir)
        if config.data.held_out_identities > 0:
            index, _ = split_identities(index, config.data.held_out_identities, config.data.seed)
        # Held-out photos serve a classifier's top-1; the metric modes train on every photo.
        per_identity = config.data.held_out_per_identity if config.train.mode == "classification" else 0
        train_index, self.held_out = hold_out_images(index, per_identity, config.data.seed)
        self.dataset = CropDataset(train_index, Augmenter(config.augment), seed=config.train.seed)
        if self.dataset.crop_size != self.net.input_size:
            raise ValueError(
                f"crops in {config.data.crops_dir} are {self.dataset.crop_size} px but "
                f"{config.model.backbone} takes {self.net.input_size} px; "
                f"prepare them with --size {self.net.input_size}"
            )
        self.held_out_images = CropDataset(self.held_out).images if len(self.held_out) else None
        self.pairs = (
            PairCrops.load(config.data.pairs_file, config.data.pairs_crops_dir)
            if config.data.pairs_file and config.data.pairs_crops_dir
            else None
        )
        self.objective: Objective = create_objective(config, self.net.embedding_size, index.num_classes).to(
            self.device
        )
        self.optimizer = self._build_optimizer()
        self.batches_per_epoch = config.train.iterations_per_epoch or max(
            1, len(self.dataset) // self._batch_images()
        )
        self.loader = self._build_loader()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_gpu and config.train.mixed_precision)
        self.state = RunState()
        self.run_dir = config.run_dir
        self.writer = self._tensorboard()

    # ------------------------------------------------------------------ set-up

    def _batch_images(self) -> int:
        t = self.config.train
        return t.batch_size if t.mode == "classification" else t.identities_per_batch * t.images_per_identity

    def _build_loader(self) -> DataLoader[tuple[np.ndarray, int]]:
        t = self.config.train
        collate = BatchNormaliser(self.net.pixel_mean, self.net.pixel_std)
        batch_sampler: Sampler[list[int]]
        if t.mode == "classification":
            generator = torch.Generator().manual_seed(t.seed)
            sampler = RandomSampler(
                self.dataset, num_samples=self.batches_per_epoch * t.batch_size, generator=generator
            )
            return DataLoader(
                self.dataset,
                batch_size=t.batch_size,
                sampler=sampler,
                drop_last=True,
                collate_fn=collate,
                num_workers=self.config.data.num_workers,
            )
        batch_sampler = PKBatchSampler(
            self.dataset.index.labels,
            t.identities_per_batch,
            t.images_per_identity,
            self.batches_per_epoch,
            t.seed,
        )
        return DataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate,
            num_workers=self.config.data.num_workers,
        )

    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        params = [p for module in (self.net, self.objective) for p in module.parameters()]
        if o.optimizer == "sgd":
            return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)

    def _tensorboard(self) -> Any:
        if not self.config.train.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # the tensorboard package is optional
            raise RuntimeError("tensorboard logging needs `pip install tensorboard`") from error
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------ the run

    def run(self, *, resume: bool = False) -> TrainResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._load_checkpoint()
        elif self.config.train.evaluate_before_training:
            self._evaluate()
        t = self.config.train
        planned = t.epochs * self.batches_per_epoch
        budget_s = t.time_budget_minutes * 60.0 if t.time_budget_minutes else None
        stopped_by = "epochs"
        log_event(logger, "training.start", run=self.config.name, device=self.device.type, planned=planned)
        while self.state.epoch < t.epochs:
            out_of_time = self._train_epoch(planned, budget_s)
            self.state.epoch += 1
            self._evaluate()
            self._save_checkpoint()
            if out_of_time:
                stopped_by = "time budget"
                break
        torch.save(self.net.state_dict(), self.run_dir / MODEL_NAME)
        (self.run_dir / "config.json").write_text(
            json.dumps(asdict(self.config), indent=2, default=str) + "\n"
        )
        log_event(
            logger, "training.done", run=self.config.name, iterations=self.state.iteration, by=stopped_by
        )
        return TrainResult(self.run_dir, self.state, stopped_by)

    def _train_epoch(self, planned: int, budget_s: float | None) -> bool:
        """One epoch of optimiser steps; True when the time budget ran out during it."""
        t = self.config.train
        self.dataset.set_epoch(self.state.epoch)
        batch_sampler = self.loader.batch_sampler
        if isinstance(batch_sampler, PKBatchSampler):
            batch_sampler.set_epoch(self.state.epoch)
        self.net.train()
        self.objective.train()
        started = time.perf_counter() - self.state.seconds
        bar = tqdm(
            self.loader, desc=f"epoch {self.state.epoch + 1}/{t.epochs}", unit="it", disable=not self.progress
        )
        for pixels, labels in bar:
            elapsed = time.perf_counter() - started
            progress = self.state.iteration / planned
            if budget_s:
                progress = max(progress, elapsed / budget_s)
            lr = self.config.optim.lr * lr_factor(self.config.optim, self.state.iteration, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, accuracy = self._step(pixels, labels)
            self.state.iteration += 1
            self.state.seconds = time.perf_counter() - started
            if self.state.iteration % t.log_every == 0:
                self._log_row(lr, loss, accuracy)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", lr=f"{lr:.4f}")
            if budget_s is not None and self.state.seconds >= budget_s:
                bar.close()
                return True
        return False

    def _step(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        pixels = pixels.to(self.device, non_blocking=True)  # (B, 3, H, W)
        labels = labels.to(self.device, non_blocking=True)  # (B,)
        if self.on_gpu and self.config.train.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=torch.float16, enabled=self.on_gpu and self.config.train.mixed_precision
        ):
            embeddings = self.net(pixels)  # (B, D)
        loss, accuracy = self.objective(embeddings, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at iteration {self.state.iteration}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = self.config.optim.grad_clip_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.item()), accuracy

    # ------------------------------------------------------------------ evaluation and records

    def _evaluate(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "epoch": self.state.epoch,
            "iteration": self.state.iteration,
            "seconds": round(self.state.seconds, 1),
        }
        if self.pairs is not None:
            verification = verify_pairs(self.net, self.pairs, self.device)
            row |= {f"pairs_{k}": v for k, v in verification.items()}
        head = self.objective.head
        if head is not None and self.held_out_images is not None:
            top1, confusion = top1_and_confusion(
                self.net, head, self.held_out, self.held_out_images, self.device
            )
            np.save(self.run_dir / "confusion.npy", confusion)
            row["top1"] = top1
            row["held_out_images"] = len(self.held_out)
            row["most_confused"] = "; ".join(
                f"{a} as {b} ({n})" for a, b, n in most_confused(confusion, self.held_out.identities)
            )
        self.state.evaluations.append(row)
        self._write_evaluations()
        log_event(logger, "training.evaluate", **{k: v for k, v in row.items() if not isinstance(v, dict)})
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"eval/{key}", value, self.state.iteration)
        return row

    def _write_evaluations(self) -> None:
        rows = self.state.evaluations
        (self.run_dir / "eval.json").write_text(json.dumps(rows, indent=2) + "\n")
        columns = list(dict.fromkeys(k for row in rows for k, v in row.items() if not isinstance(v, dict)))
        with (self.run_dir / "eval.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def _log_row(self, lr: float, loss: float, accuracy: float) -> None:
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(LOG_FIELDS)
            writer.writerow(
                [
                    self.state.epoch + 1,
                    self.state.iteration,
                    f"{self.state.seconds:.1f}",
                    f"{lr:.6f}",
                    f"{loss:.5f}",
                    f"{accuracy:.4f}",
                ]
            )
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, self.state.iteration)
            self.writer.add_scalar("train/accuracy", accuracy, self.state.iteration)
            self.writer.add_scalar("train/lr", lr, self.state.iteration)

    def _save_checkpoint(self) -> None:
        checkpoint = {
            "net": self.net.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": asdict(self.state),
            "config_name": self.config.name,
        }
        temporary = self.run_dir / (CHECKPOINT_NAME + ".tmp")
        torch.save(checkpoint, temporary)
        temporary.replace(self.run_dir / CHECKPOINT_NAME)  # never leave a half-written checkpoint

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {self.run_dir}")
        checkpoint = torch.load(path, map_location=self.device, weights_only=False)
        if checkpoint["config_name"] != self.config.name:
            raise ValueError(f"{path} belongs to run {checkpoint['config_name']!r}, not {self.config.name!r}")
        self.net.load_state_dict(checkpoint["net"])
        self.objective.load_state_dict(checkpoint["objective"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = RunState(**checkpoint["state"])
        log_event(logger, "training.resume", epoch=self.state.epoch, iteration=self.state.iteration)


def train(config: ExperimentConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    return Trainer(config, progress=progress).run(resume=resume)
