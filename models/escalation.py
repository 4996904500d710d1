"""Escalation: secure links, the customer's verified session, and SLA breaches of private cases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow


class SecureLink(IdMixin, Base):
    """A single-use link to a case's private channel. Only the SHA-256 of its token is stored."""

    __tablename__ = "secure_links"
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str] = mapped_column(String(100), default="bot")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]  # the one session it started
    revoked_at: Mapped[datetime | None]  # superseded by a newer link, or the case closed


class CustomerSession(IdMixin, Base):
    """The customer's own session, started by one secure link and bound to that link's case.

    Separate from console sessions: its cookie holds a random value whose SHA-256 is kept here.
    Verification state lives here too: the one-time code (argon2 hash), failed attempts, lock-outs.
    """

    __tablename__ = "customer_sessions"
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[int] = mapped_column(BigId, ForeignKey("secure_links.id", ondelete="CASCADE"), unique=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # the customer record the code was sent for (None while unknown, or when no record matched)
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id", ondelete="SET NULL"))
    code_hash: Mapped[str | None] = mapped_column(String(200))
    code_expires_at: Mapped[datetime | None]
    codes_sent: Mapped[int] = mapped_column(default=0)
    last_code_at: Mapped[datetime | None]
    failed_attempts: Mapped[int] = mapped_column(default=0)
    lockouts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]


class RateCounter(Base):
    """A request count shared by every web process (the per-case limits of the customer pages, the
    sign-in limits per name and device): ``window_no`` holds the key's current window's start in epoch
    milliseconds (it starts at the key's first hit), ``hits`` counts within it."""

    __tablename__ = "rate_counters"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_no: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(default=0)


class SlaBreach(IdMixin, Base):
    """A case that missed its first-response or resolution deadline (recorded once per kind)."""

    __tablename__ = "sla_breaches"
    __table_args__ = (UniqueConstraint("case_id", "kind"),)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # first_response | resolution
    due_at: Mapped[datetime]
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
