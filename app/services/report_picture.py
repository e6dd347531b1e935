"""The picture of a report: DET curve and score histograms, the operating point marked."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from app.core.errors import EvaluationNotReady
from app.db.models import Job, Report
from app.eval.plots import plot_report
from app.eval.report import rates_from_curve
from app.services.collections import Target
from app.services.container import Services
from app.services.evaluations import evaluation_or_404, evaluation_report
from app.services.gallery_report import gallery_report

ImageFormat = Literal["png", "svg"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}


def report_picture(
    services: Services,
    session: Session,
    target: Target,
    image_format: ImageFormat,
    threshold: float | None,
    evaluation_id: str | None,
) -> tuple[bytes, str]:
    """The picture of one of the collection's evaluations, or of its gallery report (computed if needed)."""
    report = _report_for_picture(services, session, target, evaluation_id)
    body = report.body
    operating = body["operating"]
    if threshold is None or threshold == operating["verify_threshold"]:
        marker = (operating["verify_threshold"], operating["far"], operating["frr"])
    else:
        marker = (threshold, *rates_from_curve(body["curve"], threshold))
    with tempfile.TemporaryDirectory(prefix="facerec-plot-") as folder:
        out = Path(folder) / f"report.{image_format}"
        plot_report(body, int(body["counts"]["impostor"]), out, marker)
        return out.read_bytes(), MEDIA_TYPES[image_format]


def _report_for_picture(
    services: Services, session: Session, target: Target, evaluation_id: str | None
) -> Report:
    if evaluation_id is not None:
        evaluation = evaluation_or_404(session, target, evaluation_id)
        report = evaluation_report(session, evaluation)
        if report is None:
            raise EvaluationNotReady(
                f"evaluation {evaluation_id!r} has no report ({evaluation.state})",
                {"evaluation_id": evaluation_id, "state": evaluation.state},
            )
        return report
    result = gallery_report(services, session, target)
    if isinstance(result, Job):
        raise EvaluationNotReady(
            "the gallery report is being computed; try again when the job is done", {"job": result.id}
        )
    return result
