"""Moderation actions (held, removed, approved...) and incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow


class ModerationAction(IdMixin, Base):
    """A hold, alert or platform action on a post, once per ``dedup_key``. Status (see
    community.moderation): pending | queued | sending | done | failed | dry_run | recorded | alert |
    acknowledged | reviewed, ``cancelled`` (``details["cancelled"]`` "erased") for a platform
    action never performed because its post was erased first (service.privacy_actions), and
    ``unknown`` for one whose executor was interrupted mid-call three times (``claimed_at`` too long
    ago: service.stranded's sweep performs it again before that), for a person to check on the platform."""

    __tablename__ = "moderation_actions"
    __table_args__ = (UniqueConstraint("dedup_key"),)
    dedup_key: Mapped[str] = mapped_column(String(200))
    mention_id: Mapped[int] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(20))  # hold | remove | approve | lock | label | notify | hide | ban
    rule: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100), default="bot")
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | done | failed | reviewed
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]  # when an executor took it (``sending``)
    # raised by each claim and by "Try again": only the current attempt's answer is recorded (0017)
    send_attempt: Mapped[int] = mapped_column(default=0, server_default=sql_text("0"))


class Incident(IdMixin, Base):
    """An outage or spike that many customers report at once; answered one-to-many."""

    __tablename__ = "incidents"
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)  # type:channel:window opened in
    issue_type: Mapped[str] = mapped_column(String(80))
    channel: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)  # open | closed
    title: Mapped[str] = mapped_column(String(300))
    status_message: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IncidentMention(Base):
    __tablename__ = "incident_mentions"
    incident_id: Mapped[int] = mapped_column(BigId, ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    mention_id: Mapped[int] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
