"""``facerec eval calibrate --manifest`` on the default model's real manifest seed.

What a user notices: recalibrating a model replaces its thresholds and the
figures the calibration measures, and keeps the notes and figures someone
wrote into the manifest by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app.cli import main
from app.core.settings import Settings
from app.eval.run import evaluate_pairs
from app.pipeline.face_pipeline import FacePipeline
from tests.conftest import LFW_ROOT, REPO_ROOT, SHARED_DATA, require_data

DLIB_SEED = REPO_ROOT / "app" / "model_packs" / "dlib-resnet-v1.json"
HAND_WRITTEN = ("note", "pairsDevTest_best_threshold_accuracy", "pairsDevTrain_accuracy")


def small_pair_list(path: Path, per_kind: int) -> Path:
    """The first ``per_kind`` same-person and different-person pairs of View 1 DevTest, in its format."""
    lines = require_data(SHARED_DATA / "lfw" / "pairsDevTest.txt").read_text().splitlines()
    count = int(lines[0])
    same, different = lines[1 : 1 + per_kind], lines[1 + count : 1 + count + per_kind]
    path.write_text("\n".join([str(per_kind), *same, *different]) + "\n")
    return path


def test_calibrating_into_a_manifest_keeps_its_hand_written_figures(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    seed = json.loads(DLIB_SEED.read_text())
    assert set(HAND_WRITTEN) <= seed["evaluation"].keys()  # else this test would prove nothing
    manifest = Path(shutil.copy(DLIB_SEED, tmp_path / "manifest.json"))
    # Named as in the shipped calibration, so the DevTest figures are the ones recomputed;
    # one list serves both steps, so the second reads every embedding from the cache.
    calibrate_on = small_pair_list(tmp_path / "pairsDevTrain.txt", 10)
    evaluate_on = Path(shutil.copy(calibrate_on, tmp_path / "pairsDevTest.txt"))
    cache, out = tmp_path / "cache", tmp_path / "calibration.json"
    code = main(
        ["--models-dir", str(settings.models_dir), "eval", "calibrate", "--root", str(LFW_ROOT)]
        + ["--pairs", str(calibrate_on), "--evaluate", str(evaluate_on), "--manifest", str(manifest)]
        + ["--json", str(out), "--cache", str(cache)]
    )
    assert code == 0
    calibration = json.loads(out.read_text())
    written = json.loads(manifest.read_text())

    evaluation = written["evaluation"]
    assert {key: evaluation[key] for key in HAND_WRITTEN} == {
        key: seed["evaluation"][key] for key in HAND_WRITTEN
    }
    assert list(evaluation) == list(seed["evaluation"])  # updated in place, nothing dropped or added
    assert (
        evaluation["calibrated_on"]
        == f"all pairs among the {calibration['images']} images of pairsDevTrain.txt"
    )
    assert evaluation["impostor_comparisons"] == calibration["impostor_comparisons"] < 1_000
    measured = evaluate_pairs(pipeline, LFW_ROOT, evaluate_on, cache_dir=cache, progress=False)
    assert (
        evaluation["pairsDevTest_accuracy"],
        evaluation["pairsDevTest_auc"],
        evaluation["pairsDevTest_eer"],
    ) == (
        measured["accuracy_mean"],
        measured["auc"],
        measured["eer"],
    )

    assert [t["far"] for t in written["thresholds"]] == [1e-2, 1e-3, 1e-4, 1e-5]
    assert [t["threshold"] for t in written["thresholds"]] == [
        round(point["threshold"], 6) for point in calibration["thresholds"]
    ]
    assert written["thresholds"] != seed["thresholds"]
    untouched = seed.keys() - {"thresholds", "evaluation"}
    assert {key: written[key] for key in untouched} == {key: seed[key] for key in untouched}
