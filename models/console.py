"""What the console itself keeps: outgoing webhook subscriptions and deliveries, digest schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow

WEBHOOK_EVENTS = ("mention.triaged", "mention.routed", "case.opened", "incident.opened", "moderation.notify",
                  "sla.breached")


class WebhookSubscription(IdMixin, Base):
    """A bot's endpoint for outgoing events. ``secret`` signs each body (HMAC-SHA256); it must be
    kept in clear to sign, so only admins may read or create subscriptions."""

    __tablename__ = "webhook_subscriptions"
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(IdMixin, Base):
    """One event for one subscription; retried with back-off until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id"),)
    subscription_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # the post the event is about (its ``data.mention_id``; no foreign key: a record of what was sent),
    # so that a post's deliveries are found by index when its content is removed (listener.deletions)
    mention_id: Mapped[int | None] = mapped_column(BigId, index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class DigestSchedule(IdMixin, Base):
    """When the sentiment digest is generated and to whom it is mailed (times are UTC)."""

    __tablename__ = "digest_schedules"
    period: Mapped[str] = mapped_column(String(10), unique=True)  # day | week
    send_at: Mapped[str] = mapped_column(String(5), default="07:00")  # HH:MM, UTC
    weekday: Mapped[int] = mapped_column(default=0)  # 0 = Monday; weekly digests only
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    last_sent_key: Mapped[str | None] = mapped_column(String(40))  # the period last mailed, e.g. "day:2026-11-24"
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
