"""Keyword and brand listening on X: the filtered stream, with recent search as catch-up and fallback.

Rules come from ``SOCIALCARE_X_STREAM_RULES`` and are synced on start (ours carry the tag
``socialcare``; rules of other tools are left alone). The stream runs on tweepy's
``AsyncStreamingClient`` inside the event loop, its failures handed back to the runner
(:mod:`listener.x.stream_client`).

A stream has no resume point, so the cursor holds the newest tweet id seen
(:mod:`listener.x.stream_cursor`), and every (re)connect starts with a recent-search catch-up from
it (:mod:`listener.x.stream_catchup`, gaps a round did not reach filled first, the 7 days search
reaches followed). The stream delivers only what is posted once it is connected, so what was posted
between the catch-up's search and then is a gap too, kept in the cursor from the stream's opening
and searched for while the stream runs, once search has indexed it (``bridge_seconds``, as are gaps
a catch-up left): a restart or a dropped connection loses nothing, and
versions already published are skipped, so nothing repeats. "Published" is what the runner took:
a batch counts as such only when the runner asks for the next one (it publishes, saves the
cursor, then asks), so a batch whose publishing failed is found again by the catch-up of the
runner's next attempt instead of being skipped. When the account's tier has no filtered stream
(403 ``client-forbidden``), the connector polls recent search instead.

Neither the stream nor search says when a tweet is deleted, so the cursor also holds the window of
recent tweets looked up again for deletions (:mod:`listener.x.recheck`): after each catch-up or
poll's search, and between stream batches when due. That lookup never raises: a failure there (a 429
on the lookup's own limit, a 403, a 5xx, a malformed page) is logged and the re-check waits for its
next round, or the reset a 429 announced, so it never tears a healthy stream down nor holds a
catch-up back. A live batch is yielded before the lookup all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient
from tweepy.streaming import StreamRule

from listener.errors import RateLimited, StreamUnavailable, TransientError
from listener.hosts import X_HOST, redirected_client_session
from listener.protocol import NormalizedMention
from listener.x.actions import XActions, make_client
from listener.x.errors import translate
from listener.x.normalize import (
    EXPANSIONS,
    TWEET_FIELDS,
    USER_FIELDS,
    newest_id,
    to_mention,
    users_of,
    version_id,
)
from listener.x.recheck import (
    RECHECK_HOURS,
    RECHECK_SECONDS,
    RECHECK_SIZE,
    TweetWindow,
    dump_cursor,
    since_id,
)
from listener.x.stream_catchup import CatchUp
from listener.x.stream_client import _END, _get_rules, _Stream, stream_error
from listener.x.stream_cursor import _now_ms, dump, id_at, joined, load_gaps, moved_on

log = logging.getLogger("socialcare.listener.x")
TAG = "socialcare"
CHANNEL = "x:stream"


class XStreamConnector(CatchUp, XActions):
    name = "x-stream"
    platform = "x"
    channel = CHANNEL
    user_auth = False  # the stream and search need the bearer token: lookups see what the public sees

    def __init__(self, settings: Any, *, poll_seconds: float = 30.0, stall_seconds: float = 30.0,
                 idle_seconds: float = 5.0, max_pages: int = 10, recheck_seconds: float = RECHECK_SECONDS,
                 recheck_hours: float = RECHECK_HOURS, recheck_size: int = RECHECK_SIZE,
                 bridge_seconds: float = 60.0) -> None:
        self.settings = settings
        self.rules = list(settings.x_stream_rules)
        self.bearer = settings.secret("x_bearer_token")
        self.base = settings.x_api_base
        self.poll_seconds, self.stall_seconds, self.idle_seconds = poll_seconds, stall_seconds, idle_seconds
        self.max_pages = max_pages
        self.bridge_ms = int(bridge_seconds * 1000)  # how long a stream may take to connect (see stream())
        self.recheck_seconds, self.recheck_hours, self.recheck_size = recheck_seconds, recheck_hours, recheck_size
        self.client = make_client(settings)  # sync, for actions and the re-check's lookups
        self.search = AsyncClient(self.bearer, return_type=dict)
        self.streaming: bool | None = None  # None: not tried yet; False: polling recent search
        self.seen: deque[str] = deque(maxlen=20_000)  # versions published (see _published)
        self.unpublished: list[NormalizedMention] = []  # the last batch yielded, until the runner asks for more
        self.status: Any = None

    def _session(self, owner: Any, extra: tuple[Any, ...] = ()) -> None:
        if owner.session is None or owner.session.closed:
            owner.session = redirected_client_session(
                X_HOST, self.base, middlewares=extra,
                timeout=aiohttp.ClientTimeout(total=None, connect=15, sock_read=self.stall_seconds))

    async def _rules_call(self, call: Any) -> Any:
        """Run ``call(streamer)`` on a short-lived rules client; 403 means no filtered stream on this tier."""
        streamer = _Stream(self.bearer, asyncio.Queue())
        self._session(streamer, (streamer.probe,))
        try:
            return await call(streamer)
        except tweepy.Forbidden as exc:
            raise StreamUnavailable(f"filtered stream not available on this account: {translate(exc)}") from exc
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            await streamer.session.close()

    async def sync_rules(self) -> list[dict[str, Any]]:
        """Make the stream's ``socialcare`` rules equal the settings; returns the active rules."""

        async def sync(streamer: _Stream) -> list[dict[str, Any]]:
            current = (await streamer.get_rules()).get("data") or []
            stale = [r["id"] for r in current if r.get("tag") == TAG and r.get("value") not in self.rules]
            missing = [v for v in self.rules if v not in {r.get("value") for r in current}]
            if stale:
                await streamer.delete_rules(stale)
            added: dict[str, Any] = {}
            if missing:
                added = await streamer.add_rules([StreamRule(value=v, tag=TAG) for v in missing])
                if (added.get("meta") or {}).get("summary", {}).get("invalid"):
                    log.error("X rejected stream rules: %s", json.dumps(added.get("errors"))[:500])
            return [r for r in current if r.get("id") not in stale] + list(added.get("data") or [])

        return await self._rules_call(sync)

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        """One round (:meth:`_poll`): the re-check's events, then the tweets found, and the cursor after them."""
        changed, mentions, cursor = await self._poll(cursor)
        return changed + mentions, cursor

    def _fresh(self, mentions: list[NormalizedMention]) -> list[NormalizedMention]:
        """Versions not published yet, each once, without the brand account's own tweets (an edit is
        a new version of an id already seen)."""
        out, ids = [], set()
        for m in mentions:
            if (v := version_id(m)) not in ids and v not in self.seen:
                ids.add(v)
                out.append(m)
        return self._theirs(out)

    def _published(self, mentions: list[NormalizedMention]) -> None:
        """The runner asked for the next batch, so it published these (and saved the cursor after
        them): from now on they are skipped. Marked no sooner: a batch whose publishing failed is
        yielded again by the runner's next attempt (:attr:`unpublished`, and its catch-up finds them
        again), and must not be skipped then."""
        self.seen.extend(version_id(m) for m in mentions)
        self.unpublished = []

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        if self.streaming is not False:
            try:
                await self.sync_rules()
                self.streaming = True
            except StreamUnavailable as exc:
                self._fall_back(exc)
        carried = self.unpublished  # its publishing failed: yielded again, first (kept until then)
        if cursor is not None or not self.streaming:
            before = None
            while True:  # caught up, gaps and all, before the stream is opened
                changed, mentions, cursor = await self._poll(cursor, carried)
                self.unpublished, carried = mentions, []
                yield changed + self.unpublished, cursor
                self._published(self.unpublished)
                gaps = load_gaps(cursor)
                if not self.streaming or not gaps or gaps == before:  # polling, caught up, or no headway
                    break
                before = gaps
        since, window = since_id(cursor), TweetWindow.from_cursor(cursor)
        if carried:  # the first live batch of a first run (no cursor yet, so no catch-up)
            self.unpublished = self._fresh(carried)
            since = newest_id(None, self.unpublished, since)
            self._remember(window, self.unpublished)
            yield self.unpublished, dump_cursor(since, window)
            self._published(self.unpublished)
        while not self.streaming:
            await asyncio.sleep(self.poll_seconds)
            changed, mentions, cursor = await self._poll(cursor)
            self.unpublished = mentions
            yield changed + self.unpublished, cursor
            self._published(self.unpublished)
        gaps = load_gaps(cursor)  # left when a catch-up round made no headway: filled while streaming
        opened, bridging = _now_ms(), since is not None
        if bridging:  # posted after the catch-up's search, before the stream connected: up to its first tweet
            gaps = joined([*gaps, [since, id_at(opened + self.bridge_ms)]])
        fill_due = opened + 2 * self.bridge_ms  # the gap's end, then as long again for search to index it
        try:
            async with aclosing(self._live()) as live:
                async for batch in live:
                    if bridging and batch:  # the stream's first tweet: what came after, it delivered
                        gaps, bridging = self._bridged(gaps, min((version_id(m) for m in batch), key=int)), False
                    since = moved_on(newest_id(None, batch, since), _now_ms())
                    self._remember(window, batch)
                    self.unpublished = batch
                    yield batch, dump(since, window, gaps)
                    self._published(batch)
                    if gaps and _now_ms() >= fill_due:
                        bridging = False
                        older, gaps, fill_due = await self._fill_live(gaps)
                        if older:
                            self._remember(window, older)
                            self.unpublished = older
                            yield older, dump(since, window, gaps)
                            self._published(older)
                    if changed := await self._recheck(window):
                        yield changed, dump(since, window, gaps)
        except StreamUnavailable as exc:
            self._fall_back(exc)
            raise TransientError("switching to recent search polling") from exc

    @staticmethod
    def _bridged(gaps: list[list[str]], first: str) -> list[list[str]]:
        """The gaps with the last (the one opened with the stream) ending at the stream's first tweet."""
        *rest, (since, until) = gaps
        until = min(until, first, key=int)
        return [*rest, [since, until]] if int(since) < int(until) else rest

    async def _fill_live(self, gaps: list[list[str]]) -> tuple[list[NormalizedMention], list[list[str]], int]:
        """The oldest gap's tweets not published yet, fetched while the stream runs, the gaps left and
        when to fill the next. A failure (a 429, a 5xx) never tears a healthy stream down: logged, the
        gap kept (in the cursor too), tried again a poll's interval later, or when a 429's reset says."""
        now = _now_ms()
        try:
            older, rest = await self._fill(gaps, now)
        except Exception as exc:  # noqa: BLE001 - the stream goes on; the gap stays owed
            wait = self.poll_seconds
            if isinstance(exc, RateLimited):
                wait = max(wait, exc.retry_after or 0, (exc.reset_at or 0) - time.time())
            log.warning("connector %s: could not fetch the tweets a gap owes while streaming (%s); trying again in "
                        "%.0f s", self.name, exc, wait)
            return [], gaps, now + int(wait * 1000)
        return self._fresh(older), rest, now + int(self.idle_seconds * 1000)

    def _fall_back(self, exc: BaseException) -> None:
        self.streaming = False
        log.warning("connector %s: %s; polling recent search every %.0f s instead", self.name, exc, self.poll_seconds)

    async def _live(self) -> AsyncIterator[list[NormalizedMention]]:
        queue: asyncio.Queue = asyncio.Queue()
        streamer = _Stream(self.bearer, queue)
        self._session(streamer, (streamer.probe,))
        task = streamer.filter(expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS)
        try:
            while True:
                try:
                    lines = [await asyncio.wait_for(queue.get(), self.idle_seconds)]
                except TimeoutError:
                    yield []  # lets the runner notice a stop and record liveness
                    continue
                while not queue.empty():
                    lines.append(queue.get_nowait())
                ended = _END in lines
                batch = self._fresh([m for line in lines if line is not _END for m in self._parse(line)])
                if batch:
                    yield batch
                if ended:
                    raise stream_error(streamer.error or TransientError("the filtered stream ended"))
        finally:
            streamer.disconnect()
            await asyncio.gather(task, return_exceptions=True)

    def _parse(self, line: bytes) -> list[NormalizedMention]:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("connector %s: skipped a malformed stream line (%d bytes)", self.name, len(line))
            return []
        if not isinstance(message, dict):
            return []
        if message.get("errors") and not message.get("data"):
            log.warning("connector %s: stream error message: %s", self.name,
                        [e.get("title") for e in message["errors"] if isinstance(e, dict)])
        tweet = message.get("data")
        if not isinstance(tweet, dict) or not tweet.get("id"):
            return []
        return [to_mention(tweet, users_of(message.get("includes")), CHANNEL, self.withheld_in)]

    def listens_to(self) -> str:
        mode = "recent search polling (no filtered stream on this tier)" if self.streaming is False else "filtered stream"
        return f"{mode}: rules {self._rules_text()}"

    def _rules_text(self) -> str:
        return ", ".join(json.dumps(r, ensure_ascii=False) for r in self.rules)

    async def check(self) -> dict[str, Any]:
        started = time.monotonic()
        ok, error, mode, active = True, None, "filtered stream", []
        try:
            try:
                active = [r.get("value") for r in await self._rules_call(_get_rules)]
            except StreamUnavailable:
                mode = "recent search polling (no filtered stream on this tier)"
                await self.poll_once(None)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok, error = False, str(exc)
        self.seen.clear()
        return {"name": self.name, "ok": ok, "error": error, "listens_to": f"{mode}: rules {self._rules_text()}",
                "active_rules": active, "base_url": self.base, "seconds": round(time.monotonic() - started, 2)}

    async def close(self) -> None:
        self.client.session.close()
        if self.search.session is not None:
            await self.search.session.close()
