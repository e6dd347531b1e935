"""Prometheus metrics, written in the text exposition format (no client library needed).

One ``Metrics`` per process (per app): counters and histograms are updated
by the request middleware and the use cases; gauges are read at scrape time.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

# Seconds; covers /health (sub-millisecond) to a large enrolment.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _format_value(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe counters and histograms, rendered with scrape-time gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = defaultdict(int)
        self._latency_counts: dict[Labels, list[int]] = {}
        self._latency_sums: dict[Labels, float] = defaultdict(float)
        self._faces_detected: dict[Labels, int] = defaultdict(int)
        self._unhandled_errors = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (("method", method), ("route", route))
        with self._lock:
            self._requests[key + (("status", str(status)),)] += 1
            counts = self._latency_counts.setdefault(key, [0] * (len(LATENCY_BUCKETS) + 1))
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sums[key] += seconds

    def faces_detected(self, endpoint: str, count: int) -> None:
        with self._lock:
            self._faces_detected[(("endpoint", endpoint),)] += count

    def unhandled_error(self) -> None:
        with self._lock:
            self._unhandled_errors += 1

    @property
    def unhandled_errors(self) -> int:
        return self._unhandled_errors

    def render(self, gauges: Iterable[tuple[str, str, float]]) -> str:
        """The exposition text; ``gauges`` are ``(name, help, value)`` read by the caller now."""
        lines: list[str] = []
        with self._lock:
            lines += _header("facerec_http_requests_total", "HTTP requests by route and status", "counter")
            for labels, count in sorted(self._requests.items()):
                lines.append(f"facerec_http_requests_total{_format_labels(labels)} {count}")
            lines += _header(
                "facerec_http_request_duration_seconds", "HTTP request latency by route", "histogram"
            )
            for labels, counts in sorted(self._latency_counts.items()):
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                    cumulative += count
                    bucket = _format_labels(labels, (("le", _format_value(bound)),))
                    lines.append(f"facerec_http_request_duration_seconds_bucket{bucket} {cumulative}")
                lines.append(
                    f"facerec_http_request_duration_seconds_sum{_format_labels(labels)} "
                    f"{self._latency_sums[labels]:.6f}"
                )
                lines.append(
                    f"facerec_http_request_duration_seconds_count{_format_labels(labels)} {cumulative}"
                )
            lines += _header("facerec_faces_detected_total", "faces detected in uploaded images", "counter")
            for labels, count in sorted(self._faces_detected.items()):
                lines.append(f"facerec_faces_detected_total{_format_labels(labels)} {count}")
            lines += _header("facerec_unhandled_errors_total", "requests that ended in a 500", "counter")
            lines.append(f"facerec_unhandled_errors_total {self._unhandled_errors}")
        for name, help_text, value in gauges:
            lines += _header(name, help_text, "gauge")
            lines.append(f"{name} {_format_value(value)}")
        return "\n".join(lines) + "\n"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
