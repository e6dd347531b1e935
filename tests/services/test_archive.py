"""unpack_evaluation on real zips of real photos.

What a user notices: an evaluation set in any image format the service
decodes (the AT&T faces are PGM files) is evaluated, not refused as empty,
and an archive without images says which files it looks for.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from app.core.errors import EmptyEvaluation
from app.pipeline.decode import IMAGE_SUFFIXES, read_image_file
from app.services.archive import unpack_evaluation
from tests.conftest import SHARED_DATA, require_data

ATT_FACES = SHARED_DATA / "grayscale" / "att_faces"
AWKWARD = SHARED_DATA / "awkward"


def zip_files(path: Path, members: dict[str, Path]) -> Path:
    """A zip at ``path`` holding each real file under its archive name."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in members.items():
            archive.write(source, name)
    return path


def test_pgm_and_tiff_photos_in_identity_folders_are_picked_up(tmp_path: Path) -> None:
    members = {
        f"att/{person}/{number}.pgm": require_data(ATT_FACES / person / f"{number}.pgm")
        for person in ("s1", "s2")
        for number in (1, 2, 3)
    }
    members["att/scans/page.tif"] = require_data(AWKWARD / "multipage.tif")
    upload = zip_files(tmp_path / "set.zip", members)

    with upload.open("rb") as stream:
        evaluation = unpack_evaluation(stream, tmp_path / "set")

    found = {
        path.relative_to(evaluation.folder).as_posix(): identity
        for path, identity in evaluation.images.items()
    }
    assert found == {name: name.split("/")[1] for name in members}
    assert evaluation.identities == 3
    assert evaluation.pairs is None  # no pairs.txt: every pair of images is compared
    first = next(path for path in evaluation.images if path.suffix == ".pgm")
    assert read_image_file(first).shape == (112, 92, 3)  # what the AT&T photos are: 92×112 grey


def test_an_archive_without_images_names_the_suffixes_it_looks_for(tmp_path: Path) -> None:
    upload = zip_files(tmp_path / "notes.zip", {"notes/README.md": require_data(SHARED_DATA / "README.md")})
    with upload.open("rb") as stream, pytest.raises(EmptyEvaluation) as refused:
        unpack_evaluation(stream, tmp_path / "set")
    assert refused.value.status == 400
    assert all(suffix in refused.value.message for suffix in IMAGE_SUFFIXES)
