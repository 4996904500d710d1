"""Triage results: every score of a mention, with the model version that produced it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, IdMixin, utcnow


class TriageResult(IdMixin, Base):
    __tablename__ = "triage_results"
    mention_id: Mapped[int] = mapped_column(BigId, ForeignKey("mentions.id", ondelete="CASCADE"), unique=True)
    model_version: Mapped[str] = mapped_column(String(200))
    sentiment: Mapped[str] = mapped_column(String(20))
    sensitivity: Mapped[str] = mapped_column(String(20), index=True)
    escalate: Mapped[bool] = mapped_column(default=False)
    issue_type: Mapped[str] = mapped_column(String(80), index=True)
    toxicity: Mapped[str] = mapped_column(String(20))
    spam: Mapped[str] = mapped_column(String(20))
    pii_exposed: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str] = mapped_column(String(16), default="und")
    priority: Mapped[float] = mapped_column(default=0.0, index=True)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # every Score, explanations, PII spans
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
