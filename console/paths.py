"""Ids and whole numbers in console paths, forms and queries: one strict parser, so every page answers a
bad or oversized number alike."""

from __future__ import annotations

from aiohttp import web

MAX_ID = 2**62  # below every database's integer range: a larger number is simply not found
MAX_DIGITS = len(str(MAX_ID))  # 19: no id below MAX_ID is longer (leading zeros aside)


def parse_int(raw: str, lo: int, hi: int) -> int | None:
    """A whole number from ``lo`` to ``hi`` (both included; ``0 <= lo <= hi <= MAX_ID``) from text, or
    None: ids, limits, offsets, a weekday, "none seen yet" are all read by this one rule, so every path,
    form and query answers a bad or oversized number alike. ASCII digits only (``str.isdigit`` also
    takes "١" and "²", and int() reads " 5", "+5" and "1_0"), at most ``MAX_DIGITS`` of them before
    int() is called (it raises ValueError past 4300 digits, and reads thousands slowly); within range,
    so no database integer overflows."""
    assert 0 <= lo <= hi <= MAX_ID, (lo, hi)  # a caller's bound: at most MAX_DIGITS digits
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
        return None
    value = int(raw)
    return value if lo <= value <= hi else None


def parse_id(raw: str) -> int | None:
    """A database id from text, or None: 0 < id < ``MAX_ID`` (zero, or a number no row can have, is
    not an id, not a database overflow)."""
    return parse_int(raw, 1, MAX_ID - 1)


def path_id(request: web.Request, name: str = "id") -> int:
    """A database id from the path (:func:`parse_id`); whatever is not one is a 404."""
    value = parse_id(request.match_info.get(name, ""))
    if value is None:
        raise web.HTTPNotFound()
    return value
