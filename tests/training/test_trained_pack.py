"""The trained test model (`trained_pack`): a real InsightFace-style pack that tells people apart.

What a user notices: the pack loads through insightface's own model zoo as an
ArcFace recognition model with the input it was trained on, insightface embeds
a face as the service embeds it from our exported folder, and the model verifies
people it never saw clearly better than an untrained MobileFaceNet.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from app.core.arrays import FloatArray, ImageArray
from app.core.settings import Settings
from app.eval import verification
from app.eval.run import NO_FACE_SCORE
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.manifest import file_sha256, load_manifest
from tests.trained_pack import TrainedPack, build_trained_pack, excluded_people
from training.evaluate import PairCrops, verify_pairs
from training.export import untrained_network

model_zoo = pytest.importorskip("insightface.model_zoo", reason="the InsightFace pack tests need insightface")


@pytest.fixture(scope="module")
def devtest(trained_pack: TrainedPack) -> PairCrops:
    """The pairsDevTest.txt subset the pack keeps: people the model never trained on."""
    return PairCrops.load(trained_pack.pairs_file, trained_pack.pairs_crops_dir)


def insightface_embeddings(pack: TrainedPack, crops: ImageArray) -> FloatArray:
    """(N, D) embeddings of RGB crops as insightface computes them from the pack alone."""
    model = model_zoo.get_model(str(pack.onnx_path), providers=["CPUExecutionProvider"])
    bgr = [np.ascontiguousarray(crop[:, :, ::-1]) for crop in crops]  # insightface reads BGR, as cv2 does
    return np.asarray(model.get_feat(bgr), dtype=np.float32)


def test_the_pack_folder_holds_the_exported_onnx_file_alone(trained_pack: TrainedPack) -> None:
    assert sorted(p.name for p in trained_pack.pack_dir.iterdir()) == [trained_pack.onnx_name]
    manifest = load_manifest(trained_pack.export_dir)  # checks the export's own sha256
    assert file_sha256(trained_pack.onnx_path) == manifest.sha256
    assert (manifest.input.width, manifest.input.height, manifest.embedding_size) == (112, 112, 128)
    assert set(trained_pack.people).isdisjoint(excluded_people())  # nobody evaluation photos show


def test_insightface_loads_the_pack_as_an_arcface_recognition_model(trained_pack: TrainedPack) -> None:
    model = model_zoo.get_model(str(trained_pack.onnx_path), providers=["CPUExecutionProvider"])
    assert isinstance(model, model_zoo.ArcFaceONNX)
    assert model.taskname == "recognition"
    assert model.input_size == (112, 112)
    # No Sub/Mul normalisation in the graph: insightface feeds (x - 127.5) / 127.5, as trained.
    assert (model.input_mean, model.input_std) == (127.5, 127.5)


def test_insightface_embeds_a_face_as_the_service_does(trained_pack: TrainedPack, devtest: PairCrops) -> None:
    crops = devtest.images[:32]
    theirs = insightface_embeddings(trained_pack, crops)  # (32, 128)
    manifest = load_manifest(trained_pack.export_dir)
    ours = OnnxEmbedder(trained_pack.export_dir, manifest).embed(crops)  # (32, 128)
    cosine = (theirs * ours).sum(axis=1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosine.min() > 0.9999, cosine.min()


def test_it_verifies_unseen_people_better_than_an_untrained_network(
    trained_pack: TrainedPack, devtest: PairCrops
) -> None:
    embeddings = insightface_embeddings(trained_pack, devtest.images)  # (N, 128)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    usable = (devtest.rows_a >= 0) & (devtest.rows_b >= 0)
    scores = np.full(len(devtest.same), NO_FACE_SCORE)  # (P,) a pair without a face is a non-match
    scores[usable] = (unit[devtest.rows_a[usable]] * unit[devtest.rows_b[usable]]).sum(axis=1)
    trained_auc = verification.auc(scores[devtest.same], scores[~devtest.same])

    torch.manual_seed(0)
    untrained = untrained_network("mobilefacenet", embedding_size=128)
    untrained_auc = verify_pairs(untrained, devtest, torch.device("cpu"))["auc"]
    # On all 1,000 DevTest pairs (AUC's standard error about 0.015), seed 0 on this project's
    # CI machine: 0.716 against 0.679 untrained. Seeds 0-2 of the recipe, read through the
    # service's own crops: 0.763, 0.814, 0.776. The bars say the model learned, not that it is good.
    assert trained_auc >= untrained_auc + 0.025, (trained_auc, untrained_auc)
    assert trained_auc >= 0.70, (trained_auc, untrained_auc)


def test_a_second_build_returns_the_cached_pack_at_once(
    trained_pack: TrainedPack, settings: Settings
) -> None:
    started = time.perf_counter()
    again = build_trained_pack(settings, trained_pack.root.parent)
    assert time.perf_counter() - started < 2.0
    assert again == trained_pack
