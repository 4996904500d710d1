"""Conversations and the mentions in them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow

# The text of a post whose content was erased (a person's erasure request or the retention purge,
# ``service.privacy``); such a post is also ``deleted``: no stage, queue or answer uses it again.
ERASED_TEXT = "[erased]"
# The text of a post whose content its platform's terms required removing when it was deleted there
# (X: deleted, withheld or its author protected/suspended; Reddit: deleted by its author;
# ``listener.deletions``). Not an erasure: the author stays, and a ``restore`` brings the words back.
DELETED_TEXT = "[deleted on its platform]"


class Conversation(IdMixin, Base):
    """A thread. It starts on one platform and may span channels (a case moves it to a DM)."""

    __tablename__ = "conversations"
    thread_key: Mapped[str] = mapped_column(String(200), unique=True)  # "<platform>:<root external id>"
    platform: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | resolved
    claimed_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime | None]
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The thread as its platform shows it, set by thread-wide events (a Discourse topic deleted or
    # recovered: listener.threads): when it was deleted (None: shown), and the time of the last such
    # event applied, so that an older one arriving late (a webhook retried) is dropped as stale.
    platform_deleted_at: Mapped[datetime | None]
    platform_state_at: Mapped[datetime | None]


class Mention(IdMixin, Base):
    """One post, comment or message from any channel (see ``listener.NormalizedMention``)."""

    __tablename__ = "mentions"
    __table_args__ = (
        UniqueConstraint("platform", "external_id"),
        Index("ix_mentions_created_at", "created_at"),
    )
    platform: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("authors.id", ondelete="SET NULL"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    lang: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(20), default="post")
    channel: Mapped[str | None] = mapped_column(String(200))
    is_public: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None]
    in_reply_to: Mapped[str | None] = mapped_column(String(100))  # parent's external id
    platform_conversation_id: Mapped[str | None] = mapped_column(String(100))
    hidden: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    # deleted because its whole thread was (not on its own): what the thread's recovery shows again
    deleted_with_thread: Mapped[bool] = mapped_column(default=False, server_default=false())
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PendingDeletion(Base):
    """A platform's deletion of a post not stored here (yet): its creation, retried or delivered
    late, may still arrive after it, and is then stored deleted (``listener.unseen``)."""

    __tablename__ = "pending_deletions"
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    remove_content: Mapped[bool] = mapped_column(default=False)  # as the deletion said (listener.deletions)
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # when it reached ingest
