"""Run-time settings and the audit trail."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.audit import list_audit, write_audit
from app.db.stored_settings import all_settings, get_setting, set_setting
from tests.db.factories import default_id


def test_settings_round_trip_and_overwrite(session: Session) -> None:
    assert get_setting(session, default_id(session), "verify.threshold", 0.5) == 0.5
    set_setting(session, default_id(session), "verify.threshold", 0.61)
    set_setting(session, default_id(session), "identify", {"threshold": 0.55, "top_k": 5})
    set_setting(session, default_id(session), "verify.threshold", 0.63)
    session.expire_all()
    assert get_setting(session, default_id(session), "verify.threshold") == 0.63
    assert all_settings(session, default_id(session)) == {
        "identify": {"threshold": 0.55, "top_k": 5},
        "verify.threshold": 0.63,
    }


def test_audit_lists_newest_first_in_pages(session: Session) -> None:
    for number in range(5):
        write_audit(session, "frk_abcdefgh", "threshold.set", f"verify.{number}", {"value": number})
    newest = list_audit(session, limit=2)
    assert [entry.target for entry in newest] == ["verify.4", "verify.3"]
    older = list_audit(session, limit=10, before_id=newest[-1].id)
    assert [entry.target for entry in older] == ["verify.2", "verify.1", "verify.0"]
    assert older[0].details == {"value": 2}
    assert older[0].at.tzinfo is not None
