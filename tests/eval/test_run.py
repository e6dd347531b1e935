"""``facerec eval pairs`` and ``facerec eval identify`` on small protocol files written here."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core.settings import Settings
from app.eval.embedding import embed_files
from app.eval.run import evaluate_identification, evaluate_pairs
from app.pipeline.face_pipeline import FacePipeline
from tests.conftest import LFW_ROOT, SHARED_DATA, require_data

DEV_TEST = SHARED_DATA / "lfw" / "pairsDevTest.txt"


def _lfw_pair_lines(same: int, different: int) -> tuple[list[str], list[str]]:
    lines = require_data(DEV_TEST).read_text().splitlines()
    count = int(lines[0])
    return lines[1 : 1 + same], lines[1 + count : 1 + count + different]


def test_eval_pairs_on_a_view1_style_list(pipeline: FacePipeline, tmp_path: Path) -> None:
    same, different = _lfw_pair_lines(15, 15)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("\n".join(["15", *same, *different]) + "\n")
    summary = evaluate_pairs(pipeline, LFW_ROOT, pairs_file, progress=False, plot=tmp_path / "det.png")
    assert summary["pairs"] == 30 and summary["folds"] == 1
    assert summary["accuracy_mean"] >= 0.9
    assert summary["auc"] >= 0.95
    assert summary["no_face"]["count"] == 0
    assert (tmp_path / "det.png").stat().st_size > 10_000


def test_eval_pairs_cli_reads_the_ten_fold_format(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    same, different = _lfw_pair_lines(10, 10)
    # Two folds of 5 + 5, in View 2's layout (header "folds<TAB>pairs per kind").
    body = same[:5] + different[:5] + same[5:] + different[5:]
    pairs_file = tmp_path / "pairs_folds.txt"
    pairs_file.write_text("\n".join(["2\t5", *body]) + "\n")
    out = tmp_path / "summary.json"
    code = main(
        ["--models-dir", str(settings.models_dir), "eval", "pairs", "--root", str(LFW_ROOT)]
        + ["--pairs", str(pairs_file), "--json", str(out), "--cache", str(tmp_path / "cache")]
    )
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["folds"] == 2 and summary["pairs"] == 20
    assert summary["accuracy_mean"] >= 0.85
    assert {"auc", "eer", "tar_at_far", "seconds", "accuracy_std"} <= summary.keys()
    assert any((tmp_path / "cache").rglob("*.npy")), "embeddings were not cached"


def test_eval_identify_closed_and_open_set(pipeline: FacePipeline, tmp_path: Path) -> None:
    identities = require_data(SHARED_DATA / "identities")
    rows = list(csv.DictReader((identities / "labels.csv").open()))
    by_person: dict[str, list[str]] = {}
    for row in rows:
        by_person.setdefault(row["identity"], []).append(row["path"])
    protocol = tmp_path / "protocol.csv"
    with protocol.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "role"])
        for person, paths in sorted(by_person.items()):
            if len(paths) < 2:
                continue
            writer.writerow([paths[0], person, "gallery"])
            for path in paths[1:3]:
                writer.writerow([path, person, "mated_probe"])
        strangers = sorted(p for p in LFW_ROOT.iterdir() if p.is_dir())[:20]
        for folder in strangers:
            image = sorted(folder.glob("*.jpg"))[0]
            writer.writerow([os.path.relpath(image, identities), folder.name, "nonmated_probe"])
    summary = evaluate_identification(pipeline, identities, protocol, progress=False)
    assert summary["gallery_identities"] >= 15
    assert summary["rank_1"] >= 0.85
    assert summary["rank_5"] >= summary["rank_1"]
    assert set(summary["fnir_at_fpir"]) == set(summary["fnir_at_fpir_raw"]) == {"0.1", "0.01", "0.001"}
    assert summary["statistic"] == "cohort_gap(10)"  # the default pack's manifest
    assert 0.0 <= summary["fnir_at_fpir"]["0.1"]["fnir"] <= 1.0


@pytest.mark.parametrize("bad", ["not a header\nx y z\n", "1\nname 1\n"])
def test_eval_pairs_rejects_malformed_lists(pipeline: FacePipeline, tmp_path: Path, bad: str) -> None:
    pairs_file = tmp_path / "bad.txt"
    pairs_file.write_text(bad)
    with pytest.raises(ValueError):
        evaluate_pairs(pipeline, LFW_ROOT, pairs_file, progress=False)


def test_cached_embeddings_are_kept_apart_per_reading_mode(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    """An embedding cached in one reading mode (mirrored crops, mirrored landmarks) never serves another."""
    photo = require_data(LFW_ROOT / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    single = FacePipeline.from_settings(settings.model_copy(update={"mirror_faces": False}))
    both = FacePipeline.from_settings(settings.model_copy(update={"mirror_landmarks": True}))
    cache = tmp_path / "cache"
    mirrored = embed_files(pipeline, [photo], cache_dir=cache, progress=False).embeddings[photo]
    read_once = embed_files(single, [photo], cache_dir=cache, progress=False).embeddings[photo]
    read_twice = embed_files(both, [photo], cache_dir=cache, progress=False).embeddings[photo]
    assert len(list(cache.rglob("*.npy"))) == 3
    assert not np.allclose(mirrored, read_once)
    assert not np.allclose(mirrored, read_twice)
    again = embed_files(single, [photo], cache_dir=cache, progress=False).embeddings[photo]
    assert np.array_equal(again, read_once)
