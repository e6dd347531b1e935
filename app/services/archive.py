"""Unpacking an uploaded evaluation set safely, and finding its layout.

Two layouts: one folder per identity (``<identity>/<image>``, at any depth),
or LFW-style ``<Name>/<Name>_0001.jpg`` images with a ``pairs.txt`` (LFW
pair-list format) anywhere in the archive. Only images and the pair list are
extracted; names that would escape the folder are refused.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from app.core.errors import EmptyEvaluation, InvalidArchive
from app.eval.protocols import PairList, read_lfw_pairs
from app.pipeline.decode import IMAGE_SUFFIXES

MAX_MEMBERS = 50_000
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3  # a zip bomb stops here, before anything is written


@dataclass(frozen=True)
class EvaluationSet:
    folder: Path  # the temporary folder holding the extracted files; delete it when done
    images: dict[Path, str]  # image -> identity (its folder's name)
    pairs: PairList | None  # from pairs.txt, else None: every pair of the images is compared

    @property
    def identities(self) -> int:
        return len(set(self.images.values()))


def unpack_evaluation(upload: IO[bytes], folder: Path) -> EvaluationSet:
    """Extract ``upload`` (a zip) into ``folder`` and describe it; bad input raises a 400 error."""
    try:
        with zipfile.ZipFile(upload) as archive:
            members = _safe_members(archive)
            for member in members:
                target = folder.joinpath(*PurePosixPath(member.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        raise InvalidArchive(f"the upload is not a readable zip archive: {error}") from None
    images = {
        path: path.parent.name
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and path.parent != folder
    }
    if not images:
        raise EmptyEvaluation(
            f"the archive holds no images in identity folders ({', '.join(IMAGE_SUFFIXES)})",
            {"members": len(members)},
        )
    pairs_files = sorted(path for path in folder.rglob("*") if path.name.lower() == "pairs.txt")
    pairs = _read_pairs(pairs_files[0], images) if pairs_files else None
    return EvaluationSet(folder, images, pairs)


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidArchive(f"the archive has {len(infos)} entries; at most {MAX_MEMBERS} are accepted")
    if sum(info.file_size for info in infos) > MAX_UNCOMPRESSED_BYTES:
        raise InvalidArchive(f"the archive unpacks to more than {MAX_UNCOMPRESSED_BYTES // 1024**3} GiB")
    wanted = []
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise InvalidArchive(f"unsafe path in the archive: {info.filename!r}")
        if info.is_dir() or any(part.startswith(".") or part == "__MACOSX" for part in name.parts):
            continue
        if name.suffix.lower() in IMAGE_SUFFIXES or name.name.lower() == "pairs.txt":
            wanted.append(info)
    return wanted


def _read_pairs(pairs_file: Path, images: dict[Path, str]) -> PairList:
    """The pair list, its image root found as the folder holding the named identity folders."""
    roots = sorted({path.parent.parent for path in images})
    best: tuple[int, PairList] | None = None
    for root in roots:
        try:
            pair_list = read_lfw_pairs(root, pairs_file)
        except ValueError as error:
            raise InvalidArchive(f"pairs.txt is not an LFW pair list: {error}") from None
        present = sum(pair.path_a in images and pair.path_b in images for pair in pair_list.pairs)
        if best is None or present > best[0]:
            best = (present, pair_list)
    assert best is not None  # images is not empty, so there is a root
    present, pair_list = best
    if present < len(pair_list.pairs):
        missing = sorted(
            {
                str(path.relative_to(path.parent.parent))
                for pair in pair_list.pairs
                for path in (pair.path_a, pair.path_b)
                if path not in images
            }
        )
        raise InvalidArchive(
            f"pairs.txt names {len(missing)} images that are not in the archive",
            {"missing": missing[:10]},
        )
    return pair_list
