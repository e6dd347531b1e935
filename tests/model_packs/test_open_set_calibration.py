"""`facerec models calibrate --open-set-root`: an installed model gets its own decision score and thresholds.

The untrained MobileFaceNet of the model-pack tests, imported as a pack,
calibrated on open-set protocols drawn from a folder of LFW people.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.core.settings import Settings
from app.pipeline.manifest import ModelManifest
from app.services.thresholds import default_thresholds
from tests.conftest import LFW_ROOT
from tests.model_packs.conftest import ExportedModel, models_with_the_detector, small_pair_list


def test_calibrating_with_an_open_set_folder_gives_the_model_a_decision_score(
    untrained_pack: ExportedModel,
    tmp_path: Path,
    default_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--open-set-root`: identify thresholds by target FPIR on a cohort score, measured for this model."""
    models, command = models_with_the_detector(tmp_path, default_settings)
    assert main([*command, "import", str(untrained_pack.pack_dir), "--name", "mfn"]) == 0
    # 40 people with two photos and 620 with one: 310 strangers per drawn protocol, enough for FPIR 0.01.
    folder = tmp_path / "open-set"
    people = sorted(p for p in LFW_ROOT.iterdir() if p.is_dir())
    several = [p for p in people if len(list(p.glob("*.jpg"))) >= 2][:40]
    single = [p for p in people if len(list(p.glob("*.jpg"))) == 1][:620]
    for person in several + single:
        (folder / person.name).mkdir(parents=True)
        for image in sorted(person.glob("*.jpg"))[:2]:
            (folder / person.name / image.name).symlink_to(image)
    pairs = small_pair_list(tmp_path)
    calibrate = ["--calibrate-root", str(LFW_ROOT), "--calibrate-pairs", str(pairs)]
    capsys.readouterr()
    assert main([*command, "calibrate", "mfn", *calibrate, "--open-set-root", str(folder)]) == 0
    assert "mfn: FPIR 0.01 with 350 subjects at decision score" in capsys.readouterr().out

    manifest = ModelManifest.model_validate_json((models / "mfn" / "manifest.json").read_text())
    assert manifest.open_set is not None
    assert manifest.open_set.score.kind == "cohort_gap" and manifest.open_set.score.cohort == 10
    assert [p.target_fpir for p in manifest.open_set.points] == [0.1, 0.01]
    assert manifest.open_set.default_point().nonmated == 310
    assert "seeds 1, 2, 3, 4, 5" in manifest.open_set.protocol
    defaults = default_thresholds(manifest)
    assert (defaults.identify, defaults.identify_statistic) == (
        manifest.open_set.default_point().threshold,
        "cohort_gap(10)",
    )
