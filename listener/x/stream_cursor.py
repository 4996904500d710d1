"""The X stream connector's cursor (:mod:`listener.x.stream`): where its catch-up starts, what it still owes.

A stream has no resume point, so the cursor holds the newest tweet id seen (``since_id``), from
which every (re)connect catches up with recent search (:mod:`listener.x.stream_catchup`). A
catch-up round that stops before reaching the ``since_id`` leaves a gap, kept in the cursor
(``gaps``: ``[since_id, until_id]`` pairs, both exclusive) until later rounds fill it; at most
:data:`MAX_GAPS` are kept. The window of recent tweets looked up again for deletions is its
``recheck`` (:mod:`listener.x.recheck`); a cursor without gaps is the re-check's own
(:func:`~listener.x.recheck.dump_cursor`, a bare ``since_id`` loading as such).

Recent search reaches back 7 days. A tweet id tells when it was posted (X's snowflake ids:
``(id >> 22) + 1288834974657`` is its epoch millisecond), so a ``since_id`` (or a gap) older than
that can be moved to the oldest id search still takes (:func:`id_at`). A quiet cursor is moved on
as the stream (or a poll) covers the time (:func:`moved_on`), so 7 quiet days stop nothing and warn
of nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from listener.recheck import KEY
from listener.x.recheck import TweetWindow, dump_cursor

EPOCH_MS = 1288834974657  # X's snowflake epoch: a tweet id is its millisecond since then << 22, plus worker and sequence
REACH_MS = 7 * 86_400_000  # how far back recent search reaches
MARGIN_MS = 120_000  # a since_id closer than this to the 7-day edge is moved inside it: the request takes time
QUIET_MS = 86_400_000  # a since_id older than this is moved on to what the stream or a poll has covered ...
SETTLE_MS = 3_600_000  # ... up to this long ago: more than a tweet takes to be streamed or indexed
MAX_GAPS = 20  # more gaps than this: the newest two are joined (what lies between is fetched again)


def posted_ms(tweet_id: str) -> int:
    """When the tweet was posted (epoch milliseconds): a snowflake id says so."""
    return (int(tweet_id) >> 22) + EPOCH_MS


def id_at(ms: int) -> str:
    """A ``since_id`` that lets through every tweet posted from that epoch millisecond on."""
    return str(max(((ms - EPOCH_MS) << 22) - 1, 0))


def _now_ms() -> int:
    return int(time.time() * 1000)


def moved_on(since: str | None, now_ms: int) -> str | None:
    """A ``since_id`` older than :data:`QUIET_MS`, moved on to :data:`SETTLE_MS` ago, for a round
    that covered the time since (a search that reached it, a stream that stayed connected): a quiet
    cursor never falls out of recent search's reach."""
    if since is None or posted_ms(since) >= now_ms - QUIET_MS:
        return since
    return max(since, id_at(now_ms - SETTLE_MS), key=int)


def load_gaps(cursor: str | None) -> list[list[str]]:
    """The cursor's gaps: ``[since_id, until_id]`` pairs of tweets owed; anything malformed is dropped."""
    try:
        data = json.loads(cursor) if cursor and not cursor.isdigit() else {}
    except ValueError:
        return []
    gaps = data.get("gaps") if isinstance(data, dict) else None
    if not isinstance(gaps, list):
        return []
    return [[g[0], g[1]] for g in gaps if isinstance(g, list) and len(g) == 2
            and all(isinstance(i, str) and i.isdigit() for i in g) and int(g[0]) < int(g[1])]


def joined(gaps: list[list[str]]) -> list[list[str]]:
    """At most :data:`MAX_GAPS` gaps: the newest ones joined (the tweets between are fetched again,
    which ingest skips as duplicates; none is skipped)."""
    gaps = [list(g) for g in gaps]
    while len(gaps) > MAX_GAPS:
        (since, _), (_, until) = gaps[-2], gaps[-1]
        gaps[-2:] = [[since, until]]
    return gaps


def dump(since: str | None, window: TweetWindow, gaps: list[list[str]]) -> str | None:
    """The cursor to save (:func:`~listener.x.recheck.dump_cursor`, and the gaps when there are)."""
    if not gaps:
        return dump_cursor(since, window)
    data: dict[str, Any] = {"since_id": since, "gaps": gaps}
    if window.seen:
        data[KEY] = window.dump()
    return json.dumps(data, sort_keys=True)
