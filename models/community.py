"""Community: accepted community answers and the timeline of incidents (status updates, closing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow


class CommunityAnswer(IdMixin, Base):
    """A reply the community itself accepted (a Discourse solution, a comment a Reddit moderator
    distinguished), kept with the question it answers so later askers can be pointed to it."""

    __tablename__ = "community_answers"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)
    platform: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))  # the answer's id on its platform
    answer_mention_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="SET NULL"))
    question_mention_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="SET NULL"),
                                                            index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(30))  # accepted | distinguished | moderator
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncidentUpdate(IdMixin, Base):
    """One entry of an incident's timeline: opened, a status message, closed (with or without the
    "fixed" follow-up). ``recipients`` is how many authors the message was queued for."""

    __tablename__ = "incident_updates"
    incident_id: Mapped[int] = mapped_column(BigId, ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # opened | status | closed | fixed | note
    message: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100), default="bot")
    recipients: Mapped[int] = mapped_column(default=0)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
