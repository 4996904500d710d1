"""Knowledge-base articles and answer templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdMixin, utcnow


class KnowledgeArticle(IdMixin, Base):
    __tablename__ = "knowledge_articles"
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    issue_types: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Template(IdMixin, Base):
    """An answer template; ``variants`` maps a tone (friendly, formal, ...) to a Jinja2 body."""

    __tablename__ = "templates"
    name: Mapped[str] = mapped_column(String(100), unique=True)
    issue_types: Mapped[list[Any]] = mapped_column(default=list)
    channel: Mapped[str] = mapped_column(String(32), default="any")
    variants: Mapped[dict[str, Any]] = mapped_column(default=dict)
    article_slug: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
