"""Ids in console paths: one strict parser, so every page answers a bad or oversized id alike."""

from __future__ import annotations

from aiohttp import web

MAX_ID = 2**62  # below every database's integer range: a larger number is simply not found


def path_id(request: web.Request, name: str = "id") -> int:
    """A database id from the path. ASCII digits only (the route's ``\\d+`` also matches "١", which
    int() would read as 1); zero, or a number no row can have, is a 404, not a database overflow."""
    raw = request.match_info.get(name, "")
    if not (raw.isascii() and raw.isdigit()):
        raise web.HTTPNotFound()
    value = int(raw)
    if not 0 < value < MAX_ID:
        raise web.HTTPNotFound()
    return value
