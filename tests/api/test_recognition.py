"""Verify and identify end to end, deletions taking effect at once, restarts and a second worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.pipeline.face_pipeline import FacePipeline
from app.services.thresholds import IDENTIFY_KEY, VERIFY_KEY
from tests.api.conftest import (
    ENROLL_PHOTO,
    PROBE_PHOTO,
    STRANGER_PHOTO,
    ApiDatabase,
    assert_error,
    collection_id_of,
    enroll,
    identify,
    index_of,
    photo,
    services_of,
    start_client,
)
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def api_database(engine_database: ApiDatabase) -> ApiDatabase:
    """This module runs on FAISS and on Milvus (Lite), on SQLite and PostgreSQL."""
    return engine_database


@pytest.fixture(scope="module")
def gallery(client: TestClient) -> Iterator[TestClient]:
    """One photo of each of five people enrolled."""
    for name, path in ENROLL_PHOTO.items():
        assert enroll(client, name, photo(path), name=name.replace("_", " ").title()).status_code == 201
    yield client


def stored_thresholds(client: TestClient) -> tuple[float, float]:
    from app.db.stored_settings import get_setting
    from tests.db.factories import default_id

    with services_of(client).session_factory() as session:
        collection_id = default_id(session)
        return (
            float(get_setting(session, collection_id, VERIFY_KEY)),
            float(get_setting(session, collection_id, IDENTIFY_KEY)),
        )


def test_verify_two_images(client: TestClient) -> None:
    verify_threshold, _ = stored_thresholds(client)

    files = {"file_a": photo(ENROLL_PHOTO["obama"]), "file_b": photo(PROBE_PHOTO["obama"])}
    same = client.post("/verify", files=files)
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["match"] is True and body["similarity"] >= body["threshold"] == verify_threshold
    assert body["model"] == {"name": Settings().embedder, "version": "1", "metric": "damped_euclidean"}
    assert body["faces"]["a"]["box"]["x_max"] > 0 and body["faces"]["b"]["det_score"] > 0.9

    files = {"file_a": photo(ENROLL_PHOTO["obama"]), "file_b": photo(PROBE_PHOTO["biden"])}
    different = client.post("/verify", files=files).json()
    assert (
        different["match"] is False and different["similarity"] < different["threshold"] == verify_threshold
    )

    # A per-request threshold decides instead of the stored one.
    lenient = client.post(
        "/verify", files=files, data={"threshold": str(different["similarity"] - 0.01)}
    ).json()
    assert lenient["match"] is True and lenient["similarity"] == pytest.approx(
        different["similarity"], abs=1e-6
    )


def test_verify_against_a_subject_uses_its_best_template(gallery: TestClient) -> None:
    extra = enroll(gallery, "obama", photo("obama/tests__test_images__obama3.jpg")).json()["faces"][0][
        "face_id"
    ]
    response = gallery.post(
        "/verify", data={"subject_id": "obama"}, files={"file": photo(PROBE_PHOTO["obama"])}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["match"] is True and body["subject_id"] == "obama"
    templates = {face["face_id"] for face in gallery.get("/subjects/obama").json()["faces"]}
    assert body["matched_face_id"] in templates and extra in templates

    pair = gallery.post(
        "/verify",
        files={
            "file_a": photo(PROBE_PHOTO["obama"]),
            "file_b": photo("obama/tests__test_images__obama3.jpg"),
        },
    ).json()
    assert body["similarity"] >= pair["similarity"] - 1e-6  # the best template is at least as close

    stranger = gallery.post(
        "/verify", data={"subject_id": "obama"}, files={"file": photo(PROBE_PHOTO["biden"])}
    )
    assert stranger.json()["match"] is False
    missing = gallery.post(
        "/verify", data={"subject_id": "nobody"}, files={"file": photo(PROBE_PHOTO["biden"])}
    )
    assert_error(missing, 404, "subject_not_found")


def test_identify_ranks_the_right_person_first_and_knows_a_stranger(gallery: TestClient) -> None:
    _, identify_threshold = stored_thresholds(gallery)
    for name, path in PROBE_PHOTO.items():
        response = identify(gallery, photo(path), top_n=3)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["threshold"] == identify_threshold
        (face,) = body["faces"]
        candidates = face["candidates"]
        assert candidates[0]["subject_id"] == name, (name, candidates)
        assert len(candidates) == 3 and len({c["subject_id"] for c in candidates}) == 3  # distinct people
        assert [c["similarity"] for c in candidates] == sorted(
            (c["similarity"] for c in candidates), reverse=True
        )
        assert face["match"] == {
            "subject_id": name,
            "similarity": candidates[0]["similarity"],
            "score": face["score"],
        }
        assert face["score"] >= identify_threshold
        assert candidates[0]["name"] == name.replace("_", " ").title()

    stranger = identify(gallery, photo(STRANGER_PHOTO)).json()["faces"][0]
    assert stranger["match"] is None and stranger["candidates"]  # candidates still ranked, nobody named
    assert stranger["score"] < identify_threshold
    # An explicit threshold above every similarity makes even a known face "unknown".
    assert identify(gallery, photo(PROBE_PHOTO["biden"]), threshold=1.0).json()["faces"][0]["match"] is None


def test_identify_decides_on_the_top_similarity_less_its_cohort(gallery: TestClient) -> None:
    """The decision score recomputed by hand from the candidates: s1 - mean(max(s2..s11, prior)).

    This gallery has fewer subjects than the cohort: the missing members count at the prior.
    """
    open_set = services_of(gallery).model.open_set
    assert open_set is not None
    score = open_set.score
    for path in (*PROBE_PHOTO.values(), STRANGER_PHOTO):
        body = identify(gallery, photo(path), top_n=20).json()
        assert body["statistic"] == f"cohort_gap({score.cohort})"
        (face,) = body["faces"]
        similarities = [c["similarity"] for c in face["candidates"]]
        assert 1 < len(similarities) <= score.cohort
        assert score.prior is not None
        cohort = [max(value, score.prior) for value in similarities[1:]]
        cohort += [score.prior] * (score.cohort - len(cohort))
        assert face["score"] == pytest.approx(similarities[0] - sum(cohort) / score.cohort, abs=1e-6)
        # Fewer candidates asked for: the same score, since the cohort is searched regardless.
        assert identify(gallery, photo(path), top_n=1).json()["faces"][0]["score"] == pytest.approx(
            face["score"]
        )


def test_identify_every_face_of_a_group_photo(gallery: TestClient) -> None:
    group = (SHARED_DATA / "group" / "obama_and_biden.jpg").read_bytes()
    largest_only = identify(gallery, group).json()["faces"]
    every = identify(gallery, group, all_faces="true", top_n=1).json()["faces"]
    assert len(largest_only) == 1 and len(every) == 3
    matched = {face["match"]["subject_id"] for face in every if face["match"]}
    assert matched == {"obama", "biden"}  # the child at the edge is nobody we know


def test_a_deleted_subject_is_gone_at_once_in_this_and_every_other_worker(
    gallery: TestClient, api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    other = start_client(api_database, pipeline, index_sync_interval_s=30.0)  # a worker whose poll is far off
    try:
        enroll(gallery, "twin", photo(ENROLL_PHOTO["rose_leslie"]), photo(PROBE_PHOTO["rose_leslie"]))
        probe = photo(PROBE_PHOTO["rose_leslie"])
        assert identify(gallery, probe).json()["faces"][0]["candidates"][0]["subject_id"] in {
            "twin",
            "rose_leslie",
        }

        assert gallery.delete("/subjects/twin").status_code == 200
        for worker in (gallery, other):
            ranked = [
                c["subject_id"] for c in identify(worker, probe, top_n=10).json()["faces"][0]["candidates"]
            ]
            assert "twin" not in ranked and ranked[0] == "rose_leslie"
        templates = set(index_of(gallery).face_ids().tolist())
        assert len(templates) == sum(
            s["face_count"] for s in gallery.get("/subjects", params={"limit": 500}).json()["items"]
        )
    finally:
        other.__exit__(None, None, None)


def test_a_second_worker_follows_enrolments_within_a_second(
    gallery: TestClient, api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    other = start_client(api_database, pipeline, index_sync_interval_s=0.3)
    try:
        enroll(gallery, "late-arrival", photo(STRANGER_PHOTO))
        deadline = time.monotonic() + 1.0
        while True:
            top = identify(other, photo(STRANGER_PHOTO)).json()["faces"][0]["candidates"][0]
            if top["subject_id"] == "late-arrival" or time.monotonic() > deadline:
                break
        assert top["subject_id"] == "late-arrival" and top["similarity"] > 0.999
    finally:
        other.__exit__(None, None, None)
        gallery.delete("/subjects/late-arrival")


def test_a_restart_keeps_every_template(
    gallery: TestClient, api_database: ApiDatabase, pipeline: FacePipeline, caplog: pytest.LogCaptureFixture
) -> None:
    probe = photo(PROBE_PHOTO["kit_harington"])
    expected = identify(gallery, probe).json()["faces"][0]["candidates"]

    def restart() -> tuple[list[int], list[dict[str, object]], str]:
        """Start another app on the same database and data dir: its templates, answer and index source."""
        caplog.clear()
        with caplog.at_level("INFO", logger="app.services.index_follower"):
            restarted = start_client(api_database, pipeline)
        try:
            (opened,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("index.opened")]
            rebuilt = int(opened.split("rebuilt=")[1].split()[0])
            source = "database" if rebuilt else "snapshot"
            candidates = identify(restarted, probe).json()["faces"][0]["candidates"]
            return index_of(restarted).face_ids().tolist(), candidates, source
        finally:
            restarted.__exit__(None, None, None)

    templates, candidates, _ = restart()
    assert templates == index_of(gallery).face_ids().tolist()
    assert [c["face_id"] for c in candidates] == [c["face_id"] for c in expected]

    if api_database.engine == "faiss":
        # The first app holds the data folder's snapshot writer lock: the restarted one only reads.
        writer = services_of(gallery).index
        assert writer.writes_snapshots
        writer.catch_up()
        writer.save_snapshots()
    templates, candidates, source = restart()
    assert source == "snapshot" and [c["face_id"] for c in candidates] == [c["face_id"] for c in expected]

    # A write the snapshot has not seen (a crash before the next snapshot): the snapshot is
    # loaded and the change replayed onto it from the change log. (Milvus: the write is there.)
    added = enroll(gallery, "after-snapshot", photo(ENROLL_PHOTO["kit_harington"])).json()["faces"][0][
        "face_id"
    ]
    templates, candidates, source = restart()
    assert source == "snapshot" and templates == index_of(gallery).face_ids().tolist()
    assert added in {c["face_id"] for c in candidates}

    # A damaged snapshot is rebuilt over, not trusted; a Milvus collection lost is rebuilt from the database.
    services, collection_id = services_of(gallery), collection_id_of(gallery)
    if api_database.engine == "faiss":
        services.index.snapshots(services.model.name).path(collection_id).write_bytes(b"\x00" * 100)
    else:
        services.index.engine.forget(collection_id, services.model.name)
    templates, candidates, source = restart()
    # (Milvus: the new, empty collection takes the whole change log, a rebuild by replay.)
    assert source == "database" or api_database.engine == "milvus"
    assert templates == index_of(gallery).face_ids().tolist()
    assert [c["similarity"] for c in candidates] == pytest.approx(
        [c["similarity"] for c in identify(gallery, probe).json()["faces"][0]["candidates"]], abs=1e-5
    )
