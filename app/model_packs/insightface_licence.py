"""What an InsightFace pack's ``MODEL.LICENSE`` permits, as insightface verifies it.

insightface's ``inspect_model_package_license`` reads a pack folder: without
a ``MODEL.LICENSE`` its non-commercial research terms apply; a signed one is
verified (signature, model id, validity period) and says whether commercial
use is granted. A licence that is present but invalid, not yet active or
expired never falls back to the default terms.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import insightface
from insightface.model_zoo.model_license import (
    LICENSE_FILENAME,
    STATUS_DEFAULT_NON_COMMERCIAL,
    STATUS_EXPIRED,
    STATUS_NOT_ACTIVE,
    ModelLicenseInspection,
    inspect_model_package_license,
)

from app.pipeline.manifest import LicenceStatus, ModelManifest

DEFAULT_TERMS = f"InsightFace non-commercial research terms (no {LICENSE_FILENAME})"
_SOURCE_PREFIX = "InsightFace pack "
_SOURCE_SUFFIX = f" (insightface {insightface.__version__})"


def pack_source(model_id: str) -> str:
    """A manifest's ``source_package`` for a model of the pack ``model_id``: where it came from.

    The model id is what a ``MODEL.LICENSE`` is issued for, so it is read back
    from here when the licence is inspected again (``installed_licence``).
    """
    return f"{_SOURCE_PREFIX}{model_id}{_SOURCE_SUFFIX}"


def pack_model_id(manifest: ModelManifest) -> str:
    """The pack model id recorded by ``pack_source``; the model's own name for other manifests."""
    source = manifest.source_package
    if not source.startswith(_SOURCE_PREFIX):
        return manifest.name
    return source.removeprefix(_SOURCE_PREFIX).rsplit(" (insightface ", 1)[0]


def licence_status(inspection: ModelLicenseInspection) -> LicenceStatus:
    """Our manifest's statement of an insightface licence inspection."""
    status = inspection.status
    if status == STATUS_DEFAULT_NON_COMMERCIAL:
        return LicenceStatus(
            terms=DEFAULT_TERMS,
            commercial_use=False,
            source=f"insightface licence inspection: {LICENSE_FILENAME} is absent",
            status=status,
        )
    granted = inspection.license
    if inspection.verified and granted is not None:
        terms = f"InsightFace {granted.grant} licence {granted.license_id} for {granted.model_id}"
        if granted.customer:
            terms += f", issued to {granted.customer}"
        if granted.valid_until is not None:
            terms += f", valid until {granted.valid_until:%Y-%m-%d %H:%M} UTC"
        return LicenceStatus(
            terms=terms,
            commercial_use=granted.commercial_use_permitted,
            source=f"{LICENSE_FILENAME}, signature verified by insightface",
            status=status,
        )
    # Present but not in force (its terms are known and grant nothing now), or unreadable.
    return LicenceStatus(
        terms=f"{LICENSE_FILENAME} not in force: {inspection.message}",
        commercial_use=False if status in {STATUS_EXPIRED, STATUS_NOT_ACTIVE} else None,
        source=f"{LICENSE_FILENAME}, rejected by insightface",
        status=status,
    )


def inspect_pack_licence(pack_dir: Path) -> tuple[str, LicenceStatus]:
    """The model id insightface gives a pack folder and what its licence permits."""
    inspection = inspect_model_package_license(pack_dir)
    return inspection.model_id, licence_status(inspection)


def installed_licence(
    model_dir: Path, manifest: ModelManifest, *, now: datetime | None = None
) -> LicenceStatus:
    """An imported model's licence as it stands ``now`` (default: now): a signed licence expires.

    Our ``manifest.json`` sits where insightface looks for a package manifest
    of its own, so the copied ``MODEL.LICENSE`` is inspected in a folder
    holding only it, for the model id of the pack it was issued for.
    """
    licence_file = model_dir / LICENSE_FILENAME
    with tempfile.TemporaryDirectory(prefix="facerec-licence-") as tmp:
        view = Path(tmp).resolve()
        if licence_file.is_file():
            shutil.copyfile(licence_file, view / LICENSE_FILENAME)
        inspection = inspect_model_package_license(view, expected_model_id=pack_model_id(manifest), now=now)
        stated = licence_status(inspection)
    return stated.model_copy(update={"terms": stated.terms.replace(str(view), str(model_dir))})
