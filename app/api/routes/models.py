"""Admin: the installed models (`facerec models list` over HTTP)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminDep, ServicesDep, SessionDep
from app.api.errors import error_responses
from app.schemas.models import ModelList
from app.services import models

router = APIRouter(prefix="/models", tags=["admin"])


@router.get(
    "",
    summary="Installed models: kind, sizes, metric, thresholds, licence, and the collections using each",
    responses=error_responses(),
)
def list_models(caller: AdminDep, services: ServicesDep, session: SessionDep) -> ModelList:
    return models.list_models(services, session)
