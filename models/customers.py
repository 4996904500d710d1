"""The customer record and the platform identities linked to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, CreatedMixin, IdMixin


class Customer(IdMixin, CreatedMixin, Base):
    """A customer as the brand's own systems know them (the CRM record)."""

    __tablename__ = "customers"
    external_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    plan: Mapped[str | None] = mapped_column(String(40))
    notes: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SocialIdentity(IdMixin, CreatedMixin, Base):
    """A platform account known to belong to a customer (linked by import or verification)."""

    __tablename__ = "social_identities"
    __table_args__ = (UniqueConstraint("platform", "handle_key"),)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    handle: Mapped[str | None] = mapped_column(String(200))
    handle_key: Mapped[str] = mapped_column(String(200))  # lower-cased handle, or "id:<user id>"
    verified_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(32), default="import")  # import | verification | agent


class Author(IdMixin, CreatedMixin, Base):
    """Who wrote a mention, as the platform shows them; linked to a customer when known."""

    __tablename__ = "authors"
    __table_args__ = (UniqueConstraint("platform", "author_key"),)
    platform: Mapped[str] = mapped_column(String(32))
    author_key: Mapped[str] = mapped_column(String(200))  # platform user id, or "@handle" when absent
    platform_user_id: Mapped[str | None] = mapped_column(String(64))
    handle: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    followers: Mapped[int | None]
    account_created_at: Mapped[datetime | None]
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    banned: Mapped[bool] = mapped_column(default=False)
