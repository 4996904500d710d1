"""Times as a person reads them in the console: a bare "01:47" is wrong for a post 17 days old, so a
time that is not today carries its date, and a due time says how late it is or how long is left.
Every one keeps the exact UTC time for the ``datetime`` and ``title`` of its ``<time>`` element."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from listener.protocol import utc  # stored naive on SQLite, always UTC
from models.base import utcnow


def exact(at: datetime) -> str:
    """"2026-11-20 01:47 UTC": what a title shows on hover."""
    return f"{utc(at).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def clock(at: datetime, now: datetime | None = None) -> str:
    """"01:47" today (UTC), "2026-11-20 01:47" on any other day."""
    at, now = utc(at).astimezone(UTC), (now or utcnow()).astimezone(UTC)
    return f"{at:%H:%M}" if at.date() == now.date() else f"{at:%Y-%m-%d %H:%M}"


def span(seconds: float) -> str:
    """A duration as one rounds it aloud: "12 min", "3 h 5 min", "17 days"."""
    minutes = max(1, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days = hours // 24
    return f"{days} day" if days == 1 else f"{days} days"


def due(at: datetime, now: datetime | None = None) -> str:
    """"overdue by 17 days" or "due in 12 min"."""
    now = now or utcnow()
    left = (utc(at) - now).total_seconds()
    return f"due in {span(left)}" if left > 0 else f"overdue by {span(-left)}"


def time_tag(at: datetime, text: str) -> Markup:
    """``text`` in a ``<time>`` element carrying the exact UTC time (``datetime`` and ``title``)."""
    at = utc(at).astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(at.isoformat(), exact(at), escape(text))


GLOBALS = {"clock": clock, "due": due, "time_tag": time_tag}
