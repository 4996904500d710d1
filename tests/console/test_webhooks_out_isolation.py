"""One unresponsive webhook receiver delays no other subscription (console.webhooks_delivery): the
subscriptions are posted to side by side, each one's events in order; one whose post timed out is
paused on its own, its other events waiting with it and tried again after its back-off, while the
others' go out at once, from one web process or several."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from console.webhooks_out import backoff, deliver_due, scan
from models import Case, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from models.db import Database

TIMEOUT = 1.0  # the post timeout in these tests (10 s in service)
N = 6


class Endpoints:
    """Four receivers on one local server: ``/ok`` answers at once, ``/hang`` not before the
    test releases it (longer than the timeout), ``/fail`` with a 500, ``/flaky`` with a 502 the
    first time and then a 200; each keeps (arrival, event id)."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[float, str]]] = {"ok": [], "hang": [], "fail": [], "flaky": []}
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.path.strip("/")
        self.got[name].append((time.monotonic(), json.loads(await request.read())["id"]))
        if name == "hang" and not self.release.is_set():
            try:
                await asyncio.wait_for(self.release.wait(), 30)
            except TimeoutError:
                pass
        if name == "flaky" and len(self.got["flaky"]) == 1:
            return web.Response(status=502)
        return web.Response(status=500 if name == "fail" else 200)

    def events(self, name: str) -> list[str]:
        return [event for _, event in self.got[name]]


@pytest.fixture
async def endpoints():
    e = Endpoints()
    app = web.Application()
    app.router.add_post("/{name:ok|hang|fail|flaky}", e.handle)
    server = TestServer(app)
    await server.start_server()
    e.url = str(server.make_url("/"))
    yield e
    e.release.set()
    await server.close()


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch):
    """A short post timeout, in the module that posts."""
    monkeypatch.setattr(sys.modules[deliver_due.__module__], "TIMEOUT_S", TIMEOUT)


async def subscribe(db, url: str) -> int:
    async with db.session() as s:
        sub = WebhookSubscription(name="bot", url=url, secret="a secret of enough length", created_by="test",
                                  events=["case.opened"], created_at=utcnow() - timedelta(hours=1))
        s.add(sub)
        await s.commit()
    await scan(db, now=later())  # the watermark exists
    return sub.id


async def open_cases(db, n: int) -> list[str]:
    async with db.session() as s:
        cases = [Case(category="fraud", created_at=utcnow() - timedelta(minutes=1)) for _ in range(n)]
        s.add_all(cases)
        await s.commit()
    return [f"case.opened:{c.id}" for c in cases]


async def deliveries(db, sub_id: int) -> list[WebhookDelivery]:
    async with db.session() as s:
        return list(await s.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id)
                                    .order_by(WebhookDelivery.id)))


def later():
    return utcnow() + timedelta(seconds=5)  # past the scanner's settle delay


async def test_a_hanging_receiver_delays_no_other_and_its_events_wait_for_its_back_off(any_db, endpoints):
    hung = await subscribe(any_db, endpoints.url + "hang")  # first: its deliveries come first
    await subscribe(any_db, endpoints.url + "ok")
    events = await open_cases(any_db, N)
    assert await scan(any_db, now=later()) == 2 * N
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        assert await deliver_due(any_db, http, now=later()) == N
        took = time.monotonic() - start
    assert endpoints.events("ok") == events  # every one, in order
    assert max(t for t, _ in endpoints.got["ok"]) - start < N * TIMEOUT / 2  # not one timeout after another
    assert took < N * TIMEOUT / 2
    assert endpoints.events("hang") == events[:1]  # tried once; the others wait with it
    first, *rest = await deliveries(any_db, hung)
    assert (first.status, first.attempts) == ("pending", 1) and "Timeout" in first.last_error
    assert {(d.status, d.attempts) for d in rest} == {("pending", 0)}
    assert {d.next_attempt_at for d in rest} == {first.next_attempt_at} and first.next_attempt_at > utcnow()

    async with aiohttp.ClientSession() as http:  # before its back-off: nothing goes
        assert await deliver_due(any_db, http, now=later()) == 0
    endpoints.release.set()  # it answers again: after the back-off its events go, in order
    async with aiohttp.ClientSession() as http:
        assert await deliver_due(any_db, http, now=utcnow() + backoff(1) + timedelta(seconds=1)) == N
    assert endpoints.events("hang") == events[:1] + events
    assert endpoints.events("ok") == events  # each once
    assert {(d.status, d.attempts) for d in await deliveries(any_db, hung)} == {("delivered", 2), ("delivered", 1)}


async def test_two_web_processes_post_each_event_once_and_both_hold_off_the_hanging_receiver(any_db, endpoints):
    other = Database(any_db.url)  # a second web process: its own engine
    try:
        hung = await subscribe(any_db, endpoints.url + "hang")
        healthy = await subscribe(any_db, endpoints.url + "ok")
        events = await open_cases(any_db, N)
        assert await scan(any_db, now=later()) == 2 * N
        async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
            start = time.monotonic()
            delivered = await asyncio.gather(deliver_due(any_db, a, now=later()), deliver_due(other, b, now=later()))
            took = time.monotonic() - start
    finally:
        await other.close()
    assert sum(delivered) == N and sorted(endpoints.events("ok")) == sorted(events)  # leased: each posted once
    assert took < N * TIMEOUT / 2
    assert 1 <= len(endpoints.got["hang"]) <= 2  # at most one try each; the rest wait
    assert {d.status for d in await deliveries(any_db, healthy)} == {"delivered"}
    tried = [d for d in await deliveries(any_db, hung) if d.attempts]
    assert len(tried) == len(endpoints.got["hang"])
    assert {d.status for d in await deliveries(any_db, hung)} == {"pending"}


async def test_the_senders_next_passes_go_out_while_a_post_hangs(any_db, endpoints, monkeypatch):
    """The web process's loop does not wait for a hanging post: the healthy subscription's next event
    goes out while the hanging one's first is still under way (and that one is not posted twice)."""
    from console import webhooks_out

    monkeypatch.setattr(sys.modules[deliver_due.__module__], "TIMEOUT_S", 5.0)
    hung = await subscribe(any_db, endpoints.url + "hang")
    await subscribe(any_db, endpoints.url + "ok")
    sender = webhooks_out.WebhookSender(any_db, interval_s=0.05, settle=timedelta(0))
    sender.start()
    try:
        first = await open_cases(any_db, 1)
        await until(lambda: endpoints.got["hang"] and endpoints.got["ok"])
        hanging_since = endpoints.got["hang"][0][0]
        second = await open_cases(any_db, 1)
        await until(lambda: len(endpoints.got["ok"]) == 2)
        assert endpoints.got["ok"][1][0] - hanging_since < 5.0  # before the hanging post times out
        assert endpoints.events("ok") == first + second
        assert endpoints.events("hang") == first and hung in sender.deliverer.running
    finally:
        endpoints.release.set()
        await sender.stop()
    assert len(set(endpoints.events("hang"))) == len(endpoints.got["hang"])  # none posted twice


async def test_one_failure_gives_up_nothing_of_an_old_backlog_never_tried(any_db, endpoints):
    """A backlog can be older than a delivery's tries take without any failure (a burst, a restart):
    one failed post pauses it, and gives none of it up; after the pause all of it goes out."""
    from console.webhooks_delivery import give_up_after

    sub = await subscribe(any_db, endpoints.url + "flaky")
    events = await open_cases(any_db, 20)
    assert await scan(any_db, now=later()) == 20
    async with any_db.session() as s:  # written, and due, before the give-up time, never tried
        await s.execute(update(WebhookDelivery).where(WebhookDelivery.subscription_id == sub)
                        .values(created_at=utcnow() - give_up_after() - timedelta(minutes=4),
                                next_attempt_at=utcnow() - give_up_after() - timedelta(minutes=4)))
        await s.commit()
    async with aiohttp.ClientSession() as http:
        assert await deliver_due(any_db, http, now=later()) == 0
    assert endpoints.events("flaky") == events[:1]
    assert [(d.status, d.attempts) for d in await deliveries(any_db, sub)] == [("pending", 1)] + [("pending", 0)] * 19
    async with aiohttp.ClientSession() as http:  # after the pause: every one, in order
        assert await deliver_due(any_db, http, now=utcnow() + backoff(1) + timedelta(seconds=1)) == 20
    assert endpoints.events("flaky") == events[:1] + events
    assert {d.status for d in await deliveries(any_db, sub)} == {"delivered"}


async def test_a_dead_receivers_backlog_is_given_up_each_event_after_one_try_at_least(any_db, endpoints):
    """A subscription failing in a row as long as a delivery's tries take (here in about a second:
    short back-offs) is taken for dead: each of its deliveries is then tried once and given up, so
    its backlog does not grow for ever; none is ever given up without a try."""
    from console.webhooks_delivery import Deliverer, give_up_after

    base_s = 0.01
    sub = await subscribe(any_db, endpoints.url + "fail")
    events = await open_cases(any_db, 12)
    assert await scan(any_db, now=later()) == 12
    async with aiohttp.ClientSession() as http:
        deliverer = Deliverer(any_db, http, base_s=base_s, per_subscription=5)
        start, untried_given_up, pending = time.monotonic(), [], True
        while pending:
            assert time.monotonic() - start < 20, "the dead receiver's backlog was not given up"
            await asyncio.gather(*await deliverer.start(utcnow()))
            rows = await deliveries(any_db, sub)
            untried_given_up += [d.id for d in rows if d.status == "failed" and d.attempts == 0]
            if time.monotonic() - start < give_up_after(base_s).total_seconds() * 0.9:
                assert {d.status for d in rows} == {"pending"}, "given up before the endpoint was dead"
            pending = any(d.status == "pending" for d in rows)
            await asyncio.sleep(0.02)
    assert untried_given_up == []
    rows = await deliveries(any_db, sub)
    assert {d.status for d in rows} == {"failed"} and min(d.attempts for d in rows) >= 1
    assert set(endpoints.events("fail")) == set(events)  # each posted at least once
    assert endpoints.events("fail")[:1] == events[:1]


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
