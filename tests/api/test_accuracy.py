"""Acceptance: how well the service recognises people, measured through its HTTP API.

Galleries are enrolled with POST /enroll and probed with POST /identify, as a
user would; each gallery is a module fixture, enrolled once for the tests
that probe it. /verify is held against what `facerec eval pairs` computes.

SQLite only: what the database does with enrolments and searches is tested on
both backends in the other API modules; these tests measure the model behind
the API, which the backend cannot change, and PostgreSQL would double a run
of about 1,000 images.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.eval.embedding import embed_files
from app.eval.protocols import Pair, read_lfw_pairs
from app.pipeline.face_pipeline import FacePipeline, central_face
from app.pipeline.similarity import paired_similarity
from tests.api.conftest import IDENTITIES, ApiDatabase, enroll, identify, services_of, start_client
from tests.conftest import LFW_ROOT, SHARED_DATA, load, require_data
from tests.db.conftest import PostgresServer, fresh_database

LFW_NAMES = SHARED_DATA / "lfw" / "lfw-names.txt"
DEV_TEST = SHARED_DATA / "lfw" / "pairsDevTest.txt"
LFW_PEOPLE = 300  # enrolled, and as many strangers
VERIFY_PAIRS_PER_KIND = 20


@contextmanager
def service_on_sqlite(
    tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline
) -> Iterator[TestClient]:
    """A started app on a fresh SQLite database of its own: each gallery starts empty."""
    folder = tmp_path_factory.mktemp("accuracy")
    with fresh_database("sqlite", folder, PostgresServer(None)) as url:
        client = start_client(ApiDatabase("sqlite", url, folder), pipeline)
        try:
            yield client
        finally:
            client.__exit__(None, None, None)


def lfw_photo(name: str, number: int) -> Path:
    return LFW_ROOT / name / f"{name}_{number:04d}.jpg"


def rank1(response_body: dict[str, Any]) -> str | None:
    """The top candidate's subject for the (largest) face, or None when nobody was returned."""
    faces = response_body["faces"]
    assert len(faces) == 1
    candidates = faces[0]["candidates"]
    return str(candidates[0]["subject_id"]) if candidates else None


# --- held-out photos of ../shared/data/identities -----------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    client: TestClient
    probes: list[tuple[str, Path]]  # (identity, photo), the last photo of each person with two or more
    rejected: int  # enrolment photos the quality gate turned down


@pytest.fixture(scope="module")
def identities_gallery(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Iterator[HeldOut]:
    """Everyone in identities/ enrolled with all their photos but the last (sorted), in one request each."""
    photos: dict[str, list[Path]] = defaultdict(list)
    with require_data(IDENTITIES / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            photos[row["identity"]].append(IDENTITIES / row["path"])
    with service_on_sqlite(tmp_path_factory, pipeline) as client:
        probes, rejected = [], 0
        for identity, paths in sorted(photos.items()):
            paths.sort()
            gallery = paths[:-1] if len(paths) > 1 else paths
            if len(paths) > 1:
                probes.append((identity, paths[-1]))
            response = enroll(client, identity, *(path.read_bytes() for path in gallery))
            assert response.status_code == 201, f"{identity}: {response.text}"
            rejected += len(response.json()["rejected"])
        yield HeldOut(client, probes, rejected)


def test_held_out_photos_of_enrolled_people_rank_them_first(identities_gallery: HeldOut) -> None:
    misses = []
    for identity, path in identities_gallery.probes:
        response = identify(identities_gallery.client, path.read_bytes())
        found = rank1(response.json()) if response.status_code == 200 else response.json()["error"]["code"]
        if found != identity:
            misses.append(f"{path.relative_to(IDENTITIES)} -> {found}")
    total = len(identities_gallery.probes)
    rate = 1 - len(misses) / total
    assert total >= 15, "identities/ should hold at least 15 people with two photos or more"
    assert rate >= 0.90, (
        f"rank-1 {rate:.3f} on {total} held-out photos "
        f"({identities_gallery.rejected} enrolment photos rejected); misses: {misses}"
    )


# --- open set on LFW ----------------------------------------------------------------------------------


def lfw_people() -> tuple[list[str], list[str]]:
    """300 people with two photos or more (every k-th in name order) and 300 others (likewise)."""
    counts = {
        name: int(count)
        for name, count in (line.split("\t") for line in require_data(LFW_NAMES).read_text().splitlines())
    }
    names = sorted(counts)
    repeated = [name for name in names if counts[name] >= 2]
    enrolled = repeated[:: len(repeated) // LFW_PEOPLE][:LFW_PEOPLE]
    chosen = set(enrolled)
    others = [name for name in names if name not in chosen]
    strangers = others[:: len(others) // LFW_PEOPLE][:LFW_PEOPLE]
    return enrolled, strangers


@dataclass(frozen=True)
class LfwGallery:
    client: TestClient
    enrolled: list[str]
    strangers: list[str]


@pytest.fixture(scope="module")
def lfw_gallery(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Iterator[LfwGallery]:
    """Photo 1 of each of the 300 chosen people enrolled, one request per person."""
    enrolled, strangers = lfw_people()
    assert len(enrolled) == len(strangers) == LFW_PEOPLE
    with service_on_sqlite(tmp_path_factory, pipeline) as client:
        for name in enrolled:
            response = enroll(client, name, lfw_photo(name, 1).read_bytes())
            assert response.status_code == 201, f"{name}: {response.text}"
            assert len(response.json()["faces"]) == 1, f"{name}: {response.text}"
        yield LfwGallery(client, enrolled, strangers)


def test_lfw_enrolled_people_are_ranked_first_and_named(lfw_gallery: LfwGallery) -> None:
    client = lfw_gallery.client
    identify_threshold = services_of(client).default_thresholds.identify
    hits, matched, matched_right, misses = 0, 0, 0, []
    for name in lfw_gallery.enrolled:
        response = identify(client, lfw_photo(name, 2).read_bytes())
        if response.status_code != 200:
            misses.append(f"{name}: {response.json()['error']['code']}")
            continue
        body = response.json()
        assert body["threshold"] == identify_threshold  # the default, since the request set none
        if rank1(body) == name:
            hits += 1
        else:
            misses.append(f"{name} -> {rank1(body)}")
        match = body["faces"][0]["match"]
        if match is not None:
            matched += 1
            matched_right += match["subject_id"] == name
    rate = hits / LFW_PEOPLE
    assert rate >= 0.95, f"rank-1 {rate:.3f} on {LFW_PEOPLE} mated LFW probes; misses: {misses}"
    assert matched > 0, "no mated probe cleared the default identify threshold"
    precision = matched_right / matched
    assert precision >= 0.99, f"match names the right person for {matched_right}/{matched} = {precision:.3f}"


def test_lfw_strangers_are_unknown_at_the_default_threshold(lfw_gallery: LfwGallery) -> None:
    client = lfw_gallery.client
    identify_threshold = services_of(client).default_thresholds.identify
    unknown, named = 0, []
    for name in lfw_gallery.strangers:
        response = identify(client, lfw_photo(name, 1).read_bytes())
        assert response.status_code == 200, f"{name}: {response.text}"
        body = response.json()
        assert body["threshold"] == identify_threshold
        match = body["faces"][0]["match"]
        if match is None:
            unknown += 1
        else:
            named.append(f"{name} -> {match['subject_id']} ({match['similarity']:.3f})")
    rate = unknown / LFW_PEOPLE
    assert rate >= 0.90, (
        f"match null for {rate:.3f} of {LFW_PEOPLE} strangers at threshold {identify_threshold}; "
        f"named: {named}"
    )


# --- /verify agrees with `facerec eval pairs` ---------------------------------------------------------


def dev_test_sample(tmp_path: Path) -> list[Pair]:
    """The first 20 same-person and the first 20 different-person pairs of View 1 DevTest."""
    lines = require_data(DEV_TEST).read_text().splitlines()
    count = int(lines[0])
    n = VERIFY_PAIRS_PER_KIND
    sample = tmp_path / "pairs.txt"
    sample.write_text("\n".join([str(n), *lines[1 : 1 + n], *lines[1 + count : 1 + count + n]]) + "\n")
    return read_lfw_pairs(LFW_ROOT, sample).pairs


def test_verify_gives_the_similarities_of_eval_pairs(
    tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline, tmp_path: Path
) -> None:
    pairs = dev_test_sample(tmp_path)
    paths = list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))

    # Eval embeds the central face, /verify the largest; compare where they are the same face.
    def largest_is_central(path: Path) -> bool:
        image = load(path)
        detections = pipeline.detect(image)
        return bool(detections) and central_face(detections, image.shape) is detections[0]

    comparable = {path for path in paths if largest_is_central(path)}
    kept = [pair for pair in pairs if pair.path_a in comparable and pair.path_b in comparable]
    skipped = len(pairs) - len(kept)
    assert skipped <= 3, f"{skipped} of {len(pairs)} pairs have an image whose largest face is not central"

    # What `facerec eval pairs` scores, by its own machinery.
    embedded = embed_files(pipeline, paths, progress=False)
    a = np.stack([embedded.embeddings[pair.path_a] for pair in kept])
    b = np.stack([embedded.embeddings[pair.path_b] for pair in kept])
    eval_similarity = paired_similarity(a, b, pipeline.metric)  # (P,)

    with service_on_sqlite(tmp_path_factory, pipeline) as client:
        verify_threshold = services_of(client).default_thresholds.verify
        deltas, decisions = [], []
        for pair, expected in zip(kept, eval_similarity, strict=True):
            files = {"file_a": pair.path_a.read_bytes(), "file_b": pair.path_b.read_bytes()}
            response = client.post("/verify", files=files)
            assert response.status_code == 200, f"{pair}: {response.text}"
            body = response.json()
            deltas.append(abs(body["similarity"] - float(expected)))
            assert body["threshold"] == verify_threshold
            assert body["match"] == (body["similarity"] >= body["threshold"]), body
            decisions.append((pair.same, body["match"]))

    assert max(deltas) <= 1e-5, f"max |similarity(/verify) - similarity(eval)| = {max(deltas):.2e}"
    # The default operating point (FAR 1e-3) accepts most same-person pairs and no different-person one here.
    same_pairs = sum(same for same, _ in decisions)
    same_matched = sum(match for same, match in decisions if same)
    different_matched = sum(match for same, match in decisions if not same)
    assert same_matched >= 0.75 * same_pairs and different_matched == 0, (
        f"{same_matched}/{same_pairs} same-person and {different_matched}/{len(decisions) - same_pairs} "
        f"different-person pairs matched at threshold {verify_threshold} ({skipped} pairs skipped)"
    )
