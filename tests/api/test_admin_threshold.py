"""PUT /admin/threshold on one worker changes /verify and /identify decisions on another at once.

Verify's threshold can come from the report's threshold for a target FAR,
identify's from its threshold for a target FPIR (on the decision score).

Two apps (two workers) share one database; the gallery is every identities/
photo except the probes used here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.audit import list_audit
from app.pipeline.face_pipeline import FacePipeline
from tests.api.conftest import (
    IDENTITIES,
    PROBE_PHOTO,
    ApiDatabase,
    assert_error,
    enroll,
    identify,
    photo,
    services_of,
    start_client,
)
from tests.conftest import require_data

PAIR_A = "obama/examples__knn_examples__test__obama1.jpg"  # also the identify probe (not enrolled)
PAIR_B = "obama/examples__knn_examples__train__obama__obama2.jpg"
TARGET_FAR = 0.01
# The gallery's ~70 templates are ~70 non-mated searches: enough to show FPIR 0.1, not 0.01.
TARGET_FPIR = 0.1


@pytest.fixture(scope="module")
def workers(api_database: ApiDatabase, pipeline: FacePipeline) -> Iterator[tuple[TestClient, TestClient]]:
    """Worker A (where the admin acts) and worker B (started after the gallery was enrolled)."""
    held_out = {IDENTITIES / PAIR_A, IDENTITIES / PAIR_B, *(IDENTITIES / p for p in PROBE_PHOTO.values())}
    a = start_client(api_database, pipeline)
    clients = [a]
    try:
        for folder in sorted(p for p in require_data(IDENTITIES).iterdir() if p.is_dir()):
            photos = [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p not in held_out]
            if photos:
                enroll(a, folder.name, *photos)
        b = start_client(api_database, pipeline)
        clients.append(b)
        yield a, b
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def verify_pair(client: TestClient, **fields: Any) -> dict[str, Any]:
    files = {"file_a": ("a.jpg", photo(PAIR_A)), "file_b": ("b.jpg", photo(PAIR_B))}
    response = client.post("/verify", files=files, data={k: str(v) for k, v in fields.items()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def identify_probe(client: TestClient) -> dict[str, Any]:
    response = identify(client, photo(PAIR_A))
    assert response.status_code == 200, response.text
    assert response.json()["statistic"] == "cohort_gap(10)"
    face: dict[str, Any] = response.json()["faces"][0]
    return face


def other_side(value: float, target: float) -> float:
    """A threshold that decides ``value`` the opposite way from ``target``."""
    return value + 0.01 if value >= target else value - 0.01


def test_target_far_and_fpir_flip_verify_and_identify_on_the_other_worker(
    workers: tuple[TestClient, TestClient],
) -> None:
    a, b = workers
    report = a.get("/admin/report").json()
    entry = next(e for e in report["at_far"] if e["target_far"] == TARGET_FAR)
    assert entry["measurable"], entry
    verify_from_report = entry["threshold"]
    fpir_point = report["identification"]["fnir_at_fpir"][f"{TARGET_FPIR:g}"]
    assert fpir_point["measurable"], fpir_point
    identify_from_report = fpir_point["threshold"]

    verify_similarity = verify_pair(b)["similarity"]
    probe = identify_probe(b)
    assert probe["candidates"][0]["subject_id"] == "obama"
    identify_score = probe["score"]  # the decision score, not the candidate's similarity

    # First set directly, on the side of each value opposite to the report's threshold.
    direct = {
        "verify_threshold": other_side(verify_similarity, verify_from_report),
        "identify_threshold": other_side(identify_score, identify_from_report),
    }
    assert a.put("/admin/threshold", json=direct).status_code == 200
    before_verify = verify_pair(b)
    before_identify = identify_probe(b)
    assert before_verify["threshold"] == pytest.approx(direct["verify_threshold"])
    assert before_verify["match"] == (verify_similarity >= direct["verify_threshold"])
    assert (before_identify["match"] is not None) == (identify_score >= direct["identify_threshold"])

    put = a.put("/admin/threshold", json={"target_far": TARGET_FAR, "target_fpir": TARGET_FPIR})
    assert put.status_code == 200, put.text
    assert put.json()["verify_threshold"] == pytest.approx(verify_from_report)
    assert put.json()["identify_threshold"] == pytest.approx(identify_from_report)
    points = {("far" if p["target_far"] else "fpir"): p for p in put.json()["from_report"]}
    assert points["fpir"]["fnir"] == pytest.approx(fpir_point["fnir"])
    assert points["fpir"]["subjects"] == report["counts"]["subjects"]
    assert points["far"]["frr"] == pytest.approx(entry["frr"])

    after_verify = verify_pair(b)
    after_identify = identify_probe(b)
    assert after_verify["threshold"] == pytest.approx(verify_from_report)
    assert after_verify["match"] is (not before_verify["match"])
    assert (after_identify["match"] is None) is (before_identify["match"] is not None)
    # A per-request threshold still overrides the stored one.
    assert verify_pair(b, threshold=-1.0)["match"] is True

    state = b.get("/admin/threshold").json()
    report_id = report["id"]
    subjects = report["counts"]["subjects"]
    assert state["source"] == {
        "verify": f"report {report_id} at FAR {TARGET_FAR:g}",
        "identify": f"report {report_id} at FPIR {TARGET_FPIR:g} ({subjects} subjects)",
    }
    assert state["identify_statistic"] == "cohort_gap(10)"
    newest = {change["key"]: change for change in state["history"][:2]}
    assert set(newest) == {"verify_threshold", "identify_threshold"}
    expected = {"verify_threshold": verify_from_report, "identify_threshold": identify_from_report}
    for key, change in newest.items():
        assert change["actor"] == "env-admin-key"
        assert change["value"] == pytest.approx(expected[key])
        assert change["previous"] == pytest.approx(direct[key])
        assert change["source"].startswith(f"report {report_id}")
    earlier = {change["key"]: change for change in state["history"][2:4]}
    assert {key: change["value"] for key, change in earlier.items()} == pytest.approx(direct)
    assert all(change["source"] == "set by admin" for change in earlier.values())

    with services_of(b).session_factory() as session:
        audited = [entry for entry in list_audit(session) if entry.action == "threshold.set"]
    assert len(audited) == 4
    newest_audited = {entry.target: entry.details for entry in audited[:2]}
    assert {key: details["previous"] for key, details in newest_audited.items()} == pytest.approx(direct)
    assert {key: details["value"] for key, details in newest_audited.items()} == pytest.approx(expected)


def test_bad_threshold_requests(workers: tuple[TestClient, TestClient]) -> None:
    a, _ = workers
    before = a.get("/admin/threshold").json()
    for body in (
        {},
        {"verify_threshold": 1.5},
        {"identify_threshold": "high"},
        {"target_far": 0},
        {"target_far": 0.05},  # not one of the report's targets
        {"target_far": 0.01, "verify_threshold": 0.8},
        {"target_fpir": 0.05},  # not one of the report's targets
        {"target_fpir": 0.1, "identify_threshold": 0.1},
        {"target_fpir": 1.5},
        {"report_id": "rpt_x"},
        {"verify_threshold": 0.8, "colour": "red"},
    ):
        assert_error(a.put("/admin/threshold", json=body), 422, "validation_error")
    assert_error(a.put("/admin/threshold", json={"target_far": 1e-6}), 409, "far_not_measurable")
    not_shown = a.put("/admin/threshold", json={"target_fpir": 0.001, "target_far": 0.01})
    assert_error(not_shown, 409, "fpir_not_measurable")  # and verify was not set either
    unknown = a.put("/admin/threshold", json={"target_far": 0.01, "report_id": "rpt_nope"})
    assert_error(unknown, 404, "report_not_found")
    after = a.get("/admin/threshold").json()
    assert after == before  # nothing changed, nothing audited
