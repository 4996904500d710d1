"""Console users, bot API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, event, inspect, text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.base import NO_VALUE

from models.base import Base, BigId, IdMixin, utcnow

ROLES = ("agent", "moderator", "marketing", "admin")


class User(IdMixin, Base):
    """A console user. ``session_epoch`` is carried in each session cookie (console.auth): a cookie
    of an older epoch no longer signs anyone in, so raising it ends every session of the user at
    once — on sign-out, and (see :func:`_end_sessions`) when the user is disabled or changes role."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_epoch: Mapped[int] = mapped_column(default=0, server_default=text("0"))


@event.listens_for(User.role, "set")
@event.listens_for(User.active, "set")
def _end_sessions(user: User, value: Any, old: Any, _initiator: Any) -> None:
    """A stored user whose role or status changes loses every session: whoever changes it (the admin
    pages, the CLI), a cookie issued before cannot act with powers granted — or taken back — since.
    Raised in SQL at the flush, so two changes at once never land on the same epoch; an old value
    not loaded counts as a change."""
    if inspect(user).has_identity and (old is NO_VALUE or old != value):
        user.session_epoch = User.session_epoch + 1


class ApiToken(IdMixin, Base):
    """A bot's API token; only its hash is stored. ``last_used_at`` is kept to the minute
    (console.auth.LAST_USED_EVERY), so a busy bot does not write on every request."""

    __tablename__ = "api_tokens"
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditEvent(IdMixin, Base):
    """Who did what, when and why. Never holds personal data in ``details``."""

    __tablename__ = "audit_events"
    # "was this object audited so?" in one lookup (the API cursor's dead letters, a reply's copies)
    __table_args__ = (Index("ix_audit_events_action_object", "action", "object_type", "object_id"),)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
