"""Routing decisions and the replies sent (or recorded) because of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow

ROUTE_OUTCOMES = (
    "auto_answer", "community_answer", "broadcast", "agent_queue", "escalate_private", "moderate", "ignore",
)


class RouteDecision(IdMixin, Base):
    __tablename__ = "route_decisions"
    mention_id: Mapped[int] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="CASCADE"), unique=True)
    outcome: Mapped[str] = mapped_column(String(30), index=True)
    reason: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(default=0.0)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    router_version: Mapped[str] = mapped_column(String(50))
    acted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reply(IdMixin, Base):
    """An outbound message. ``dedup_key`` makes sending idempotent under redelivery.

    Status: pending → sending → sent | failed | dry_run; ``deleted`` when a bot reply is reverted;
    ``cancelled`` (``error`` "erased", text gone) when its post was erased before it was sent
    (service.privacy_actions).
    A reply left in ``sending`` after a crash is never re-sent automatically (``unknown``): found so
    on redelivery, or ``claimed_at`` longer ago than ``Settings.stranded_send_minutes`` (the pacer's
    sweep, service.stranded). A public reply whose post's hide or removal is ``sending`` or
    ``unknown`` waits in ``pending``/``queued``, ``error`` "held back: ..." (service.dispatch).
    Incident status replies over the channel's pace wait as ``queued`` (oldest first, always with the
    newest status) and become ``superseded`` when the incident closes with a "fixed" follow-up.
    ``suggested``: a candidate the reply bot's gates held back, offered to an agent.
    """

    __tablename__ = "replies"
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    mention_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="SET NULL"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    case_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cases.id", ondelete="SET NULL"))
    platform: Mapped[str] = mapped_column(String(32))
    visibility: Mapped[str] = mapped_column(String(20), default="public")  # public | private
    kind: Mapped[str] = mapped_column(String(30))  # auto_answer | secure_link | status | agent | ...
    text: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    external_ids: Mapped[list[Any]] = mapped_column(default=list)
    sent_by: Mapped[str] = mapped_column(String(100), default="bot")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]  # when a sender took it (``sending``)
    # raised by each claim and by "send it again": only the current attempt's answer is recorded (0016)
    send_attempt: Mapped[int] = mapped_column(default=0, server_default=sql_text("0"))
