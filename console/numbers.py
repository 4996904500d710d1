"""Whole numbers from requests that are not row ids (limits, offsets, a weekday, "none seen yet"):
read by the rule :func:`console.paths.parse_id` applies to ids, so every form and query answers a bad
or oversized number alike."""

from __future__ import annotations

from console.paths import MAX_DIGITS, MAX_ID


def parse_int(raw: str, lo: int, hi: int) -> int | None:
    """A whole number from ``lo`` to ``hi`` (both included; ``0 <= lo <= hi <= MAX_ID``) from text, or
    None. ASCII digits only (``str.isdigit`` also takes "١" and "²", and int() reads " 5", "+5" and
    "1_0"), at most ``MAX_DIGITS`` of them before int() is called (it raises ValueError past 4300
    digits, and reads thousands slowly); within range, so no database integer overflows."""
    assert 0 <= lo <= hi <= MAX_ID, (lo, hi)  # a caller's bound: at most MAX_DIGITS digits
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
        return None
    value = int(raw)
    return value if lo <= value <= hi else None
