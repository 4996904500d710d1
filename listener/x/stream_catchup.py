"""The X stream connector's catch-up (:mod:`listener.x.stream`): recent search for its rules since the cursor.

Every (re)connect of the stream starts with it, and the fallback without a filtered stream polls
with it. Recent search pages newest first, ``max_pages`` a round. A round that stops before
reaching the cursor's ``since_id`` leaves a gap, kept in the cursor (``gaps``,
:mod:`listener.x.stream_cursor`) and filled by the next rounds, oldest gap first (``until_id``),
before the stream is opened: nothing between is skipped for good, however long the outage.

Recent search reaches back 7 days, and answers a ``since_id`` posted earlier with HTTP 400
(``'since_id' must be a tweet id created after ...``). A tweet id tells when it was posted
(:func:`~listener.x.stream_cursor.posted_ms`), so a ``since_id`` (or a gap) older than that is
moved to the oldest id search still takes, with a warning naming what could not be caught up;
should X's clock be ahead of ours and answer that 400 all the same, its answer names the edge
(:func:`stale_edge`), and the round is asked again from there.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence

import tweepy
from tweepy.asynchronous import AsyncClient

from listener.protocol import NormalizedMention
from listener.x.errors import translate
from listener.x.normalize import (
    EXPANSIONS,
    TWEET_FIELDS,
    USER_FIELDS,
    newest_id,
    page_to_mentions,
    version_id,
)
from listener.x.recheck import Rechecks, TweetWindow, since_id
from listener.x.stream_cursor import (
    MARGIN_MS,
    REACH_MS,
    _now_ms,
    dump,
    id_at,
    joined,
    load_gaps,
    moved_on,
    posted_ms,
)

log = logging.getLogger("socialcare.listener.x")
_EDGE = re.compile(r"larger than (\d+)")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def stale_edge(exc: BaseException) -> str | None:
    """From X's 400 to a ``since_id`` beyond recent search's 7 days, the id it says a ``since_id``
    must be larger than (``"0"`` when the message names none); None for any other error."""
    if not isinstance(exc, tweepy.BadRequest):
        return None
    for error in exc.api_errors:
        if (isinstance(error, dict) and "since_id" in (error.get("parameters") or {})
                and "created after" in str(error.get("message") or "")):
            found = _EDGE.search(str(error.get("message")))
            return found.group(1) if found else "0"
    return None


def rules_query(rules: list[str]) -> str:
    """Recent search query equivalent to the stream rules."""
    return " OR ".join(f"({r})" for r in rules) if len(rules) > 1 else (rules[0] if rules else "")


class CatchUp(Rechecks):
    """The catch-up rounds of the X stream connector, which has ``search`` (tweepy's ``AsyncClient``
    with the bearer token), ``rules``, ``max_pages``, ``_session`` (opens a client's session) and
    ``_fresh`` (the versions not published yet)."""

    name: str
    channel: str
    rules: list[str]
    max_pages: int
    search: AsyncClient
    _session: Callable[..., None]
    _fresh: Callable[[list[NormalizedMention]], list[NormalizedMention]]

    async def _poll(self, cursor: str | None, carried: Sequence[NormalizedMention] = ()
                    ) -> tuple[list[NormalizedMention], list[NormalizedMention], str | None]:
        """Recent search for the rules since the cursor's ``since_id`` (the catch-up, and the
        fallback's poll), then the oldest gap's tweets, then the re-check of the window's tweets
        (those of earlier rounds) when due. Returns the re-check's events, the tweets found and not
        published yet (oldest first; ``carried`` first of all: a batch whose publishing failed,
        which search may not have indexed yet), and the cursor after them. A search error leaves
        the caller's cursor as it was; the re-check raises nothing (:meth:`Rechecks._recheck`)."""
        window, gaps, now = TweetWindow.from_cursor(cursor), load_gaps(cursor), _now_ms()
        since = self._reachable(since_id(cursor), now - REACH_MS + MARGIN_MS)
        found, newest, owed, since = await self._search(since)
        if owed is not None:  # the pages ran out before reaching since: the tweets between are owed
            gaps.append([since, owed])
        since = newest_id(newest, [*carried, *found], since)  # carried: the newest the live stream had reached
        if owed is None:
            since = moved_on(since, now)
        if gaps:
            older, gaps = await self._fill(gaps, now)
            found = older + found
        mentions = self._fresh([*carried, *found])
        changed = await self._recheck(window)
        self._remember(window, mentions)
        return changed, mentions, dump(since, window, joined(gaps))

    async def _fill(self, gaps: list[list[str]], now: int) -> tuple[list[NormalizedMention], list[list[str]]]:
        """The oldest gap's tweets (``max_pages`` pages at most), and the gaps left after."""
        (since, until), rest = gaps[0], gaps[1:]
        until = min(until, id_at(now), key=int)  # a stream's gap may end ahead (see stream.py); not yet posted
        if int(since) >= int(until):
            return [], rest
        floor = now - REACH_MS + MARGIN_MS
        if posted_ms(until) <= floor:
            log.warning("connector %s: X recent search reaches back 7 days only: mentions matching the rules posted "
                        "between %s and %s could not be caught up", self.name, _iso(posted_ms(since)),
                        _iso(posted_ms(until)))
            return [], rest
        found, _, owed, since = await self._search(self._reachable(since, floor), until)
        return found, ([[since, owed]] if owed is not None and since is not None else []) + rest

    def _reachable(self, since: str | None, floor_ms: int) -> str | None:
        """``since``, or the oldest ``since_id`` recent search still takes (``floor_ms`` on) when it is
        older: X refuses one older than 7 days (HTTP 400), and the tweets before are out of reach."""
        if since is None or posted_ms(since) >= floor_ms:
            return since
        log.warning("connector %s: X recent search reaches back 7 days only: catching up from %s; mentions matching "
                    "the rules posted between %s and then (the connector was not listening) could not be caught up",
                    self.name, _iso(floor_ms), _iso(posted_ms(since)))
        return id_at(floor_ms)

    async def _search(self, since: str | None, until: str | None = None
                      ) -> tuple[list[NormalizedMention], str | None, str | None, str | None]:
        """:meth:`_pages`, and the ``since_id`` it used: one X still finds beyond its 7 days (its
        clock ahead of ours) is moved to the edge its answer names, and the search asked again, once."""
        try:
            return *await self._pages(since, until), since
        except tweepy.BadRequest as exc:
            edge = stale_edge(exc)
            if edge is None or since is None:
                raise translate(exc) from exc
            floor = posted_ms(edge) if edge != "0" else _now_ms() - REACH_MS + MARGIN_MS
            since = self._reachable(since, floor + MARGIN_MS)
            if until is not None and int(since) >= int(until):
                return [], None, None, since  # the whole gap is out of reach: warned of above
            try:
                return *await self._pages(since, until), since
            except Exception as again:
                raise translate(again) from again

    async def _pages(self, since: str | None,
                     until: str | None = None) -> tuple[list[NormalizedMention], str | None, str | None]:
        """Recent search for the rules, newest first, ``max_pages`` pages at most: the tweets after
        ``since`` (and before ``until``), oldest first; the newest id listed; and, when the pages ran
        out before reaching ``since``, the oldest id listed (the tweets between ``since`` and it are
        owed), else None. Without ``since`` (the first run) the latest page is the baseline.
        X's 400 comes out as it is (:meth:`_search`), other errors translated."""
        self._session(self.search)
        out: list[NormalizedMention] = []
        newest, oldest, token = None, None, None
        try:
            for _ in range(self.max_pages):
                page = await self.search.search_recent_tweets(
                    rules_query(self.rules), since_id=since, until_id=until, next_token=token, max_results=100,
                    expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS)
                meta = (page.get("meta") or {}) if isinstance(page, dict) else {}
                mentions = page_to_mentions(page, self.channel, self.withheld_in)
                newest = newest or meta.get("newest_id")
                listed = [i for i in [meta.get("oldest_id"), *(version_id(m) for m in mentions)] if str(i).isdigit()]
                oldest = min(listed, key=int) if listed else oldest
                out = mentions + out
                token = meta.get("next_token")
                if not token or since is None:
                    break
        except tweepy.BadRequest:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        owed = (oldest or newest or until) if token and since is not None else None
        return out, newest, owed
