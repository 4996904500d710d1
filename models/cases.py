"""Private cases (escalations) and their messages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow


class Case(IdMixin, Base):
    """A private, authenticated thread with a customer about something not for public view."""

    __tablename__ = "cases"
    conversation_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    author_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("authors.id", ondelete="SET NULL"), index=True)
    opened_by_mention_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("mentions.id", ondelete="SET NULL"), unique=True
    )
    category: Mapped[str] = mapped_column(String(30))  # security | fraud | account | agent
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)  # open | verified | resolved
    identity_pending: Mapped[bool] = mapped_column(default=True)
    assigned_to: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_response_due: Mapped[datetime | None]
    resolution_due: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    # One unresolved case per author: two act workers escalating the same author's posts at once
    # must not open two (the second insert fails, its batch is retried and joins the first case).
    __table_args__ = (Index("uq_cases_unresolved_author", "author_id", unique=True,
                            sqlite_where=text("status != 'resolved' AND author_id IS NOT NULL"),
                            postgresql_where=text("status != 'resolved' AND author_id IS NOT NULL")),)


CUSTOMER_POST = "sender = 'customer' AND mention_id IS NOT NULL"


class CaseMessage(IdMixin, Base):
    __tablename__ = "case_messages"
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sender: Mapped[str] = mapped_column(String(20))  # customer | agent | system
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    mention_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # A customer's post is kept on its case once: two act workers handling one redelivered post at
    # once must not both add it (the second insert fails, its batch is retried and finds the first).
    __table_args__ = (Index("uq_case_messages_customer_post", "case_id", "mention_id", unique=True,
                            sqlite_where=text(CUSTOMER_POST), postgresql_where=text(CUSTOMER_POST)),)
