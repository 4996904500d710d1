"""Keyword and brand listening on X: the filtered stream, with recent search as catch-up and fallback.

Rules come from ``SOCIALCARE_X_STREAM_RULES`` and are synced on start (ours carry the tag
``socialcare``; rules of other tools are left alone). The stream runs on tweepy's
``AsyncStreamingClient`` inside the event loop; tweepy's own endless reconnect loop is cut short
(``max_retries=0`` and errors handed back) so the runner applies the project's rules: wait for a
429's reset, back off with jitter on 5xx and dropped connections, stop on 401.

A stream has no resume point, so the cursor holds the newest tweet id seen, and every (re)connect
starts with a recent-search catch-up from it: a restart or a dropped connection loses nothing, and
ids already yielded are skipped, so nothing repeats. When the account's tier has no filtered
stream (403 ``client-forbidden``), the connector polls recent search instead.

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
from tweepy.asynchronous import AsyncClient, AsyncStreamingClient
from tweepy.streaming import StreamRule

from listener.errors import AuthError, RateLimited, StreamUnavailable, TransientError
from listener.hosts import X_HOST, redirected_client_session
from listener.protocol import NormalizedMention
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
        self.seen: deque[str] = deque(maxlen=20_000)
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
        """Recent search for the rules since the cursor's ``since_id`` (the catch-up, and the fallback's
        poll), then the re-check of the window's tweets (those of earlier rounds) when due. A search
        error leaves the caller's cursor as it was; the re-check raises nothing
        (:meth:`Rechecks._recheck`), so the search's tweets, already marked as yielded, are never dropped."""
        window = TweetWindow.from_cursor(cursor)
        mentions, since = await self._search(since_id(cursor))
        changed = await self._recheck(window)
        self._remember(window, mentions)
        return changed + mentions, dump_cursor(since, window)

    async def _search(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        self._session(self.search)
        out: list[NormalizedMention] = []
        newest, token = None, None
        try:
            for _ in range(self.max_pages):
                page = await self.search.search_recent_tweets(
                    rules_query(self.rules), since_id=cursor, next_token=token, max_results=100,
                    expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS)
                meta = (page.get("meta") or {}) if isinstance(page, dict) else {}
                newest = newest or meta.get("newest_id")
                out = page_to_mentions(page, CHANNEL, self.withheld_in) + out
                token = meta.get("next_token")
                if not token or cursor is None:  # first run: the latest page is the baseline
                    break
        except Exception as exc:
            raise translate(exc) from exc
        return self._fresh(out), newest_id(newest, out, cursor)

    def _fresh(self, mentions: list[NormalizedMention]) -> list[NormalizedMention]:
        """Versions not yielded yet (an edit is a new version of an id already seen)."""
        out = [m for m in mentions if version_id(m) not in self.seen]
        self.seen.extend(version_id(m) for m in out)
        return self._theirs(out)

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        if self.streaming is not False:
            try:
                await self.sync_rules()
                self.streaming = True
            except StreamUnavailable as exc:
                self._fall_back(exc)
        if cursor is not None or not self.streaming:
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
        while not self.streaming:
            await asyncio.sleep(self.poll_seconds)
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
        since, window = since_id(cursor), TweetWindow.from_cursor(cursor)
        try:
            async with aclosing(self._live()) as live:
                async for batch in live:
                    since = newest_id(None, batch, since)
                    self._remember(window, batch)
                    yield batch, dump_cursor(since, window)
                    if changed := await self._recheck(window):
                        yield changed, dump_cursor(since, window)
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
