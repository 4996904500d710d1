"""Live events reach the console's subscribers in-process and, in the Redis mode, across processes."""

from __future__ import annotations

import asyncio

from console.events import EventHub, RedisEventHub, stream_name
from service.settings import load_settings


async def test_the_in_process_hub_fans_out_to_every_subscriber_and_wakes_them_on_close():
    hub = EventHub()
    async with hub.subscribe() as a, hub.subscribe() as b:
        hub("routed", [3, 4])
        assert (await a.get())["ids"] == [3, 4] and (await b.get())["kind"] == "routed"
        hub("bad", ["not a number"])  # a malformed call is dropped, never raised into a stage
        assert a.empty()
        await hub.close()
        assert await a.get() is None


async def test_a_stalled_subscriber_loses_old_events_not_the_newest():
    from console import events

    hub = EventHub()
    async with hub.subscribe() as q:
        for i in range(events.QUEUE_SIZE + 5):
            hub("routed", [i])
        items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[-1]["ids"] == [events.QUEUE_SIZE + 4] and items[-1]["overflow"] is True


async def test_events_from_a_worker_process_reach_a_web_process_through_redis(redis_url, bus_prefix):
    settings = load_settings(bus="redis", redis_url=redis_url, bus_prefix=bus_prefix)
    worker = RedisEventHub(redis_url, stream_name(settings), tail=False)  # publishes only
    web = RedisEventHub(redis_url, stream_name(settings))
    await web.start()
    try:
        async with web.subscribe() as q:
            await asyncio.sleep(0.2)  # the web side tails from "now"
            worker("routed", [41, 42])
            event = await asyncio.wait_for(q.get(), 5)
        assert event["kind"] == "routed" and event["ids"] == [41, 42]
    finally:
        await worker.close()
        await web.close()
        import redis.asyncio as redis

        client = redis.Redis.from_url(redis_url)
        await client.delete(stream_name(settings))
        await client.aclose()


async def test_a_browser_leaving_the_live_stream_before_it_opens_logs_no_error(app_client, monkeypatch, caplog):
    """A page closed or reloaded while its event stream starts is the normal life of a browser: at
    most a DEBUG line, never an ERROR with a traceback."""
    import logging

    import aiohttp
    from aiohttp import web
    from aiohttp.client_exceptions import ClientConnectionResetError

    from tests.console.conftest import login

    prepare = web.StreamResponse.prepare

    async def gone(self, request):  # what aiohttp raises when the browser closed the connection first
        if self.content_type == "text/event-stream":
            raise ClientConnectionResetError("Cannot write to closing transport")
        return await prepare(self, request)

    await login(app_client, "alice")
    monkeypatch.setattr(web.StreamResponse, "prepare", gone)
    with caplog.at_level(logging.DEBUG):
        try:
            await (await app_client.get("/queue/events")).read()
        except aiohttp.ClientError:
            pass  # the server just lets the connection go
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text and "unhandled error" not in caplog.text
