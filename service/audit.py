"""The audit log: who did what, when and why. Details must never carry personal data."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent


def record(session: AsyncSession, actor: str, action: str, object_type: str, object_id: Any = None,
           reason: str | None = None, **details: Any) -> AuditEvent:
    """Add an audit event to the caller's transaction (committed with the action it describes)."""
    event = AuditEvent(actor=actor, action=action, object_type=object_type,
                       object_id=None if object_id is None else str(object_id), reason=reason, details=details)
    session.add(event)
    return event
