"""Operating thresholds: where verify says "match" (similarity) and identify names someone (decision score).

Each collection has its own. Defaults come from the embedding model's
manifest: verify at the threshold calibrated for FAR 1e-3; identify at the
manifest's open-set point, a target FPIR (share of strangers matched) in a
gallery of a stated size, on the model's decision score
(``app.eval.decision_score``). A manifest without an open-set block keeps
the older rule, raw similarity at FAR 1e-4. They are written to the
``settings`` table when a collection is created and on start, and read from
there on every request, so a value tuned later holds in every worker at
once; a value no one tuned follows the manifest.

The identify threshold is on the scale of one statistic; the statistic in
force is stored beside it (``IDENTIFY_STATISTIC_KEY``). When the model's
statistic changes (a recalibrated pack), an identify value set by hand on
the old scale is dropped for the new default, and the audit log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import ModelPackError
from app.core.logging import log_event
from app.db.audit import list_audit_by_action, write_audit
from app.db.stored_settings import get_setting, get_settings, set_setting
from app.eval.decision_score import RAW_SIMILARITY, statistic_name
from app.pipeline.manifest import DecisionScore, ModelManifest

logger = logging.getLogger(__name__)

VERIFY_KEY = "verify_threshold"
IDENTIFY_KEY = "identify_threshold"
IDENTIFY_STATISTIC_KEY = "identify_statistic"
VERIFY_FAR = 1e-3
IDENTIFY_FAR = 1e-4
# Where each stored value came from ({key: text}); a key absent here is the seeded default.
SOURCES_KEY = "threshold_sources"
# The audit action of a threshold change: the audit log is also the thresholds' history.
THRESHOLD_SET_ACTION = "threshold.set"

# Used only while the manifest carries no calibrated thresholds. Measured for
# dlib-resnet-v1 with this pipeline on 1,200 LFW faces of 600 people
# (718,800 impostor pairs): FAR 1e-3 at similarity 0.864 (FRR 12%), FAR 1e-4
# at 0.907. In Euclidean terms (similarity = 1 - d²/2) dlib's customary
# distance tolerance of 0.6 is 0.82, which this pipeline's embeddings pass
# for far more than 1 impostor in 1,000.
FALLBACK_VERIFY_THRESHOLD = 0.86
FALLBACK_IDENTIFY_THRESHOLD = 0.90


_FELL_BACK: set[str] = set()


@dataclass(frozen=True)
class OperatingThresholds:
    verify: float
    identify: float
    identify_statistic: str = "similarity"  # what ``identify`` is a threshold on


def identify_score(manifest: ModelManifest) -> DecisionScore:
    """The decision score ``/identify`` thresholds for this model: its manifest's, else raw similarity."""
    return manifest.open_set.score if manifest.open_set is not None else RAW_SIMILARITY


def default_thresholds(manifest: ModelManifest) -> OperatingThresholds:
    """The manifest's calibrated points, or the documented fallback when it has none."""
    if manifest.open_set is not None:
        identify = manifest.open_set.default_point().threshold
        try:
            verify = manifest.threshold_at(VERIFY_FAR)
        except ModelPackError:
            verify = FALLBACK_VERIFY_THRESHOLD
        return OperatingThresholds(verify, identify, statistic_name(manifest.open_set.score))
    try:
        return OperatingThresholds(manifest.threshold_at(VERIFY_FAR), manifest.threshold_at(IDENTIFY_FAR))
    except ModelPackError:
        if manifest.name in _FELL_BACK:
            return OperatingThresholds(FALLBACK_VERIFY_THRESHOLD, FALLBACK_IDENTIFY_THRESHOLD)
        _FELL_BACK.add(manifest.name)  # said once per model and process, not on every request
        log_event(
            logger,
            "thresholds.fallback",
            logging.WARNING,
            model=manifest.name,
            verify=FALLBACK_VERIFY_THRESHOLD,
            identify=FALLBACK_IDENTIFY_THRESHOLD,
            reason="manifest has no thresholds at FAR 1e-3 and 1e-4",
        )
        return OperatingThresholds(FALLBACK_VERIFY_THRESHOLD, FALLBACK_IDENTIFY_THRESHOLD)


def seed_thresholds(
    session: Session, collection_id: int, defaults: OperatingThresholds
) -> OperatingThresholds:
    """Store the defaults for every threshold no one has set; call in a write transaction.

    A value an admin set (it has a source) is kept. A value that is still a
    seeded default follows the manifest: after the model pack is
    recalibrated, or its metric changes, the old default would no longer
    mean the FAR it was chosen for, so it is replaced on the next start.
    """
    sources: dict[str, Any] = get_setting(session, collection_id, SOURCES_KEY, {}) or {}
    statistic = get_setting(session, collection_id, IDENTIFY_STATISTIC_KEY, "similarity")
    if statistic != defaults.identify_statistic:
        if IDENTIFY_KEY in sources:
            write_audit(
                session,
                "system",
                THRESHOLD_SET_ACTION,
                IDENTIFY_KEY,
                {
                    "value": float(defaults.identify),
                    "previous": get_setting(session, collection_id, IDENTIFY_KEY),
                    "source": f"model's identify statistic changed from {statistic} to "
                    f"{defaults.identify_statistic}: the old value meant nothing on the new scale",
                },
                collection_id=collection_id,
            )
            sources = {key: value for key, value in sources.items() if key != IDENTIFY_KEY}
            set_setting(session, collection_id, SOURCES_KEY, sources)
        set_setting(session, collection_id, IDENTIFY_STATISTIC_KEY, defaults.identify_statistic)
    for key, value in ((VERIFY_KEY, defaults.verify), (IDENTIFY_KEY, defaults.identify)):
        if key in sources:
            continue
        stored = get_setting(session, collection_id, key)
        if stored is None or float(stored) != float(value):
            set_setting(session, collection_id, key, float(value))
            log_event(
                logger, "thresholds.seeded", collection=collection_id, key=key, value=value, previous=stored
            )
    return operating_thresholds(session, collection_id, defaults)


def reset_thresholds(
    session: Session, collection_id: int, defaults: OperatingThresholds
) -> OperatingThresholds:
    """Forget every threshold set for the collection and seed ``defaults``: its model changed.

    Values tuned for the old model mean nothing on the new one's scale; the
    audit log keeps their history.
    """
    set_setting(session, collection_id, SOURCES_KEY, {})
    return seed_thresholds(session, collection_id, defaults)


def operating_thresholds(
    session: Session, collection_id: int, defaults: OperatingThresholds
) -> OperatingThresholds:
    """The collection's values in force; ``defaults`` stand in for a key missing from the table."""
    stored = get_settings(session, collection_id, (VERIFY_KEY, IDENTIFY_KEY))
    return OperatingThresholds(
        verify=float(stored.get(VERIFY_KEY, defaults.verify)),
        identify=float(stored.get(IDENTIFY_KEY, defaults.identify)),
        identify_statistic=defaults.identify_statistic,
    )


@dataclass(frozen=True)
class ThresholdChange:
    key: str
    value: float
    previous: float | None
    actor: str
    at: datetime
    source: str


def threshold_sources(session: Session, collection_id: int) -> dict[str, str]:
    """Where the collection's verify and identify thresholds in force came from."""
    stored: dict[str, Any] = get_setting(session, collection_id, SOURCES_KEY, {}) or {}
    return {
        "verify": str(stored.get(VERIFY_KEY, f"model manifest default (FAR {VERIFY_FAR:g})")),
        "identify": str(stored.get(IDENTIFY_KEY, "model manifest default")),
    }


def set_thresholds(
    session: Session,
    collection_id: int,
    defaults: OperatingThresholds,
    values: dict[str, float],
    *,
    actor: str,
    source: str,
) -> OperatingThresholds:
    """Store new values (keys ``VERIFY_KEY``/``IDENTIFY_KEY``), each audited with its previous value.

    Call in a write transaction. Every worker reads the stored values on each
    request, so the change holds everywhere once this commits.
    """
    current = operating_thresholds(session, collection_id, defaults)
    previous = {VERIFY_KEY: current.verify, IDENTIFY_KEY: current.identify}
    sources = dict(get_setting(session, collection_id, SOURCES_KEY, {}) or {})
    for key, value in values.items():
        if key not in previous:
            raise ValueError(f"unknown threshold {key!r}")
        set_setting(session, collection_id, key, float(value))
        sources[key] = source
        write_audit(
            session,
            actor,
            THRESHOLD_SET_ACTION,
            key,
            {"value": float(value), "previous": previous[key], "source": source},
            collection_id=collection_id,
        )
        log_event(
            logger,
            "thresholds.set",
            collection=collection_id,
            key=key,
            value=value,
            previous=previous[key],
            actor=actor,
        )
    set_setting(session, collection_id, SOURCES_KEY, sources)
    return operating_thresholds(session, collection_id, defaults)


def threshold_history(session: Session, collection_id: int, limit: int = 50) -> list[ThresholdChange]:
    """The collection's threshold changes, newest first, read back from the audit log."""
    return [
        ThresholdChange(
            key=entry.target,
            value=float(entry.details.get("value", 0.0)),
            previous=entry.details.get("previous"),
            actor=entry.actor,
            at=entry.at,
            source=str(entry.details.get("source", "")),
        )
        for entry in list_audit_by_action(session, THRESHOLD_SET_ACTION, collection_id, limit)
    ]
