"""Live event fan-out from the pipeline (and the console itself) to the browsers' live queues.

The pipeline's stages call ``ctx.events(kind, mention_ids)`` synchronously after they commit. In
the embedded mode the hub hands each event straight to the server-sent-event subscribers of this
process. In the Redis mode the stages run in other processes, so every event goes through one
capped Redis stream that each web process tails (from "now": the live queue needs only what
happens while it is open; the page itself is rendered from the database). Events carry ids and
kinds only — never text — so nothing personal travels through Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from service.outages import log_failure

log = logging.getLogger("socialcare.events")
STREAM_MAXLEN = 10_000
QUEUE_SIZE = 1_000
READ_RETRY_S = 1.0  # between two reads of the stream while Redis is away


def stream_name(settings: Any) -> str:
    return f"{settings.bus_prefix}:console-events"


def _event(kind: str, ids: Any, **extra: Any) -> dict[str, Any]:
    ids = [int(i) for i in (ids or [])][:1000]
    return {"kind": str(kind), "ids": ids, "at": time.time(), **extra}


class EventHub:
    """Subscribers (one bounded queue per open live page) and the sink the stages call."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    # --- the sink -------------------------------------------------------------------------
    def __call__(self, kind: str, ids: Any = None, **extra: Any) -> None:
        """Publish an event; never raises and never blocks the caller (a stage mid-batch)."""
        try:
            self._publish(_event(kind, ids, **extra))
        except Exception:
            log.warning("console event %s dropped", kind, exc_info=True)

    def _publish(self, event: dict[str, Any]) -> None:
        self.deliver(event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- local delivery -------------------------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a stalled browser loses old events, then reloads (see queue.js)
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    pass
                event = {**event, "overflow": True}
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue]:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Begin receiving events from elsewhere (the Redis hub tails its stream)."""

    async def close(self) -> None:
        """Wake every subscriber so open streams end, and stop background work."""
        self.closed = True
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RedisEventHub(EventHub):
    """Events through a capped Redis stream, shared by workers and every web process."""

    def __init__(self, url: str, stream: str, *, tail: bool = True) -> None:
        super().__init__()
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5)
        self.stream = stream
        self.tail = tail
        self._reader: asyncio.Task | None = None

    def _publish(self, event: dict[str, Any]) -> None:
        self._spawn(self._xadd(event))

    async def _xadd(self, event: dict[str, Any]) -> None:
        try:
            await self.client.xadd(self.stream, {"e": json.dumps(event)}, maxlen=STREAM_MAXLEN, approximate=True)
        except Exception as exc:  # noqa: BLE001 - Redis away: the live view misses it, the database has it
            log_failure(log, exc, "console event %s not published to Redis", event.get("kind"), traceback=False)

    async def start(self) -> None:
        if self.tail and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._tail(), name="console-events")

    async def _tail(self) -> None:
        last = "$"
        while not self.closed:
            try:
                replies = await self.client.xread({self.stream: last}, count=500, block=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect after a pause; subscribers reload on resume
                log_failure(log, exc, "console events: Redis read failed; retrying", traceback=False)
                await asyncio.sleep(READ_RETRY_S)
                continue
            for _stream, entries in replies or []:
                for entry_id, fields in entries:
                    last = entry_id
                    raw = fields.get(b"e") or fields.get("e")
                    try:
                        self.deliver(json.loads(raw))
                    except (TypeError, ValueError):
                        log.warning("console events: malformed entry %s skipped", entry_id)

    async def close(self) -> None:
        await super().close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.client.aclose()


def make_hub(settings: Any, *, tail: bool = True) -> EventHub:
    """The hub for this process: Redis when the stages may run elsewhere, else in-process."""
    if settings.bus == "redis":
        return RedisEventHub(settings.redis_url, stream_name(settings), tail=tail)
    return EventHub()


def attach(runtime: Any, hub: EventHub) -> None:
    """Point this process's pipeline stages at the hub (they share one StageContext)."""
    if runtime.pipeline is not None:
        runtime.pipeline.ctx.events = hub


EVENTS = web.AppKey("events", EventHub)


def install(app: web.Application) -> None:
    """Create the hub with the app, wire it to the in-process stages, close it on shutdown."""
    from console.keys import RUNTIME

    async def start(app: web.Application) -> None:
        runtime = app[RUNTIME]
        existing = getattr(runtime.pipeline, "ctx", None)
        hub = existing.events if isinstance(getattr(existing, "events", None), EventHub) else make_hub(runtime.settings)
        app[EVENTS] = hub
        attach(runtime, hub)
        await hub.start()

    async def stop(app: web.Application) -> None:
        if EVENTS in app:
            await app[EVENTS].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def hub_of(request: web.Request) -> EventHub | None:
    return request.app.get(EVENTS)


def emit(request: web.Request, kind: str, ids: Any = None, **extra: Any) -> None:
    """Tell every live page (in every web process) that something changed."""
    hub = hub_of(request)
    if hub is not None:
        hub(kind, ids, **extra)


async def stream(request: web.Request, *, heartbeat_s: float = 15.0) -> web.StreamResponse:
    """A server-sent-event stream of the hub's events, with heartbeats so proxies keep it open. A
    browser leaving (a page closed or reloaded, at any point, even before the headers went out) is
    the normal end of a stream, not an error: a DEBUG line, no traceback."""
    hub = hub_of(request)
    if hub is None:
        raise web.HTTPServiceUnavailable(reason="live events are not available")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected\n\n")
    except (ConnectionResetError, RuntimeError):  # aiohttp's ClientConnectionResetError is one
        log.debug("live events: %s left before the stream opened", request.remote)
        return response
    async with hub.subscribe() as queue:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                event = ...
            try:
                if event is None:
                    break
                if event is ...:
                    await response.write(b": ping\n\n")
                    continue
                await response.write(f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n".encode())
            except (ConnectionResetError, RuntimeError):
                log.debug("live events: %s left", request.remote)
                break
    return response
