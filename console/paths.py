"""Ids in console paths and forms: one strict parser, so every page answers a bad or oversized id alike."""

from __future__ import annotations

from aiohttp import web

MAX_ID = 2**62  # below every database's integer range: a larger number is simply not found
MAX_DIGITS = len(str(MAX_ID))  # 19: no id below MAX_ID is longer (leading zeros aside)


def parse_id(raw: str) -> int | None:
    """A database id from text, or None. ASCII digits only (``str.isdigit`` also takes "١", which
    int() would read as 1), at most ``MAX_DIGITS`` of them before int() is called (it raises
    ValueError past 4300 digits, and reads thousands slowly), and 0 < id < ``MAX_ID``: zero, or a
    number no row can have, is not an id, not a database overflow."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
        return None
    value = int(raw)
    return value if 0 < value < MAX_ID else None


def path_id(request: web.Request, name: str = "id") -> int:
    """A database id from the path (:func:`parse_id`); whatever is not one is a 404."""
    value = parse_id(request.match_info.get(name, ""))
    if value is None:
        raise web.HTTPNotFound()
    return value
