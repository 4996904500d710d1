"""The Discourse connector: a catch-up poll, and a re-check of recent posts for edits and
deletions. Its actions (replies, private messages, hiding, suspending a user, deleting our own
reply) are :mod:`listener.discourse.actions`; its cursor, :mod:`listener.discourse.cursor`.

Webhooks (:mod:`listener.discourse.webhook`) deliver posts as they happen; this connector polls
``/posts.json`` (latest posts, newest first, paged with ``before``) from a cursor, the post id up to
which every post was read, so posts whose webhook was missed (Discourse down, this service down, a
webhook disabled after failures) still arrive. Ingest stores a post once whichever way it came.
Edits and deletions whose webhook was missed are caught by re-reading the posts published in the
last ``recheck_hours`` every ``recheck_seconds`` (:mod:`listener.discourse.recheck`), mostly on the
same pages.

A round reads at most ``max_pages`` pages (of 50). A backlog larger than that (a long outage on a
busy forum) is never skipped: the round publishes the newest posts and saves where its paging
stopped (``catchup``: ``before``, the lowest id read, and ``newest``, the highest), ``after`` left
as it was; the next rounds page on from ``before`` down to ``after``, ``max_pages`` a round, and
only once they reach it does ``after`` move to ``newest`` and the rounds read from the top again
(the posts that came meanwhile wait for that; webhooks deliver them in real time anyway). The
re-check waits for the backlog too.

The re-check never holds new posts back for trouble of its own: a post read alone whose answer is
an error (a 5xx, a 4xx other than 404, a timeout, a body that is not JSON) is unknown this round
(logged with its id and the status, left as it was, read again on a later round; after a timeout or
a 5xx no other post is read alone that round, so a hanging forum costs one request timeout, not
``recheck_lookups`` of them), and a page read for the re-check alone (below the poll's own) that
fails ends the paging there, the window's posts below it waiting for a round that reaches them. A
429 met by the re-check part (a page below the poll's own, or a post read alone) ends the re-check
for the round: the round's new posts are returned and the catch-up cursor moves on, the window is
left as it was (not marked checked) and keeps a "not before" time (``wait``, as X's window does:
``Retry-After``, at most :data:`LIMIT_WAIT` ahead), before which no round re-checks. Discourse's
limit is per API key, so the poll's own pages may meet it too: a 429 or another error on them is
raised (the runner waits or backs off, the saved cursor stays as it was and the repeated round
fetches the new posts again, so none is lost).

Error messages name a status, a path or an exception's type, never a response body
(:mod:`listener.discourse.errors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from listener.discourse.actions import DiscourseActions
from listener.discourse.cursor import dump_cursor, parse_catchup, parse_cursor
from listener.discourse.errors import (
    DiscourseHTTPError,
    DiscourseRefused,
    DiscourseUnavailable,
    reason,
    refusal,
    short,
)
from listener.discourse.normalize import is_ours, post_to_mention, whisper
from listener.discourse.recheck import PostWindow, recheck, usable
from listener.errors import AuthError, ConnectorError, RateLimited, TransientError
from listener.protocol import NormalizedMention

# the errors (listener.discourse.errors) and the cursor's parsers (.cursor) are imported from here too
__all__ = ["DiscourseConnector", "DiscourseHTTPError", "DiscourseRefused", "DiscourseUnavailable", "parse_catchup",
           "parse_cursor"]

log = logging.getLogger("socialcare.listener.discourse")

# the re-check's defaults (SOCIALCARE_DISCOURSE_RECHECK_* set the first three, listener.registry):
# every 5 minutes, posts of the last day, at most 200 of them, 8 more pages of 50 a round at most
# and 10 posts read alone
RECHECK_SECONDS, RECHECK_HOURS, RECHECK_SIZE, RECHECK_PAGES, RECHECK_LOOKUPS = 300.0, 24.0, 200, 8, 10
LIMIT_WAIT = 900.0  # the longest a 429 met by the re-check holds the re-check back


class DiscourseConnector(DiscourseActions):
    """The :class:`~listener.protocol.Connector` for Discourse: its ``perform`` is
    :class:`~listener.discourse.actions.DiscourseActions`'s."""

    name = "discourse"
    platform = "discourse"

    def __init__(self, settings: Any, *, poll_seconds: float = 60.0, max_pages: int = 10, timeout: float = 30.0,
                 recheck_seconds: float = RECHECK_SECONDS, recheck_hours: float = RECHECK_HOURS,
                 recheck_size: int = RECHECK_SIZE, recheck_pages: int = RECHECK_PAGES,
                 recheck_lookups: int = RECHECK_LOOKUPS) -> None:
        self.base = str(settings.discourse_url).rstrip("/")
        self.username = settings.discourse_api_username
        self.headers = {"Api-Key": settings.secret("discourse_api_key") or "", "Api-Username": self.username or "",
                        "Accept": "application/json"}
        self.poll_seconds, self.max_pages = poll_seconds, max_pages
        self.recheck_seconds, self.recheck_hours, self.recheck_size = recheck_seconds, recheck_hours, recheck_size
        self.recheck_pages, self.recheck_lookups = recheck_pages, recheck_lookups
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.webhook = bool(settings.discourse_webhook_secret)
        self.session: aiohttp.ClientSession | None = None
        self.status: Any = None

    async def _call(self, method: str, path: str, *, act: bool = False, **kwargs: Any) -> Any:
        """One request. ``act``: a moderation request, whose 403 is :class:`DiscourseRefused` (the
        post's state may be why) rather than :class:`AuthError`."""
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        try:
            async with self.session.request(method, self.base + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status == 403 and act:
                    words = refusal(body)
                    raise DiscourseRefused(f"Discourse answered 403 {reason(403, body)} on {path}"
                                           + (f": {words}" if words else ""), 403)
                if resp.status in (401, 403):
                    raise AuthError(f"Discourse refused the API key ({resp.status}) on {path}")
                if resp.status == 429:
                    retry = resp.headers.get("Retry-After")
                    raise RateLimited("Discourse rate limit (429)", retry_after=float(retry) if retry else None)
                if resp.status >= 500:
                    raise DiscourseUnavailable(f"Discourse error {resp.status} on {path}")
                if resp.status >= 400:
                    raise DiscourseHTTPError(f"Discourse answered {resp.status} {reason(resp.status, body)} on "
                                             f"{path}", resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DiscourseUnavailable(f"Discourse unreachable: {type(exc).__name__}") from exc
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TransientError(f"Discourse sent malformed JSON on {path}") from exc

    async def _pages(self, floor: int | None, pages: int, needed: int | None = None, start: int | None = None
                     ) -> tuple[dict[int, dict[str, Any]], int, RateLimited | None]:
        """``/posts.json`` pages, newest first (below id ``start``, None: from the newest), until one
        reaches id ``floor`` (None: one page), the listing ends or ``pages`` were read; the posts by
        id, the lowest id the pages cover (0: the listing ended), and the 429 that ended the paging
        (None: none). The poll needs the pages down to id ``needed`` (None: the first one), and their
        errors are raised; an error on a page read for the re-check alone, below those, ends the
        paging there (a 429 is returned: the round's re-check is skipped)."""
        posts: dict[int, dict[str, Any]] = {}
        before: int | None = start
        for _ in range(pages):
            try:
                page = await self._call("GET", "/posts.json", params={"before": before} if before else None)
                if not isinstance(page, dict):
                    raise TransientError("Discourse sent a /posts.json page that is not a JSON object")
            except ConnectorError as exc:
                if before is None or (needed is not None and before > needed):
                    raise
                if isinstance(exc, RateLimited):
                    return posts, before, exc
                log.warning("discourse re-check: the page below post %d failed (%s); the window's posts below "
                            "it wait for a later round", before, short(exc))
                break
            latest = [p for p in (page.get("latest_posts") or []) if isinstance(p, dict) and type(p.get("id")) is int]
            if not latest:
                return posts, 0, None  # the listing ended: it covered everything
            posts.update({p["id"]: p for p in latest})
            before = min(p["id"] for p in latest)
            if floor is None or before <= floor:
                break
        return posts, before or 0, None

    async def _lookup(self, pid: int) -> dict[str, Any] | None:
        """``GET /posts/{id}.json``: None for a 404 (deleted, to a non-staff API user). Any other error
        but a 429 (a 403 for a post out of the API user's sight or a key without that scope, a 5xx, a
        timeout, a body that is not JSON) is logged, the post unknown this round: left as it was and
        read again on a later round. A 403 or a body that is not JSON reads as ``{}``; a 5xx or a
        timeout is raised (:class:`DiscourseUnavailable`, a ``TransientError``) so that the re-check
        reads no more posts alone this round. A 429 is raised: the limit is the API key's."""
        try:
            post = await self._call("GET", f"/posts/{pid}.json")
        except RateLimited:
            raise
        except ConnectorError as exc:
            if isinstance(exc, DiscourseHTTPError) and exc.status == 404:
                return None
            down = isinstance(exc, DiscourseUnavailable)
            log.warning("discourse re-check: post %d unknown this round (%s)%s", pid, short(exc),
                        "; no more posts read alone this round" if down else "")
            if down:
                raise
            return {}
        return post if isinstance(post, dict) else {}

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        """One round: the posts newer than the cursor (the latest page only on a first run), then,
        when due, the re-check of the window, whose pages continue the poll's own. A backlog larger
        than the round's pages is read on over the next rounds, none skipped (the module's
        docstring). A raised error (a failure of the poll's own pages, a 429 included) leaves the
        caller's cursor, and so the window, as it was; the re-check's failures are absorbed: after a
        429 the round's new posts are returned, the window left unchecked with a "not before"."""
        since, window = parse_cursor(cursor), PostWindow.from_cursor(cursor)
        now = time.time()
        window.trim(now, self.recheck_hours, self.recheck_size)
        backlog = parse_catchup(cursor, since)
        if since is not None and backlog is not None:  # (parse_catchup needs ``since`` already)
            return await self._catch_up(since, *backlog, window, now)
        due = bool(window.seen) and window.due(now, self.recheck_seconds, LIMIT_WAIT)
        floor = window.lowest() if due else since  # the window's posts are all at most ``since``
        if due and since is not None and floor is not None:
            floor = min(floor, since)
        listed, low, limited = await self._pages(floor, self.max_pages + (self.recheck_pages if due else 0), since)
        fresh = [listed[i] for i in sorted(listed) if since is None or i > since]
        mentions = [post_to_mention(p, self.base) for p in fresh if self._shown(p)]
        newest = max([since or 0, *(p["id"] for p in fresh)])
        left = since is not None and low > since + 1  # the pages stopped above the cursor: a backlog
        if left:
            log.warning("discourse catch-up: more new posts than %d pages; posts %d to %d are read on the next "
                        "rounds", self.max_pages, since + 1, low - 1)
        elif due and limited is None:
            try:
                mentions += await recheck(window, listed, low, self._lookup, self.base, now, self.recheck_lookups)
            except RateLimited as exc:  # raised before the window was touched
                limited = exc
        if limited is not None:
            wait = window.wait_for(limited, now, LIMIT_WAIT)
            log.warning("discourse re-check: rate limited (429); the round's %d new posts go on, the re-check of "
                        "%d posts waits %.0f s", len(mentions), len(window.seen), wait)
        after = since if left else newest
        return mentions, self._cursor(window, mentions, now, after, newest, low if left else None) or cursor

    async def _catch_up(self, since: int, before: int, newest: int, window: PostWindow,
                        now: float) -> tuple[list[NormalizedMention], str | None]:
        """A round of a backlog: pages below ``before`` down to ``since``, ``max_pages`` at most; once
        they reach it the cursor's ``after`` becomes ``newest``. Errors are raised (the cursor stays)."""
        listed, low, _ = await self._pages(since + 1, self.max_pages, since, start=before)
        fresh = [listed[i] for i in sorted(listed) if i > since]
        mentions = [post_to_mention(p, self.base) for p in fresh if self._shown(p)]
        left = low > since + 1
        if left:
            log.info("discourse catch-up: posts %d to %d are still to read", since + 1, low - 1)
        return mentions, self._cursor(window, mentions, now, since if left else newest, newest, low if left else None)

    def _shown(self, post: Any) -> bool:
        return usable(post) and not is_ours(post, self.username) and not whisper(post)

    def _cursor(self, window: PostWindow, mentions: list[NormalizedMention], now: float, after: int | None,
                newest: int, before: int | None) -> str | None:
        """The cursor after a round: ``after``, the window with the round's posts, and the backlog
        still to read (``before`` not None: ``after`` stays, ``newest`` is where it will move)."""
        window.add(mentions, now)
        window.trim(now, self.recheck_hours, self.recheck_size)
        return dump_cursor(window, after, newest, before)

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        while True:
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
            await asyncio.sleep(self.poll_seconds)

    def listens_to(self) -> str:
        return (f"latest posts (/posts.json poll every {self.poll_seconds:.0f} s; edits and deletions of the last "
                f"{self.recheck_hours:g} h re-checked every {self.recheck_seconds:.0f} s)"
                + ("; webhook /webhooks/discourse" if self.webhook else "; no webhook secret: no real-time webhook"))

    async def check(self) -> dict[str, Any]:
        started = time.monotonic()
        ok, error, who = True, None, None
        try:
            user = (await self._call("GET", f"/u/{self.username}.json")).get("user") or {}
            who = user.get("username")
            await self._call("GET", "/posts.json")
        except ConnectorError as exc:
            ok, error = False, str(exc)
        return {"name": self.name, "ok": ok, "error": error, "account": who, "base_url": self.base,
                "listens_to": self.listens_to(), "seconds": round(time.monotonic() - started, 2)}

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
