"""Importing InsightFace packs through the insightface library.

What a user notices: `facerec models import` installs the recogniser (and the
SCRFD detector) of a pack folder as insightface itself reads them, skips what
the service does not use and says why, embeds faces exactly as the model's
own export does, records the pack's licence and whether it was calibrated,
and refuses bad input with a clear message.

The recogniser is a MobileFaceNet exported by ``training.export``: untrained
here (cheap, the same graph and conventions), trained by our ``training``
package in ``test_a_trained_pack_embeds_as_its_export`` (the session fixture
``trained_pack``).
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from insightface.model_zoo import get_model, model_license
from onnx import TensorProto, helper

from app.cli import main
from app.core.arrays import ImageArray
from app.core.errors import ModelPackError
from app.core.settings import Settings
from app.eval.calibrate import CALIBRATION_FARS, calibrate_on_pair_list, write_calibration
from app.model_packs.catalog import Calibrate, embedder_pipeline, installed_models
from app.model_packs.insightface_pack import import_pack
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import template_for_size
from app.pipeline.manifest import ModelManifest, file_sha256, load_manifest
from app.pipeline.scrfd import ScrfdDetector
from tests.conftest import LFW_ROOT, SHARED_DATA, load, require_data
from tests.model_packs.conftest import (
    RECOGNISER_FILE,
    ExportedModel,
    models_with_the_detector,
    small_pair_list,
)
from tests.pipeline.scrfd_graph import write_scrfd_graph

IDENTITIES = SHARED_DATA / "identities"
DEFAULT_TERMS = "InsightFace non-commercial research terms (no MODEL.LICENSE)"


def write_dummy(path: Path, side: int, outputs: int) -> Path:
    """A graph shaped like an InsightFace landmark (192) or attribute (96) model: its only trait we need."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["fc1"]),
        ],
        "dummy",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, outputs])],
        [helper.make_tensor("weights", TensorProto.FLOAT, [3, outputs], np.ones(3 * outputs).tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def pack_folder(root: Path, name: str, recogniser: ExportedModel | None, *extra: str) -> Path:
    """A folder laid out like an InsightFace pack: the recogniser and the ``extra`` models named."""
    folder = root / name
    folder.mkdir(parents=True)
    if recogniser is not None:
        shutil.copy(recogniser.pack_dir / RECOGNISER_FILE, folder / RECOGNISER_FILE)
    makers: dict[str, Callable[[Path], Path]] = {
        "2d106det.onnx": lambda p: write_dummy(p, 192, 212),
        "genderage.onnx": lambda p: write_dummy(p, 96, 3),
        "det_stand_in.onnx": write_scrfd_graph,
    }
    for file in extra:
        makers[file](folder / file)
    return folder


def pair_list_calibration(pairs: Path) -> Calibrate:
    def calibrate(pipeline: FacePipeline, manifest_path: Path) -> None:
        write_calibration(manifest_path, calibrate_on_pair_list(pipeline, LFW_ROOT, pairs, progress=False))

    return calibrate


def identity_photos(people: int = 5) -> list[ImageArray]:
    """The first photo of each of the first ``people`` identities in the shared set."""
    with require_data(IDENTITIES / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first: dict[str, str] = {}
    for row in rows:
        first.setdefault(row["identity"], row["path"])
    return [load(IDENTITIES / path) for path in list(first.values())[:people]]


def assert_embeds_as_export(exported: ExportedModel, models_dir: Path, settings: Settings) -> None:
    result = import_pack(exported.pack_dir, models_dir, settings=settings)
    (manifest,) = result.installed
    export = load_manifest(exported.export_dir)
    # What insightface read off the graph is what the export wrote.
    assert (manifest.input.width, manifest.input.height) == (export.input.width, export.input.height)
    assert manifest.input.mean == export.input.mean and manifest.input.std == export.input.std
    assert manifest.input.color_order == export.input.color_order == "RGB"
    assert manifest.template == export.template
    assert manifest.embedding_size == export.embedding_size

    imported = embedder_pipeline(models_dir / manifest.name, settings)  # the default detector
    original = FacePipeline.from_settings(settings, embedder=OnnxEmbedder(exported.export_dir, export))
    faces = 0
    for image in identity_photos():
        ours, theirs = imported.analyze(image), original.analyze(image)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            cosine = float(
                a.embedding @ b.embedding / np.linalg.norm(a.embedding) / np.linalg.norm(b.embedding)
            )
            assert cosine >= 0.9999
            faces += 1
    assert faces >= 5


def test_a_pack_folder_is_read_through_insightface(untrained_pack: ExportedModel, tmp_path: Path) -> None:
    pack = pack_folder(tmp_path, "buffalo_test", untrained_pack, "2d106det.onnx", "genderage.onnx")
    models = tmp_path / "models"
    result = import_pack(pack, models, settings=Settings(models_dir=models))

    (manifest,) = result.installed
    assert manifest.name == "buffalo_test" and manifest.kind == "embedder"
    skipped = {s.file: s.reason for s in result.skipped}
    assert set(skipped) == {"2d106det.onnx", "genderage.onnx"}
    assert "landmark" in skipped["2d106det.onnx"] and "attribute" in skipped["genderage.onnx"]

    insightface_model = get_model(str(pack / RECOGNISER_FILE), providers=["CPUExecutionProvider"])
    spec = manifest.input
    assert (spec.width, spec.height) == tuple(insightface_model.input_size) == (112, 112)
    assert spec.mean == [insightface_model.input_mean] * 3 == [127.5] * 3
    assert spec.std == [insightface_model.input_std] * 3 == [127.5] * 3
    assert (spec.color_order, spec.layout) == ("RGB", "NCHW")
    assert manifest.template == template_for_size(112).astype(float).round(4).tolist()
    assert (manifest.embedding_size, manifest.metric) == (128, "cosine")
    assert (manifest.source_format, manifest.detector) == ("insightface", None)

    installed = models / "buffalo_test"
    assert sorted(p.name for p in installed.iterdir()) == ["manifest.json", RECOGNISER_FILE]
    assert manifest.sha256 == file_sha256(pack / RECOGNISER_FILE)
    assert load_manifest(installed, verify=True) == manifest
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_an_untrained_pack_embeds_as_its_export(
    untrained_pack: ExportedModel, tmp_path: Path, default_settings: Settings
) -> None:
    assert_embeds_as_export(untrained_pack, tmp_path / "models", default_settings)


def test_a_trained_pack_embeds_as_its_export(
    trained_pack: ExportedModel, tmp_path: Path, default_settings: Settings
) -> None:
    assert_embeds_as_export(trained_pack, tmp_path / "models", default_settings)


def test_without_model_licence_the_non_commercial_terms_apply(
    untrained_pack: ExportedModel, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    (manifest,) = import_pack(untrained_pack.pack_dir, models, settings=Settings()).installed
    licence = manifest.licence_status
    assert licence is not None
    assert (licence.status, licence.commercial_use, licence.terms) == (
        "default_non_commercial",
        False,
        DEFAULT_TERMS,
    )
    assert manifest.licence == DEFAULT_TERMS
    (listed,) = installed_models(models)
    assert listed.commercial_use is False and listed.summary()["licence_status"] == "default_non_commercial"


def test_a_signed_licence_is_verified_and_its_expiry_shows_later(
    untrained_pack: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only InsightFace can sign a licence its bundled keys accept; trusting a test
    # key instead is the one way to see a valid, and then an expired, licence.
    key = Ed25519PrivateKey.generate()
    monkeypatch.setattr(model_license, "_trusted_keys", lambda directory=None: (key.public_key(),))
    pack = pack_folder(tmp_path, "licensed_pack", untrained_pack)
    document = {
        "license_version": 1,
        "license_id": "test-0001",
        "issuer": "InsightFace",
        "model_id": "licensed_pack",
        "grant": "commercial",
        "customer": "Example Ltd",
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2099-01-01T00:00:00Z",
    }
    signature = key.sign(model_license.canonical_license_bytes(document))
    document["signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    (pack / "MODEL.LICENSE").write_text(json.dumps(document))

    models = tmp_path / "models"
    (manifest,) = import_pack(pack, models, name="licensed", settings=Settings()).installed
    assert manifest.licence_status is not None
    assert (manifest.licence_status.status, manifest.licence_status.commercial_use) == (
        "verified_commercial",
        True,
    )
    assert manifest.licence.startswith("InsightFace commercial licence test-0001 for licensed_pack")
    assert (models / "licensed" / "MODEL.LICENSE").read_bytes() == (pack / "MODEL.LICENSE").read_bytes()

    (today,) = installed_models(models)
    assert today.licence is not None and today.licence.status == "verified_commercial"
    (later,) = installed_models(models, now=datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert later.licence is not None
    assert (later.licence.status, later.commercial_use) == ("expired", False)


def test_a_licence_that_does_not_verify_is_not_the_default(
    untrained_pack: ExportedModel, tmp_path: Path
) -> None:
    pack = pack_folder(tmp_path, "forged", untrained_pack)
    (pack / "MODEL.LICENSE").write_text(json.dumps({"grant": "commercial"}))
    (manifest,) = import_pack(pack, tmp_path / "models", settings=Settings()).installed
    assert manifest.licence_status is not None
    assert (manifest.licence_status.status, manifest.licence_status.commercial_use) == ("invalid", None)


def test_an_uncalibrated_import_says_so(untrained_pack: ExportedModel, tmp_path: Path) -> None:
    result = import_pack(untrained_pack.pack_dir, tmp_path / "models", settings=Settings())
    (manifest,) = result.installed
    assert manifest.thresholds == [] and not manifest.calibrated
    assert result.uncalibrated == ["mfn_pack"]
    assert str(manifest.evaluation["calibrated_on"]).startswith("not calibrated")
    assert "facerec models calibrate mfn_pack" in str(manifest.evaluation["calibrated_on"])


def test_a_calibrated_import_carries_thresholds(
    untrained_pack: ExportedModel, tmp_path: Path, default_settings: Settings
) -> None:
    pairs = small_pair_list(tmp_path)
    result = import_pack(
        untrained_pack.pack_dir,
        tmp_path / "models",
        settings=default_settings,
        calibrate=pair_list_calibration(pairs),
    )
    (manifest,) = result.installed
    assert manifest.calibrated and result.uncalibrated == []
    assert [p.far for p in manifest.thresholds] == list(CALIBRATION_FARS)
    thresholds = [p.threshold for p in manifest.thresholds]
    assert thresholds == sorted(thresholds)  # a lower FAR needs a higher similarity
    assert str(manifest.evaluation["calibrated_on"]).endswith(pairs.name)
    assert load_manifest(tmp_path / "models" / "mfn_pack", verify=True) == manifest


def test_a_pack_with_scrfd_installs_its_detector_beside_the_recogniser(
    untrained_pack: ExportedModel, tmp_path: Path
) -> None:
    pack = pack_folder(tmp_path, "bundle", untrained_pack, "det_stand_in.onnx", "2d106det.onnx")
    models = tmp_path / "models"
    result = import_pack(pack, models, settings=Settings(models_dir=models))
    by_name = {m.name: m for m in result.installed}
    assert set(by_name) == {"bundle", "bundle-detector"}
    assert by_name["bundle"].detector == "bundle-detector"
    detector = by_name["bundle-detector"]
    assert (detector.kind, detector.detector_format, detector.source_format) == (
        "detector",
        "scrfd",
        "insightface",
    )
    assert (detector.input.width, detector.input.mean, detector.input.std) == (640, [127.5] * 3, [128.0] * 3)
    assert [s.file for s in result.skipped] == ["2d106det.onnx"]

    # The recogniser runs behind its own pack's detector, wherever the configured one is.
    pipeline = embedder_pipeline(models / "bundle", Settings(models_dir=tmp_path / "elsewhere"))
    assert isinstance(pipeline.detector, ScrfdDetector)
    image = np.zeros((960, 1280, 3), np.uint8)
    image[320:384, 448:512] = (255, 0, 0)  # the stand-in's "face" (tests/pipeline/scrfd_graph.py)
    (face,) = pipeline.analyze(image)
    assert face.embedding.shape == (128,)


def test_a_detector_alone_takes_the_pack_name(tmp_path: Path) -> None:
    pack = pack_folder(tmp_path, "scrfd_only", None, "det_stand_in.onnx")
    (manifest,) = import_pack(pack, tmp_path / "models", settings=Settings()).installed
    assert (manifest.name, manifest.kind, manifest.detector_format) == ("scrfd_only", "detector", "scrfd")


def test_a_single_onnx_file_is_named_after_its_stem(untrained_pack: ExportedModel, tmp_path: Path) -> None:
    (manifest,) = import_pack(
        untrained_pack.pack_dir / RECOGNISER_FILE, tmp_path / "m", settings=Settings()
    ).installed
    assert manifest.name == "w_mobilefacenet"


def test_bad_inputs_are_refused_clearly(untrained_pack: ExportedModel, tmp_path: Path) -> None:
    models = tmp_path / "models"
    settings = Settings()

    def refused(path: Path, match: str, name: str | None = None) -> None:
        with pytest.raises(ModelPackError, match=match):
            import_pack(path, models, name=name, settings=settings)

    refused(tmp_path / "nowhere", "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(empty, "no ONNX file")
    refused(
        pack_folder(tmp_path, "attributes", None, "2d106det.onnx", "genderage.onnx"), "no recogniser or SCRFD"
    )
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    refused(text, "neither a pack folder nor an .onnx file")
    refused(untrained_pack.export_dir, "already a facerec model folder")
    refused(untrained_pack.pack_dir, "is not 1-64", name="../escape")
    twins = pack_folder(tmp_path, "twins", untrained_pack)
    shutil.copy(twins / RECOGNISER_FILE, twins / "second.onnx")
    refused(twins, "holds 2 recognisers")

    import_pack(untrained_pack.pack_dir, models, settings=settings)
    refused(untrained_pack.pack_dir, "mfn_pack already installed")
    (models / "mfn_pack" / "stale").write_text("left by the old install")
    import_pack(untrained_pack.pack_dir, models, settings=settings, force=True)
    assert not (models / "mfn_pack" / "stale").exists()


def test_an_unreadable_file_is_skipped_with_the_reason(untrained_pack: ExportedModel, tmp_path: Path) -> None:
    pack = pack_folder(tmp_path, "with_junk", untrained_pack)
    (pack / "broken.onnx").write_bytes(b"not an onnx graph")
    result = import_pack(pack, tmp_path / "models", settings=Settings())
    assert [m.name for m in result.installed] == ["with_junk"]
    ((file, reason),) = [(s.file, s.reason) for s in result.skipped]
    assert file == "broken.onnx" and reason.startswith("insightface cannot read it")


def test_the_catalog_lists_a_broken_folder_with_its_error(
    untrained_pack: ExportedModel, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    import_pack(untrained_pack.pack_dir, models, settings=Settings())
    (models / "broken").mkdir()
    (models / "broken" / "manifest.json").write_text("{")
    listed = {m.name: m for m in installed_models(models)}
    assert set(listed) == {"broken", "mfn_pack"}
    assert listed["broken"].manifest is None and listed["broken"].error
    assert listed["mfn_pack"].size_bytes > (untrained_pack.pack_dir / RECOGNISER_FILE).stat().st_size


def test_the_command_line_imports_lists_and_calibrates(
    untrained_pack: ExportedModel,
    tmp_path: Path,
    default_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models, command = models_with_the_detector(tmp_path, default_settings)
    detector = default_settings.detector

    assert main([*command, "import", str(untrained_pack.pack_dir), "--name", "mfn"]) == 0
    out, err = capsys.readouterr()
    assert "installed mfn (embedder" in out and f"licence: {DEFAULT_TERMS} (commercial use: no)" in out
    assert err.startswith("uncalibrated: mfn has no thresholds")

    assert main([*command, "import", str(untrained_pack.pack_dir), "--name", "mfn"]) == 2
    assert "already installed" in capsys.readouterr().err

    assert main([*command, "list", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"mfn", detector}
    assert (listed["mfn"]["calibrated"], listed["mfn"]["commercial_use"]) == (False, False)
    assert listed["mfn"]["embedding_size"] == 128 and listed["mfn"]["licence"] == DEFAULT_TERMS

    pairs = small_pair_list(tmp_path)
    calibrate = ["--calibrate-root", str(LFW_ROOT), "--calibrate-pairs", str(pairs)]
    assert main([*command, "calibrate", "mfn", *calibrate]) == 0
    assert "mfn: FAR 0.001 at similarity" in capsys.readouterr().out
    assert main([*command, "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mfn:"))
    assert line == (
        f"mfn: embedder, 112x112 RGB, 128-d cosine, calibrated, licence: {DEFAULT_TERMS} (commercial use: no)"
    )
    assert ModelManifest.model_validate_json((models / "mfn" / "manifest.json").read_text()).calibrated
