"""Erasure tombstones: which platform accounts were erased on request, and when, as keyed hashes
only (never a handle or id in clear), so that a post of theirs published before the erasure but
ingested after it is recognised and not stored (``service.tombstones``).

The row ``GATE`` counts the erasures: every erasure bumps it first, so ingest learns from one row
that a tombstone may be new, and the two serialise on it (``service.tombstones``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

GATE = "*"  # the counting row's key (an HMAC's hex digest is never "*")


class ErasureTombstone(Base):
    __tablename__ = "erasure_tombstones"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC-SHA256 of (platform, kind, value)
    erased_at: Mapped[datetime | None]  # the latest erasure of this account (the gate: of any)
    erasures: Mapped[int] = mapped_column(Integer, default=1)
