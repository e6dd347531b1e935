"""Data preparation on real LFW photos with the real detector, splits and the PK sampler.

What a user notices: `prepare` turns a folder per person into crops framed like
the service frames faces, lists every photo it could not use (and why) instead
of dropping it, keeps evaluation identities out when asked, and the training
data is split and batched as configured.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.core.settings import Settings
from app.pipeline.decode import read_image_file
from app.pipeline.face_pipeline import central_face
from app.pipeline.geometry import align_to_template, normalise_pixels, template_for_size
from tests.conftest import LFW_ROOT, SHARED_DATA, require_data
from training.data.dataset import (
    BatchNormaliser,
    CropDataset,
    CropIndex,
    hold_out_images,
    load_crops,
    split_identities,
)
from training.data.prepare import (
    FAILURES_NAME,
    SUMMARY_NAME,
    FaceCropper,
    IdentitySelection,
    names_in_pair_list,
    prepare_identities,
    read_failures,
    select_identities,
)
from training.data.samplers import PKBatchSampler

PEOPLE = ("Alvaro_Uribe", "Andre_Agassi", "Bill_Gates", "Gloria_Macapagal_Arroyo", "Jennifer_Lopez")
CROP = 64


@pytest.fixture(scope="module")
def cropper(settings: Settings) -> FaceCropper:
    return FaceCropper.from_settings(settings, CROP)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five LFW people (4 photos each), plus a landscape and a corrupt file filed under one of them."""
    root = tmp_path_factory.mktemp("raw")
    for name in PEOPLE:
        photos = sorted(require_data(LFW_ROOT / name).glob("*.jpg"))[:4]
        (root / name).mkdir()
        for photo in photos:
            shutil.copy(photo, root / name / photo.name)
    shutil.copy(require_data(SHARED_DATA / "negatives" / "brick.png"), root / PEOPLE[0] / "brick.png")
    (root / PEOPLE[1] / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "Lonely_Person").mkdir()  # one photo: below --min-images 2
    shutil.copy(sorted((LFW_ROOT / "Aaron_Eckhart").glob("*.jpg"))[0], root / "Lonely_Person" / "a.jpg")
    return root


@pytest.fixture(scope="module")
def prepared(source: Path, cropper: FaceCropper, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crops")
    prepare_identities(source, out, cropper, IdentitySelection(min_images=2), progress=False)
    return out


def test_prepare_writes_one_aligned_crop_per_usable_photo_and_lists_the_rest(
    prepared: Path, source: Path
) -> None:
    for name in PEOPLE:
        assert len(list((prepared / name).glob("*.png"))) == 4, name
    assert not (prepared / "Lonely_Person").exists()  # fewer photos than --min-images

    failures = dict(read_failures(prepared))
    assert failures == {
        str(source / PEOPLE[0] / "brick.png"): "no face found",
        str(source / PEOPLE[1] / "broken.jpg"): "unreadable (invalid_image)",
    }
    summary = json.loads((prepared / SUMMARY_NAME).read_text())
    counts = (summary["identities"], summary["images"], summary["failures"], summary["size"])
    assert counts == (5, 20, 2, CROP)
    with (prepared / FAILURES_NAME).open() as handle:
        assert next(csv.reader(handle)) == ["path", "reason"]


def test_a_crop_is_the_face_the_service_would_cut(prepared: Path, cropper: FaceCropper) -> None:
    photo = sorted((LFW_ROOT / PEOPLE[2]).glob("*.jpg"))[0]
    image = read_image_file(photo)
    face = central_face(cropper.detector.detect(image), image.shape)
    assert face is not None
    expected = align_to_template(image, face.landmarks, template_for_size(CROP), (CROP, CROP))
    stored = load_crops([prepared / PEOPLE[2] / (photo.stem + ".png")])
    assert np.array_equal(stored[0], expected)  # PNG is lossless: the very pixels the service aligns


def test_a_rerun_keeps_existing_crops(source: Path, prepared: Path, cropper: FaceCropper) -> None:
    before = {p: p.stat().st_mtime_ns for p in prepared.rglob("*.png")}
    summary = prepare_identities(source, prepared, cropper, IdentitySelection(min_images=2), progress=False)
    assert summary.images == 20 and len(summary.failures) == 2
    assert {p: p.stat().st_mtime_ns for p in prepared.rglob("*.png")} == before


def test_selection_excludes_the_people_of_an_evaluation_pair_list() -> None:
    dev_test = require_data(LFW_ROOT.parent / "pairsDevTest.txt")
    excluded = names_in_pair_list(dev_test)
    assert "Abdullah_Gul" in excluded  # the list's first line
    chosen = select_identities(LFW_ROOT, IdentitySelection(min_images=10, exclude=excluded))
    names = {name for name, _ in chosen}
    assert names and not names & excluded
    assert all(len(images) >= 10 for _, images in chosen)
    capped = select_identities(
        LFW_ROOT, IdentitySelection(min_images=10, max_identities=3, max_images_per_identity=2)
    )
    assert [len(images) for _, images in capped] == [2, 2, 2]


def test_identity_split_is_disjoint_and_image_hold_out_keeps_the_label_space(prepared: Path) -> None:
    index = CropIndex.scan(prepared)
    train, held = split_identities(index, 0.4, seed=1)
    assert set(train.identities).isdisjoint(held.identities)
    assert set(train.identities) | set(held.identities) == set(PEOPLE)
    assert len(train) + len(held) == len(index) and train.num_classes == 3
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]  # relabelled for a 3-class head

    kept, held_images = hold_out_images(index, 1, seed=0)
    assert len(held_images) == 5 and len(kept) == 15
    assert kept.identities == held_images.identities == index.identities
    assert sorted(held_images.labels.tolist()) == [0, 1, 2, 3, 4]
    assert set(kept.paths).isdisjoint(held_images.paths)


def test_pk_sampler_gives_p_identities_with_k_images_each(prepared: Path) -> None:
    index = CropIndex.scan(prepared)
    sampler = PKBatchSampler(index.labels, p=3, k=6, batches=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 4
    for batch in batches:
        labels = index.labels[batch]
        identities, counts = np.unique(labels, return_counts=True)
        assert len(identities) == 3 and counts.tolist() == [6, 6, 6]  # 4 photos each: some repeat
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new draw each epoch
    with pytest.raises(ValueError, match="identities"):
        PKBatchSampler(index.labels, p=6, k=2, batches=1)


def test_batches_are_normalised_as_the_service_normalises(prepared: Path) -> None:
    dataset = CropDataset(CropIndex.scan(prepared))
    collate = BatchNormaliser((127.5,) * 3, (127.5,) * 3)
    pixels, labels = collate([dataset[0], dataset[5]])
    assert pixels.shape == (2, 3, CROP, CROP) and labels.tolist() == [0, 1]
    expected = normalise_pixels(dataset.images[[0, 5]], (127.5,) * 3, (127.5,) * 3)
    assert np.array_equal(pixels.numpy(), expected)
