"""The installed models as an admin sees them: each with its licence and the collections it serves."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.orm import Session

from app.db.collections import all_collections
from app.model_packs.catalog import installed_models
from app.schemas.models import ModelList, ModelPublic
from app.services.container import Services


def list_models(services: Services, session: Session) -> ModelList:
    users: dict[str, list[str]] = defaultdict(list)
    for collection in all_collections(session):
        users[collection.model_name].append(collection.external_id)
    loaded = set(services.pipelines.loaded())
    items = []
    for model in installed_models(services.settings.models_dir):
        summary = model.summary()
        thresholds = [] if model.manifest is None else [p.model_dump() for p in model.manifest.thresholds]
        items.append(
            ModelPublic.model_validate(
                {
                    **summary,
                    "kind": model.kind,
                    "thresholds": thresholds,
                    "loaded": model.name in loaded,
                    "collections": users.get(model.name, []),
                    "commercial_use": model.commercial_use,
                }
            )
        )
    return ModelList(items=items, default=services.pipelines.default_name)
