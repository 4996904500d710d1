"""The Reddit connector (asyncpraw 8): subreddit submissions and comments, brand keyword search,
replies, private messages and the moderator actions of the moderation queue (remove, approve,
lock, distinguish, ban the author from the post's subreddit), and taking back our own reply.

Streams use ``pause_after=-1``: asyncpraw's ``stream_generator`` then pauses (yields None) after
every listing request, so each listing (at most 100 things) per stream is published, its cursor
saved, however busy the subreddits (``pause_after=0`` pauses only after a request that found
nothing new: while every request finds something, a round never ended). A listing that came back
full has more waiting behind it: the streams behind read on at once, listing by listing, at most
``catchup_listings`` (10: the ~1000 things Reddit lists) a round before the ``poll_seconds`` pause,
so a backlog or a subreddit busier than 100 things a pause is caught up, not left growing until
its place drops out of the listing. They resume from the saved fullnames with
``continue_after_id`` (Reddit's ``before``). Where asyncpraw loses its place (a ``before`` answered
empty: that thing deleted, or no longer listed; it then reads the newest page), the gap between
the cursor and that page is read back with ``after`` as far as Reddit lists, and what could not be
read is logged, both ends named (:meth:`RedditConnector._read_back`). The cursor is a small JSON
object: the newest submission (``t3``) and comment (``t1``) seen in the subreddits, and the newest keyword hit
(``search``), plus the window of recent posts re-read for edits, removals and approvals (``recheck``, see
:mod:`listener.reddit.recheck`), which a post already removed when first listed (the spam filter's,
AutoModerator's) joins too, as a spare entry (at most a quarter of the window, evicted first: a spam
wave must not push out the posts we show), so that a moderator approving it is seen. ``oauth_url``, ``reddit_url``
and ``short_url`` come from the settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpraw
import asyncprawcore
from asyncpraw.models.util import stream_generator

from listener.errors import AuthError, RateLimited, TransientError
from listener.protocol import Action, ActionResult, NormalizedMention
from listener.recheck import KEY, Window
from listener.reddit.normalize import id_number, newer, thing_to_mention
from listener.reddit.recheck import join, recheck

MOD_ACTIONS = ("remove", "hide", "approve", "lock", "distinguish")
LISTED = 1000  # how far back Reddit lists a subreddit's new things
KINDS = {"t3": "submissions", "t1": "comments"}
log = logging.getLogger("socialcare.listener.reddit")


def translate(exc: BaseException) -> BaseException:
    if isinstance(exc, asyncprawcore.TooManyRequests):
        headers = exc.response.headers
        retry = headers.get("retry-after") or headers.get("x-ratelimit-reset")
        return RateLimited("Reddit rate limit (429)", retry_after=float(retry) if retry else None)
    if isinstance(exc, asyncprawcore.Forbidden):  # the credentials worked (a token was issued): access did not
        path = getattr(getattr(exc.response, "url", None), "path", None) or "a listing"
        return AuthError(f"Reddit refused access (403 Forbidden) to {path}: a private, quarantined or banned "
                         "subreddit, or an account without that moderator permission")
    if isinstance(exc, (asyncprawcore.OAuthException, asyncprawcore.InvalidToken,
                        asyncprawcore.InsufficientScope)) or (
            isinstance(exc, asyncprawcore.ResponseException) and exc.response.status == 401):
        return AuthError(f"Reddit refused the credentials: {type(exc).__name__}: {str(exc)[:200]}")
    if isinstance(exc, (asyncprawcore.ServerError, asyncprawcore.RequestException, asyncprawcore.ResponseException,
                        ValueError)):
        return TransientError(f"Reddit unavailable: {type(exc).__name__}: {str(exc)[:200]}")
    return exc


def parse_cursor(cursor: str | None) -> dict[str, str]:
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


class RedditConnector:
    name = "reddit"
    platform = "reddit"
    listed = LISTED

    def __init__(self, settings: Any, *, poll_seconds: float = 15.0, search_seconds: float = 300.0,
                 recheck_seconds: float = 300.0, recheck_hours: float = 24.0, recheck_size: int = 300,
                 catchup_listings: int = 10) -> None:
        self.settings = settings
        self.catchup_listings = max(1, catchup_listings)
        self.subreddits = [s.removeprefix("r/") for s in settings.reddit_subreddits]
        self.keywords = list(settings.reddit_keywords)
        self.poll_seconds, self.search_seconds = poll_seconds, search_seconds
        self.recheck_seconds, self.recheck_hours, self.recheck_size = recheck_seconds, recheck_hours, recheck_size
        self.reddit_url = settings.reddit_url
        self._reddit: asyncpraw.Reddit | None = None
        self.status: Any = None

    @property
    def reddit(self) -> asyncpraw.Reddit:
        """Created lazily: asyncpraw opens an HTTP session."""
        if self._reddit is None:
            s = self.settings
            self._reddit = asyncpraw.Reddit(
                client_id=s.reddit_client_id, client_secret=s.secret("reddit_client_secret"),
                user_agent=s.reddit_user_agent, username=s.reddit_username, password=s.secret("reddit_password"),
                oauth_url=s.reddit_oauth_url, reddit_url=s.reddit_url, short_url=s.reddit_short_url,
                check_for_updates=False, check_for_async=False)
        return self._reddit

    async def _listing(self, kind: str, after: str | None) -> list[Any]:
        sub = await self.reddit.subreddit("+".join(self.subreddits))
        fn = sub.new if kind == "t3" else sub.comments
        params = {"before": after} if after else {}
        return [t async for t in fn(limit=100, params=params)]

    async def _search(self, after: str | None) -> list[Any]:
        query = " OR ".join(f'"{k}"' for k in self.keywords)
        everywhere = await self.reddit.subreddit("all")
        hits = [t async for t in everywhere.search(query, sort="new", time_filter="week", limit=100)]
        return [t for t in hits if newer(t.name, after)]

    def _batch(self, things: list[Any], state: dict[str, str], key: str,
               listed: list[Any] | None = None) -> list[NormalizedMention]:
        """The things newer than the cursor, but not our own: a reply we post in a subreddit comes back
        in its comment stream, and stored as a customer's post it would be triaged and answered.
        Those things are added to ``listed`` (for :func:`~listener.reddit.recheck.join`)."""
        fresh = sorted((t for t in things if newer(t.name, state.get(key))), key=lambda t: id_number(t.name))
        if fresh:
            state[key] = fresh[-1].name
        ours = self.ours
        kept = [t for t in fresh
                if not ours or str(getattr(getattr(t, "author", None), "name", "") or "").lower() != ours]
        if listed is not None:
            listed += kept
        return [thing_to_mention(t, self.reddit_url, ours) for t in kept]

    @property
    def ours(self) -> str:
        """Our account's name, lower case ("" without one)."""
        return (self.settings.reddit_username or "").removeprefix("u/").lower()

    async def _recheck(self, window: Window, fresh: list[NormalizedMention],
                       listed: Iterable[Any] = ()) -> list[NormalizedMention]:
        """Edits and removals of the recent posts when a re-read is due (at most
        ``ceil(recheck_size / 100)`` requests), then this round's new posts join the window: those
        shown (``fresh``'s upserts) and those ``listed`` already removed, marked so (:func:`join`)."""
        now = time.time()
        window.trim(now, self.recheck_hours, self.recheck_size)
        changed = []
        if window.seen and now - window.checked_at >= self.recheck_seconds:
            changed = await recheck(self.reddit, window, self.reddit_url, now, self.ours)
        window.add(fresh, now)
        join(window, listed, now, self.ours)
        window.trim(now, self.recheck_hours, self.recheck_size)
        return changed

    @staticmethod
    def _cursor(state: dict[str, str], window: Window, cursor: str | None) -> str | None:
        data: dict[str, Any] = {**state, KEY: window.dump()} if window.seen or window.checked_at else dict(state)
        return json.dumps(data, sort_keys=True) if data else cursor

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        """One round: new submissions and comments of the subreddits, the keyword search, then the
        re-read of recent posts when due. Any error leaves the caller's cursor (and window) as it was."""
        state, window = parse_cursor(cursor), Window.from_cursor(cursor)
        out: list[NormalizedMention] = []
        listed: list[Any] = []
        try:
            if self.subreddits:
                for kind in ("t3", "t1"):
                    out += self._batch(await self._listing(kind, state.get(kind)), state, kind, listed)
            if self.keywords:
                out += self._batch(await self._search(state.get("search")), state, "search", listed)
            out += await self._recheck(window, out, listed)
        except Exception as exc:
            raise translate(exc) from exc
        return out, self._cursor(state, window, cursor)

    def _reader(self, sub: Any, kind: str, state: dict[str, str], full: dict[str, bool]) -> Any:
        """The listing function of a stream (``stream_generator`` calls it once a listing, with
        ``before``): the subreddits' new submissions (``t3``) or comments (``t1``). It notes in
        ``full`` whether a listing read from the stream's place came back full (more are waiting),
        and when asyncpraw has lost its place (below) reads back to the cursor."""
        fn = sub.new if kind == "t3" else sub.comments

        async def listing(limit: int = 100, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
            before = (params or {}).get("before")
            things = [t async for t in fn(limit=limit, params=params)]  # newest first
            full[kind] = before is not None and len(things) >= limit
            after = state.get(kind)
            if before is None and after and len(things) >= limit and newer(things[-1].name, after):
                things += await self._read_back(fn, kind, things[-1].name, after, len(things))
            for thing in things:
                yield thing

        return listing

    async def _read_back(self, fn: Any, kind: str, oldest: str, after: str, read: int) -> list[Any]:
        """asyncpraw's stream lost its place: a listing ``before`` the newest thing it had read came
        back empty (that thing was deleted, or more than Reddit's ~1000 listed things came since, so
        it is no longer listed; also, simply, nothing new: asyncpraw cannot tell), and it then reads
        the newest page with no ``before``. That page (``read`` things), full and all newer than our
        cursor, leaves a gap: read it back (``after``, 100 a request) to the cursor, as far as
        Reddit lists, and say what could not be read rather than moving the cursor past it
        silently. A listing that ends well short of Reddit's depth lists all there is: the
        cursor's thing was deleted, and nothing is missing."""
        older: list[Any] = []
        async for thing in fn(limit=max(self.listed - read, 0), params={"after": oldest}):
            if not newer(thing.name, after):
                return older
            older.append(thing)
        if read + len(older) < self.listed * 9 // 10:
            return older
        last = older[-1].name if older else oldest
        log.warning("Reddit %s of %s: lost the place after %s (deleted, or more new since than Reddit lists); "
                    "read back to %s: anything posted between them was not read", KINDS[kind],
                    "+".join(f"r/{s}" for s in self.subreddits), after, last)
        return older

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        state, window = parse_cursor(cursor), Window.from_cursor(cursor)
        streams: dict[str, Any] = {}
        full: dict[str, bool] = {}
        last_search = 0.0
        try:
            if self.subreddits:
                sub = await self.reddit.subreddit("+".join(self.subreddits))
                streams = {kind: stream_generator(self._reader(sub, kind, state, full), pause_after=-1,
                                                  continue_after_id=state.get(kind)) for kind in ("t3", "t1")}
            kinds, listings = list(streams), 0
            while True:
                batch: list[NormalizedMention] = []
                listed: list[Any] = []
                for kind in kinds:
                    things = []
                    async for thing in streams[kind]:  # one listing request: None follows its new things
                        if thing is None:
                            break
                        things.append(thing)
                    batch += self._batch(things, state, kind, listed)
                if self.keywords and time.monotonic() - last_search >= self.search_seconds:
                    batch += self._batch(await self._search(state.get("search")), state, "search", listed)
                    last_search = time.monotonic()
                batch += await self._recheck(window, batch, listed)
                yield batch, self._cursor(state, window, cursor)
                listings += 1
                behind = [kind for kind in kinds if full.get(kind)]
                if behind and listings < self.catchup_listings:
                    kinds = behind  # a full listing: more are waiting, read on (published listing by listing)
                    continue
                kinds, listings = list(streams), 0
                await asyncio.sleep(self.poll_seconds)
        except (asyncprawcore.AsyncPrawcoreException, ValueError) as exc:
            raise translate(exc) from exc
        finally:
            for gen in streams.values():
                await gen.aclose()

    async def _thing(self, fullname: str) -> Any:
        kind, _, rid = fullname.partition("_")
        if kind == "t3":
            return await self.reddit.submission(id=rid, fetch=False)
        if kind == "t1":
            return await self.reddit.comment(id=rid, fetch=False)
        raise ValueError(f"not a Reddit post or comment: {fullname!r}")

    async def perform(self, action: Action) -> ActionResult:
        try:
            return await self._perform(action)
        except Exception as exc:  # noqa: BLE001 - reported to the act stage
            return ActionResult(False, error=str(translate(exc)) or type(exc).__name__)

    async def _perform(self, action: Action) -> ActionResult:
        target = action.target_external_id
        if action.kind == "public_reply" and target:
            reply = await (await self._thing(target)).reply(action.text)
            return ActionResult(True, [reply.name] if reply is not None else [])
        if action.kind == "private_message":
            if not action.recipient_handle:
                return ActionResult(False, error="a Reddit private message needs the recipient's username")
            redditor = await self.reddit.redditor(action.recipient_handle.removeprefix("u/"), fetch=False)
            await redditor.message(subject=(action.reason or "A private follow-up from our support team")[:100],
                                   message=action.text or "")
            return ActionResult(True, [])
        if action.kind == "delete_reply" and target:  # our own comment: POST /api/del
            await (await self._thing(target)).delete()
            return ActionResult(True, [target])
        if action.kind == "ban" and target:
            return await self._ban(target, action)
        if action.kind in MOD_ACTIONS and target:
            mod = (await self._thing(target)).mod
            if action.kind in ("remove", "hide"):  # Reddit's own "hide" only hides for our account
                await mod.remove(spam=False, mod_note=(action.reason or "")[:100])  # a note costs a second call
            elif action.kind == "approve":
                await mod.approve()
            elif action.kind == "lock":
                await mod.lock()
            else:
                await mod.distinguish(how="yes")
            return ActionResult(True, [target])
        return ActionResult(False, error=f"Reddit does not support {action.kind} (or no target)")

    def listens_to(self) -> str:
        search = " OR ".join(json.dumps(k, ensure_ascii=False) for k in self.keywords)
        listens = [f"r/{s}" for s in self.subreddits] + ([f"search {search}"] if self.keywords else [])
        return ", ".join(listens) or "nothing"

    async def _ban(self, target: str, action: Action) -> ActionResult:
        """Ban the post's author from the post's subreddit (permanent; ``POST /r/{sub}/api/friend``,
        type ``banned``). The subreddit comes from the post itself (``/api/info``)."""
        self._thing_kind(target)
        things = [t async for t in self.reddit.info(fullnames=[target])]
        if not things:
            return ActionResult(False, error=f"Reddit does not know {target} (deleted?)")
        thing = things[0]
        author = getattr(thing, "author", None)
        name = (action.recipient_handle or "").removeprefix("u/") or getattr(author, "name", None)
        if not name:
            return ActionResult(False, error="the author's account is deleted: nobody to ban")
        reason = (action.reason or "Breaking the community rules").strip()
        await thing.subreddit.banned.add(name, ban_reason=reason[:100], ban_message=reason[:1000],
                                         note=f"socialcare: {target}"[:300])
        return ActionResult(True, [f"u/{name}"])

    @staticmethod
    def _thing_kind(fullname: str) -> str:
        kind = fullname.partition("_")[0]
        if kind not in ("t1", "t3"):
            raise ValueError(f"not a Reddit post or comment: {fullname!r}")
        return kind

    async def check(self) -> dict[str, Any]:
        started = time.monotonic()
        ok, error, who = True, None, None
        try:
            if self.settings.reddit_username:
                me = await self.reddit.user.me()
                who = getattr(me, "name", None)
            await self.poll_once(None)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok, error = False, str(translate(exc))
        return {"name": self.name, "ok": ok, "error": error, "account": who, "listens_to": self.listens_to(),
                "base_url": self.settings.reddit_oauth_url, "seconds": round(time.monotonic() - started, 2)}

    async def close(self) -> None:
        if self._reddit is not None:
            await self._reddit.close()
