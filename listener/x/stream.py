"""Keyword and brand listening on X: the filtered stream, with recent search as catch-up and fallback.

Rules come from ``SOCIALCARE_X_STREAM_RULES`` and are synced on start (ours carry the tag
``socialcare``; rules of other tools are left alone). The stream runs on tweepy's
``AsyncStreamingClient`` inside the event loop; tweepy's own endless reconnect loop is cut short
(``max_retries=0`` and errors handed back) so the runner applies the project's rules: wait for a
429's reset, back off with jitter on 5xx and dropped connections, stop on 401.

A stream has no resume point, so the cursor holds the newest tweet id seen, and every (re)connect
starts with a recent-search catch-up from it: a restart or a dropped connection loses nothing, and
versions already published are skipped, so nothing repeats. "Published" is what the runner took:
a batch counts as such only when the runner asks for the next one (it publishes, saves the
cursor, then asks), so a batch whose publishing failed is found again by the catch-up of the
runner's next attempt instead of being skipped. When the account's tier has no filtered stream
(403 ``client-forbidden``), the connector polls recent search instead.

Recent search pages newest first, ``max_pages`` a round. A round that stops before reaching the
cursor's ``since_id`` leaves a gap, kept in the cursor (``gaps``: ``[since_id, until_id]`` pairs,
both exclusive) and filled by the next rounds, oldest gap first (``until_id``), before the stream
is opened: nothing between is skipped for good, however long the outage.

Recent search reaches back 7 days, and answers a ``since_id`` posted earlier with HTTP 400
(``'since_id' must be a tweet id created after ...``). A tweet id tells when it was posted
(X's snowflake ids: ``(id >> 22) + 1288834974657`` is its epoch millisecond), so a ``since_id``
(or a gap) older than that is moved to the oldest id search still takes, with a warning naming
what could not be caught up; should X's clock be ahead of ours and answer that 400 all the same,
its answer names the edge, and the round is asked again from there. A quiet cursor is moved on
as the stream (or a poll) covers the time, so 7 quiet days stop nothing and warn of nothing.

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
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient, AsyncStreamingClient
from tweepy.streaming import StreamRule

from listener.errors import AuthError, RateLimited, StreamUnavailable, TransientError
from listener.hosts import X_HOST, redirected_client_session
from listener.protocol import NormalizedMention
from listener.recheck import KEY
from listener.x.actions import XActions, make_client
from listener.x.errors import translate
from listener.x.normalize import (
    EXPANSIONS,
    TWEET_FIELDS,
    USER_FIELDS,
    newest_id,
    page_to_mentions,
    to_mention,
    users_of,
    version_id,
)
from listener.x.recheck import (
    RECHECK_HOURS,
    RECHECK_SECONDS,
    RECHECK_SIZE,
    Rechecks,
    TweetWindow,
    dump_cursor,
    since_id,
)

log = logging.getLogger("socialcare.listener.x")
TAG = "socialcare"
CHANNEL = "x:stream"
_END = object()
EPOCH_MS = 1288834974657  # X's snowflake epoch: a tweet id is its millisecond since then << 22, plus worker and sequence
REACH_MS = 7 * 86_400_000  # how far back recent search reaches
MARGIN_MS = 120_000  # a since_id closer than this to the 7-day edge is moved inside it: the request takes time
QUIET_MS = 86_400_000  # a since_id older than this is moved on to what the stream or a poll has covered ...
SETTLE_MS = 3_600_000  # ... up to this long ago: more than a tweet takes to be streamed or indexed
MAX_GAPS = 20  # more gaps than this: the newest two are joined (what lies between is fetched again)
_EDGE = re.compile(r"larger than (\d+)")


def posted_ms(tweet_id: str) -> int:
    """When the tweet was posted (epoch milliseconds): a snowflake id says so."""
    return (int(tweet_id) >> 22) + EPOCH_MS


def id_at(ms: int) -> str:
    """A ``since_id`` that lets through every tweet posted from that epoch millisecond on."""
    return str(max(((ms - EPOCH_MS) << 22) - 1, 0))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


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


class StreamHTTPError(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"filtered stream answered {status}")
        self.status, self.headers, self.body = status, headers, body


class _Stream(AsyncStreamingClient):
    """Hands every line to a queue and every failure back to the connector (no silent retries)."""

    def __init__(self, bearer: str, queue: asyncio.Queue) -> None:
        super().__init__(bearer, return_type=dict, max_retries=0)
        self.queue = queue
        self.error: BaseException | None = None
        self.last_error_response: tuple[int, dict[str, str], bytes] | None = None

    async def on_data(self, raw_data: bytes) -> None:
        self.queue.put_nowait(raw_data)

    async def on_request_error(self, status_code: int) -> None:
        _, headers, body = self.last_error_response or (status_code, {}, b"")
        raise StreamHTTPError(status_code, headers, body)

    async def on_connection_error(self) -> None:
        raise TransientError("the filtered stream connection dropped or stalled")

    async def on_closed(self, resp: Any) -> None:
        raise TransientError("X closed the filtered stream")

    async def on_exception(self, exception: Exception) -> None:
        self.error = exception

    async def on_disconnect(self) -> None:
        self.queue.put_nowait(_END)

    async def probe(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        """Client middleware: keep an error response's headers and body (tweepy passes only the status)."""
        resp = await handler(request)
        if resp.status >= 400:
            self.last_error_response = (resp.status, dict(resp.headers), await resp.read())
        return resp


def stream_error(exc: BaseException) -> BaseException:
    if not isinstance(exc, StreamHTTPError):
        return translate(exc)
    if exc.status == 401:
        return AuthError("X refused the bearer token for the filtered stream (401)")
    if exc.status == 403:
        return StreamUnavailable(f"filtered stream not available on this account (403): {exc.body[:200]!r}")
    if exc.status == 429:
        reset = exc.headers.get("x-rate-limit-reset")
        return RateLimited("X filtered stream: too many connections (429)", reset_at=float(reset) if reset else None)
    return TransientError(f"filtered stream answered {exc.status}")


async def _get_rules(streamer: AsyncStreamingClient) -> list[dict[str, Any]]:
    return (await streamer.get_rules()).get("data") or []


def rules_query(rules: list[str]) -> str:
    """Recent search query equivalent to the stream rules."""
    return " OR ".join(f"({r})" for r in rules) if len(rules) > 1 else (rules[0] if rules else "")


class XStreamConnector(Rechecks, XActions):
    name = "x-stream"
    platform = "x"
    channel = CHANNEL
    user_auth = False  # the stream and search need the bearer token: lookups see what the public sees

    def __init__(self, settings: Any, *, poll_seconds: float = 30.0, stall_seconds: float = 30.0,
                 idle_seconds: float = 5.0, max_pages: int = 10, recheck_seconds: float = RECHECK_SECONDS,
                 recheck_hours: float = RECHECK_HOURS, recheck_size: int = RECHECK_SIZE) -> None:
        self.settings = settings
        self.rules = list(settings.x_stream_rules)
        self.bearer = settings.secret("x_bearer_token")
        self.base = settings.x_api_base
        self.poll_seconds, self.stall_seconds, self.idle_seconds = poll_seconds, stall_seconds, idle_seconds
        self.max_pages = max_pages
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
                mentions = page_to_mentions(page, CHANNEL, self.withheld_in)
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
        gaps = load_gaps(cursor)  # left when a catch-up round made no headway: the next catch-up goes on
        try:
            async with aclosing(self._live()) as live:
                async for batch in live:
                    since = moved_on(newest_id(None, batch, since), _now_ms())
                    self._remember(window, batch)
                    self.unpublished = batch
                    yield batch, dump(since, window, gaps)
                    self._published(batch)
                    if changed := await self._recheck(window):
                        yield changed, dump(since, window, gaps)
        except StreamUnavailable as exc:
            self._fall_back(exc)
            raise TransientError("switching to recent search polling") from exc

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
