"""The Discourse connector's cursor: where its poll (:mod:`listener.discourse.connector`) has read to.

The cursor is a small JSON object: ``after``, the post id up to which every post was read;
``recheck``, the window of recent posts (:mod:`listener.discourse.recheck`); and while a backlog
larger than a round's pages is read, ``catchup``: ``before``, the lowest id read so far, and
``newest``, the highest, to which ``after`` moves once the rounds reach it. A cursor saved before
the window existed (the bare post id) loads as ``after``.
"""

from __future__ import annotations

import json
from typing import Any

from listener.discourse.recheck import PostWindow
from listener.recheck import KEY

CATCHUP = "catchup"  # the cursor's key for a backlog still being read


def parse_cursor(cursor: str | None) -> int | None:
    """The highest post id seen: ``after`` of the JSON cursor, or a bare id (cursors saved before
    the re-check window)."""
    try:
        data = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    value = data.get("after") if isinstance(data, dict) else data
    return value if type(value) is int and value > 0 else None


def parse_catchup(cursor: str | None, since: int | None) -> tuple[int, int] | None:
    """The backlog a round left: ``(before, newest)``, the posts between ``since`` and ``before``
    still to read and the highest id read; None when there is none (or it makes no sense)."""
    try:
        data = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    gap = data.get(CATCHUP) if isinstance(data, dict) else None
    if since is None or not isinstance(gap, dict):
        return None
    before, newest = gap.get("before"), gap.get("newest")
    if type(before) is int and type(newest) is int and since + 1 < before <= newest:
        return before, newest
    return None


def dump_cursor(window: PostWindow, after: int | None, newest: int, before: int | None) -> str | None:
    """The cursor to save: ``after``, the window, and the backlog still to read (``before`` not
    None: ``after`` stays, ``newest`` is where it will move); None when all are empty."""
    data: dict[str, Any] = {"after": after} if after else {}
    if before is not None:
        data[CATCHUP] = {"before": before, "newest": newest}
    if window.seen or window.checked_at:
        data[KEY] = window.dump()
    return json.dumps(data, sort_keys=True) if data else None
