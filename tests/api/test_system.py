"""Probes, metrics and the OpenAPI document; /health stays fast while inference is saturated."""

from __future__ import annotations

import statistics
import threading
import time

from fastapi.testclient import TestClient

from tests.api.conftest import ENROLL_PHOTO, PROBE_PHOTO, enroll, identify, photo, services_of


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["models_loaded"] and body["database"] and body["index_in_step"]
    assert body["database_seq"] == body["index_applied_seq"]


def test_metrics_report_requests_faces_gallery_and_sync(client: TestClient) -> None:
    enroll(client, "metrics-subject", photo(ENROLL_PHOTO["obama"]))
    identify(client, photo(PROBE_PHOTO["obama"]))
    client.get("/subjects/metrics-subject")
    client.get("/subjects/nobody")

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    lines = text.splitlines()
    assert 'facerec_http_requests_total{method="POST",route="/enroll",status="201"} 1' in lines
    assert 'facerec_http_requests_total{method="GET",route="/subjects/{subject_id}",status="404"} 1' in lines
    assert any(
        line.startswith(
            'facerec_http_request_duration_seconds_bucket{method="POST",route="/identify",le="+Inf"} '
        )
        for line in lines
    )
    assert 'facerec_faces_detected_total{endpoint="identify"} 1' in lines
    templates = services_of(client).index.index.ntotal
    assert f"facerec_gallery_templates {templates}" in lines and templates >= 1
    assert "facerec_index_sync_lag_changes 0" in lines
    assert "facerec_unhandled_errors_total 0" in lines
    assert any(line.startswith("facerec_gallery_subjects ") for line in lines)
    for line in lines:  # every sample parses: name{labels} value
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))


def test_openapi_documents_every_route_and_its_errors(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/enroll",
        "/verify",
        "/identify",
        "/subjects",
        "/subjects/{subject_id}",
        "/faces/{face_id}",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in paths
    enroll_doc = paths["/enroll"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(enroll_doc["requestBody"]["content"])
    assert (
        enroll_doc["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["file"]["type"]
        == "array"
    )
    assert {"400", "401", "403", "413", "422"} <= set(enroll_doc["responses"])
    assert "no_face" in enroll_doc["responses"]["422"]["description"]
    assert "subject_not_found" in paths["/subjects/{subject_id}"]["get"]["responses"]["404"]["description"]


def health_latencies(client: TestClient, samples: int = 30) -> list[float]:
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        assert client.get("/health").status_code == 200
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)
    return latencies


def test_health_answers_fast_while_inference_is_saturated(client: TestClient) -> None:
    """Inference runs off the event loop: saturating it adds well under 50 ms to /health.

    Measured against an idle baseline taken the same way, so CPU load from
    outside the test does not count against the service. A blocked event
    loop would add a whole inference (100-300 ms here).
    """
    probe = photo(PROBE_PHOTO["obama"])
    idle = statistics.median(health_latencies(client))
    stop = threading.Event()
    busy = services_of(client).inference.workers + 1  # every slot taken, one request queued

    def load() -> None:
        while not stop.is_set():
            identify(client, probe)

    threads = [threading.Thread(target=load) for _ in range(busy)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # let the inference slots fill
        saturated = statistics.median(health_latencies(client))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert saturated - idle < 0.05, (idle, saturated)
