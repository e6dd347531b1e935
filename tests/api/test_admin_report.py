"""GET /admin/report on a real gallery: every photo of ../shared/data/identities, one subject per folder.

The report is checked for self-consistency and against ``app.eval.verification``
on scores recomputed here from the stored templates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from math import comb
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db.base import utcnow
from app.db.faces import iter_embeddings
from app.db.jobs import add_job
from app.db.session import begin_write
from app.eval import intervals, verification
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.similarity import pairwise_similarity
from tests.api.conftest import (
    IDENTITIES,
    ApiDatabase,
    assert_error,
    collection_id_of,
    enroll,
    services_of,
    start_client,
)
from tests.conftest import require_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def wait_for(client: TestClient, url: str, polls: int = 1200) -> dict[str, Any]:
    """Poll a job or evaluation until it ends; the bound only stops a hung job from hanging the suite."""
    for _ in range(polls):
        body: dict[str, Any] = client.get(url).json()
        if body["state"] in ("done", "failed"):
            return body
        time.sleep(0.25)
    raise AssertionError(f"{url} did not finish: {body}")


@pytest.fixture(scope="module")
def gallery(api_database: ApiDatabase, pipeline: FacePipeline) -> Iterator[tuple[TestClient, dict[str, int]]]:
    """An app whose gallery holds every identities/ photo with a usable face; templates per subject."""
    client = start_client(api_database, pipeline)
    try:
        assert_error(client.get("/admin/report"), 409, "not_enough_data")  # nothing enrolled yet
        templates: dict[str, int] = {}
        for folder in sorted(p for p in require_data(IDENTITIES).iterdir() if p.is_dir()):
            photos = [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]
            response = enroll(client, folder.name, *photos)
            if response.status_code == 201:
                templates[folder.name] = response.json()["subject"]["face_count"]
        yield client, templates
    finally:
        client.__exit__(None, None, None)


def stored_scores(client: TestClient) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of every stored template pair, computed here without the report code."""
    services = services_of(client)
    with services.session_factory() as session:
        rows = list(iter_embeddings(session, collection_id_of(client), services.model.name))
    labels = np.array([subject for _, subject, _ in rows])
    vectors = np.stack([vector for _, _, vector in rows])
    similarity = pairwise_similarity(vectors, vectors, services.pipeline.metric)
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    return similarity[upper & same].astype(np.float64), similarity[upper & ~same].astype(np.float64)


def test_report_counts_every_pair_of_the_gallery(gallery: tuple[TestClient, dict[str, int]]) -> None:
    client, templates = gallery
    assert sum(n >= 2 for n in templates.values()) >= 10, templates
    report = client.get("/admin/report").json()
    total = sum(templates.values())
    genuine = sum(comb(n, 2) for n in templates.values())
    assert report["counts"] == {
        "subjects": len(templates),
        "templates": total,
        "genuine": genuine,
        "impostor": comb(total, 2) - genuine,
    }
    assert report["source"] == {
        "kind": "gallery",
        "evaluation_id": None,
        "impostor_sampled": False,
        "impostor_total": comb(total, 2) - genuine,
        "no_face": None,
    }
    for name in ("genuine", "impostor"):
        histogram = report["histograms"][name]
        assert sum(histogram["counts"]) == report["counts"][name]
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert report["histograms"]["genuine"]["edges"] == report["histograms"]["impostor"]["edges"]


def test_curve_eer_and_operating_point_agree_with_app_eval_verification(
    gallery: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = gallery
    report = client.get("/admin/report").json()
    curve = report["curve"]
    thresholds = [p["threshold"] for p in curve]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) == len(thresholds)
    assert all(a["far"] >= b["far"] and a["frr"] <= b["frr"] for a, b in zip(curve, curve[1:], strict=False))
    assert (curve[0]["far"], curve[0]["frr"]) == (1.0, 0.0) and (curve[-1]["far"], curve[-1]["frr"]) == (
        0.0,
        1.0,
    )

    genuine, impostor = stored_scores(client)
    for point in curve[:: max(1, len(curve) // 50)]:  # every kept point lies on the exact curve
        assert verification.far_frr_at(genuine, impostor, point["threshold"]) == pytest.approx(
            (point["far"], point["frr"]), abs=1e-9
        )
    eer_value, eer_threshold = verification.eer(genuine, impostor)
    assert report["eer"]["value"] == pytest.approx(eer_value, abs=1e-6)
    assert report["eer"]["threshold"] == pytest.approx(eer_threshold, abs=1e-5)
    # Where the curves cross, FAR and FRR are both close to the EER.
    crossing = min(curve, key=lambda p: abs(p["threshold"] - eer_threshold))
    far, frr = verification.far_frr_at(genuine, impostor, crossing["threshold"])
    assert abs(far - frr) <= 0.05 and abs(far - eer_value) <= 0.05
    assert report["auc"] == pytest.approx(verification.auc(genuine, impostor), abs=1e-9)
    assert 0.5 < report["best_accuracy"]["accuracy"] <= 1.0

    operating = report["operating"]
    stored = client.get("/admin/threshold").json()
    assert operating["verify_threshold"] == stored["verify_threshold"]
    assert operating["identify_threshold"] == stored["identify_threshold"]
    far, frr = verification.far_frr_at(genuine, impostor, operating["verify_threshold"])
    assert (operating["far"], operating["frr"]) == pytest.approx((far, frr), abs=1e-12)
    assert operating["far_ci"][0] <= far <= operating["far_ci"][1]
    assert operating["frr_ci"][0] <= frr <= operating["frr_ci"][1]
    assert 0.0 <= operating["fnir"] <= 1.0 and 0.0 <= operating["fpir"] <= 1.0


def test_targets_the_impostor_count_cannot_resolve_are_not_measurable(
    gallery: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = gallery
    report = client.get("/admin/report").json()
    impostor = report["counts"]["impostor"]
    targets = [entry["target_far"] for entry in report["at_far"]]
    assert targets == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    for entry in report["at_far"]:
        assert entry["impostor"] == impostor
        if entry["measurable"]:
            assert entry["far"] <= entry["target_far"]
            assert entry["threshold"] is not None and entry["frr"] is not None
            assert entry["frr_ci"][0] <= entry["frr"] <= entry["frr_ci"][1]
            assert entry["far_ci"][0] <= entry["far"] <= entry["far_ci"][1]
        else:
            # A few thousand impostor pairs cannot show 1e-4: a bound, never a bare 0 FAR.
            assert entry["threshold"] is None and entry["frr"] is None
            assert entry["far_upper_95"] > entry["target_far"]
            assert "not measurable" in entry["note"]
            assert f"{entry['false_accepts']} false accepts in {impostor:,}" in entry["note"]
    measurable = [entry["target_far"] for entry in report["at_far"] if entry["measurable"]]
    assert 1e-1 in measurable and 1e-6 not in measurable
    # The rule: measurable iff n >= min_comparisons(target).
    for entry in report["at_far"]:
        assert entry["measurable"] == (impostor >= intervals.min_comparisons(entry["target_far"]))


def test_identification_cmc_and_open_set(gallery: tuple[TestClient, dict[str, int]]) -> None:
    client, templates = gallery
    identification = client.get("/admin/report").json()["identification"]
    cmc = identification["cmc"]
    assert list(cmc) == [str(rank) for rank in range(1, 21)]
    rates = list(cmc.values())
    assert rates == sorted(rates) and rates[-1] == 1.0  # fewer than 20 subjects: rank 20 finds everyone
    assert rates[0] >= 0.8
    assert identification["probes"] == sum(n for n in templates.values() if n >= 2)
    for key, target in (("0.1", 0.1), ("0.01", 0.01)):
        point = identification["fnir_at_fpir"][key]
        assert point["observed_fpir"] <= target
        assert point["nonmated"] == sum(templates.values())
        assert 0.0 <= point["fnir"] <= 1.0
    assert identification["fnir_at_fpir"]["0.01"]["fnir"] >= identification["fnir_at_fpir"]["0.1"]["fnir"]


def test_the_report_is_kept_until_asked_again_or_the_gallery_changes(
    gallery: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = gallery
    first = client.get("/admin/report").json()["id"]
    assert client.get("/admin/report").json()["id"] == first
    assert client.get("/admin/stats").json()["last_report"]["id"] == first
    refreshed = client.get("/admin/report", params={"refresh": "true"}).json()["id"]
    assert refreshed != first
    assert client.get("/admin/report").json()["id"] == refreshed


def test_report_pictures(gallery: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = gallery
    png = client.get("/admin/report.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_SIGNATURE) and len(png.content) > 10_000
    svg = client.get("/admin/report.svg", params={"threshold": 0.8})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content[:2000] and svg.content.rstrip().endswith(b"</svg>")
    assert b"threshold 0.800" in svg.content  # the operating point's legend
    assert client.get("/admin/report.gif").status_code == 422
    assert_error(
        client.get("/admin/report.png", params={"evaluation_id": "ev_nope"}), 404, "evaluation_not_found"
    )
    assert_error(client.get("/admin/report.png", params={"threshold": 7}), 422, "validation_error")


def test_admin_endpoints_refuse_client_keys(gallery: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = gallery
    created = client.post("/admin/keys", json={"role": "client", "name": "report reader"})
    key = created.json()["key"]
    for method, url in (
        ("GET", "/admin/report"),
        ("GET", "/admin/report.png"),
        ("GET", "/admin/stats"),
        ("GET", "/admin/threshold"),
        ("PUT", "/admin/threshold"),
        ("GET", "/admin/evaluations"),
        ("GET", "/admin/jobs/job_x"),
    ):
        response = client.request(method, url, headers={"X-API-Key": key}, json={"verify_threshold": 0.5})
        assert_error(response, 403, "forbidden")
    assert_error(client.get("/admin/report", headers={"X-API-Key": ""}), 401, "unauthorized")
    assert_error(client.get("/admin/jobs/job_unknown"), 404, "job_not_found")


def test_a_job_whose_worker_stopped_shows_as_failed_and_is_not_joined(
    gallery: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = gallery
    with services_of(client).session_factory() as session:  # a worker that died mid-report
        begin_write(session)
        job = add_job(session, "gallery_report", total=10)
        job.state, job.updated_at = "running", utcnow() - timedelta(hours=1)
        session.commit()
    status = client.get(f"/admin/jobs/{job.id}").json()
    assert status["state"] == "failed" and "stopped" in status["error"]
    assert client.get("/admin/report", params={"refresh": "true"}).status_code == 200


def test_a_big_gallery_report_runs_as_a_job_on_a_uniform_sample(
    gallery: tuple[TestClient, dict[str, int]], api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    """Limits lowered so that this gallery counts as big: every report is a job, impostors sampled."""
    _, templates = gallery
    client = start_client(
        api_database, pipeline, report_sync_max_comparisons=0, report_max_impostor_pairs=1000
    )
    try:
        accepted = client.get("/admin/report", params={"refresh": "true"})
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()["job"]
        assert job["state"] in ("queued", "running", "done") and job["kind"] == "gallery_report"
        genuine = sum(comb(n, 2) for n in templates.values())
        assert job["total"] == genuine + 1000
        done = wait_for(client, f"/admin/jobs/{job['id']}")
        assert done["state"] == "done", done
        assert done["progress"] == done["total"]
        report = client.get("/admin/report").json()
        assert report["id"] == done["result_id"]
        total = sum(templates.values())
        assert report["source"]["impostor_sampled"] is True
        assert report["source"]["impostor_total"] == comb(total, 2) - genuine
        assert report["counts"]["impostor"] == 1000 and report["counts"]["genuine"] == genuine
        assert sum(report["histograms"]["impostor"]["counts"]) == 1000
    finally:
        client.__exit__(None, None, None)


def test_openapi_documents_the_admin_routes_and_their_errors(
    gallery: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = gallery
    paths = client.get("/openapi.json").json()["paths"]
    report = paths["/admin/report"]["get"]["responses"]
    assert "not_enough_data" in report["409"]["description"] and "202" in report
    assert "far_not_measurable" in paths["/admin/threshold"]["put"]["responses"]["409"]["description"]
    assert "invalid_archive" in paths["/admin/evaluations"]["post"]["responses"]["400"]["description"]
    assert (
        "evaluation_not_found"
        in paths["/admin/evaluations/{evaluation_id}"]["get"]["responses"]["404"]["description"]
    )
    assert (
        "/admin/report.{image_format}" in paths
        and "/admin/jobs/{job_id}" in paths
        and "/admin/stats" in paths
    )
