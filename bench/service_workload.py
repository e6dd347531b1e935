"""What the service benchmark loads: a gallery of LFW faces enrolment would accept, and held-out probes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from service_cache import EmbeddingCache

from app.core.settings import Settings
from app.db.collections import ensure_default_collection
from app.db.faces import add_face
from app.db.session import (
    begin_write,
    create_engine_for,
    database_url,
    make_session_factory,
    upgrade_database,
)
from app.db.subjects import get_or_create_subject
from app.services.enrollment import quality_problems

MATED_PROBES, NONMATED_PROBES = 80, 40


@dataclass(frozen=True)
class LfwSplit:
    candidates: list[Path]  # gallery images, in the order the gallery is filled
    held_out: dict[str, Path]  # person → an image that never enters the gallery (a mated probe)


def split_lfw(root: Path) -> LfwSplit:
    """People with several images first (their last image held out), then people with one."""
    several: list[Path] = []
    single: list[Path] = []
    held_out: dict[str, Path] = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 2:
            held_out[person.name] = images[-1]
            several.extend(images[:-1])
        else:
            single.extend(images)
    return LfwSplit(several + single, held_out)


@dataclass(frozen=True)
class Workload:
    gallery: list[Path]
    mated: list[Path]  # held-out images of gallery people
    nonmated: list[Path]  # images of people not in the gallery
    skipped: int  # candidates enrolment would refuse (no face, too small, low score)


def choose_workload(cache: EmbeddingCache, split: LfwSplit, size: int) -> Workload:
    """The first ``size`` candidates enrolment would accept, and probes that are none of them."""
    gallery: list[Path] = []
    position = 0  # candidates looked at
    while len(gallery) < size and position < len(split.candidates):
        path = split.candidates[position]
        position += 1
        record = cache.get(path)
        if record.found and not quality_problems(record.quality, cache.settings):
            gallery.append(path)
    if len(gallery) < size:
        raise SystemExit(f"only {len(gallery)} LFW faces pass the enrolment gate; ask for fewer")
    people = {path.parent.name for path in gallery}
    held_out = [p for name, p in sorted(split.held_out.items()) if name in people]
    step = max(1, len(held_out) // MATED_PROBES)
    # Spread over the alphabet; only the probes tried are embedded (to know they hold a face).
    spread = held_out[::step] + [p for k, p in enumerate(held_out) if k % step]
    mated = list(itertools.islice((p for p in spread if cache.get(p).found), MATED_PROBES))
    nonmated: list[Path] = []
    for path in split.candidates[position:]:
        if len(nonmated) == NONMATED_PROBES:
            break
        if path.parent.name not in people and cache.get(path).found:
            nonmated.append(path)
    cache.save()
    return Workload(gallery, mated, nonmated, skipped=position - len(gallery))


def insert_gallery(data_dir: Path, workload: Workload, cache: EmbeddingCache) -> int:
    """A fresh database in ``data_dir`` holding one subject per person and one template per image."""
    url = database_url(Settings(data_dir=data_dir, database_url=None))
    upgrade_database(url)
    engine = create_engine_for(url)
    inserted = 0
    try:
        with make_session_factory(engine)() as session:
            begin_write(session)
            default = ensure_default_collection(session, cache.model.name)
            for person, images in itertools.groupby(workload.gallery, key=lambda p: p.parent.name):
                subject, _ = get_or_create_subject(session, default.id, person, person.replace("_", " "))
                for path in images:
                    record = cache.get(path)
                    x1, y1, x2, y2 = (float(v) for v in record.box)
                    _, added = add_face(
                        session,
                        subject,
                        record.embedding,
                        model_name=cache.model.name,
                        model_version=cache.model.version,
                        box=(x1, y1, x2, y2),
                        det_score=record.quality.det_score,
                        quality=record.quality.score,
                        quality_json=record.quality.to_dict(),
                        image_sha256=record.sha256,
                    )
                    inserted += added
            session.commit()
    finally:
        engine.dispose()
    return inserted
