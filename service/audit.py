"""The audit log: who did what, when and why. Details must never carry personal data."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent
from triage.pii import redact


def record(session: AsyncSession, actor: str, action: str, object_type: str, object_id: Any = None,
           reason: str | None = None, **details: Any) -> AuditEvent:
    """Add an audit event to the caller's transaction (committed with the action it describes). A
    reason is free text typed by a person or a bot ("card 4111 ... here"): personal data in it, or
    in a text detail, is redacted before it is stored, since the audit log is shown to admins."""
    event = AuditEvent(actor=actor, action=action, object_type=object_type,
                       object_id=None if object_id is None else str(object_id),
                       reason=redact(reason) if reason else reason,
                       details={k: redact(v) if isinstance(v, str) else v for k, v in details.items()})
    session.add(event)
    return event
