"""/admin/deadletters: the dead letters of the web process's own bus (in-process or Redis), listed
without payloads, a payload shown redacted and audited, retry and discard confirmed and audited,
admins only, and a bus that is away shown as a message."""

from __future__ import annotations

import html as html_lib
import re
import socket

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from console.app import create_app
from console.auth import create_user
from models import AuditEvent
from service.bus import Envelope
from service.runtime import Runtime
from service.settings import load_settings
from service.stages.base import Outgoing
from service.workers import StageWorker
from tests.console.conftest import PASSWORDS, NoTriage, login
from tests.service.privacy_support import delete_redis_keys

SECRET = "call me on +44 7700 900123 or at jo.doe@example.com"
HTML = {"Accept": "text/html"}


class Flaky:
    """A stage that fails on poison messages until it is fixed, and notes what it handled."""

    name = "act"

    def __init__(self) -> None:
        self.fixed, self.handled = False, []

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        if not self.fixed and any(env.payload.get("poison") for env in batch):
            raise RuntimeError("poison message")
        self.handled += [env.key for env in batch]
        return []


async def poison(runtime) -> tuple[Flaky, StageWorker]:
    """One real poison message failed through a StageWorker until the bus dead-lettered it."""
    stage = Flaky()
    worker = StageWorker(runtime.bus, stage, batch_size=10, block_ms=20)
    await runtime.bus.ensure_group("act", "act")
    await runtime.bus.publish("act", {"poison": True, "text": SECRET, "mention_id": 7}, "m:7")
    for _ in range(runtime.bus.max_deliveries + 2):
        await worker.run_once()
        if await runtime.bus.dead_letters():
            break
    return stage, worker


async def bury(bus, topic: str, key: str, payload: dict) -> None:
    """Dead-letter one message the way a stage that keeps failing does, whatever ``max_deliveries``."""
    await bus.ensure_group(topic, topic)
    await bus.publish(topic, payload, key)
    while not await bus.fail(topic, topic, (await bus.read(topic, topic, "worker", 1, 0))[0], "RuntimeError: broke"):
        pass


def rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-deadletter="([^"]+)">(.*?)</tr>', html, re.DOTALL))


async def audit(runtime, action: str) -> list[AuditEvent]:
    async with runtime.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


async def test_the_page_lists_what_a_failing_stage_dead_lettered_without_its_payload(app_client, runtime):
    await poison(runtime)
    [dead] = await runtime.bus.dead_letters()
    await login(app_client, "root")
    r = await app_client.get("/admin/deadletters")
    html = await r.text()
    assert r.status == 200
    row = rows(html)[dead.id]
    cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
    assert cells[:6] == [dead.id, "act", dead.extra["entry_id"], "<bdi>m:7</bdi>", "5", dead.failed_at]
    assert "RuntimeError: poison message" in row
    assert "7700 900123" not in html and "jo.doe" not in html  # payloads are hidden
    assert "in-process bus" in html and 'href="/admin/deadletters"' in html  # and the nav links here
    assert 'href="/admin/deadletters"' in await (await app_client.get("/connectors")).text()


async def test_a_payload_is_shown_redacted_and_the_view_is_audited(app_client, runtime):
    await poison(runtime)
    [dead] = await runtime.bus.dead_letters()
    csrf = await login(app_client, "root")
    r = await app_client.post(f"/admin/deadletters/{dead.id}/payload", data={"csrf_token": csrf})
    html = await r.text()
    assert r.status == 200
    payload = html_lib.unescape(re.search(r"<pre [^>]*data-payload>(.*?)</pre>", html, re.DOTALL).group(1))
    assert "call me on [phone] or at [email]" in payload and '"mention_id": 7' in payload
    assert "7700 900123" not in html and "jo.doe" not in html
    [event] = await audit(runtime, "deadletter.payload_viewed")
    assert (event.actor, event.object_type, event.object_id) == ("session:root", "deadletter", dead.id)
    assert (await app_client.post("/admin/deadletters/dl-999999/payload", data={"csrf_token": csrf})).status == 404


async def test_retry_asks_first_then_puts_the_message_back_and_the_stage_handles_it(app_client, runtime):
    stage, worker = await poison(runtime)
    [dead] = await runtime.bus.dead_letters()
    csrf = await login(app_client, "root")
    r = await app_client.post("/admin/deadletters/retry", data={"csrf_token": csrf, "id": dead.id})
    confirm = await r.text()
    assert r.status == 200 and "Retry 1 dead letter(s)?" in confirm and dead.id in rows(confirm)
    assert await runtime.bus.dead_letters() == [dead]  # nothing happened yet
    stage.fixed = True
    r = await app_client.post("/admin/deadletters/retry", allow_redirects=False,
                              data={"csrf_token": csrf, "id": dead.id, "confirmed": "1"})
    assert r.status == 303 and r.headers["Location"].startswith("/admin/deadletters?")
    assert "retried 1 dead letter(s)" in await (await app_client.get(r.headers["Location"])).text()
    assert await runtime.bus.dead_letters() == []
    await worker.run_once()
    assert stage.handled == ["m:7"]
    [event] = await audit(runtime, "deadletter.retried")
    assert event.details == {"ids": [dead.id], "missing": [], "refused": [], "count": 1, "topic": None}
    assert event.object_id == dead.id and "7700" not in str(event.details)  # ids only


async def test_retry_all_of_a_stage_leaves_the_other_stages_alone(app_client, runtime):
    for n in range(3):
        await bury(runtime.bus, "act", f"a{n}", {"n": n})
    await bury(runtime.bus, "triage", "t0", {"n": 9})
    csrf = await login(app_client, "root")
    page = await (await app_client.get("/admin/deadletters?topic=act")).text()
    assert len(rows(page)) == 3 and "Retry all 3 of act" in page and "triage (1)" in page
    confirm = await (await app_client.post("/admin/deadletters/retry",
                                           data={"csrf_token": csrf, "all": "1", "topic": "act"})).text()
    pinned = re.findall(r'name="id" value="([^"]+)"', confirm)
    assert len(pinned) == 3
    await bury(runtime.bus, "act", "a-late", {"n": 4})  # failed after the admin confirmed what they saw
    r = await app_client.post("/admin/deadletters/retry", allow_redirects=False,
                              data=[("csrf_token", csrf), ("confirmed", "1"), ("topic", "act")]
                              + [("id", i) for i in pinned])
    assert r.status == 303
    assert sorted(d.key for d in await runtime.bus.dead_letters()) == ["a-late", "t0"]
    assert sorted(e.key for e in await runtime.bus.read("act", "act", "c", 10, 0)) == ["a0", "a1", "a2"]


async def test_discard_asks_first_then_removes_it_for_good(app_client, runtime):
    await bury(runtime.bus, "act", "keep", {"n": 1})
    await bury(runtime.bus, "act", "drop", {"text": SECRET})
    keep, drop = await runtime.bus.dead_letters()
    csrf = await login(app_client, "root")
    r = await app_client.post("/admin/deadletters/discard", data={"csrf_token": csrf, "id": drop.id})
    assert "Discard 1 dead letter(s)?" in await r.text() and len(await runtime.bus.dead_letters()) == 2
    r = await app_client.post("/admin/deadletters/discard", allow_redirects=False,
                              data={"csrf_token": csrf, "id": drop.id, "confirmed": "1"})
    assert r.status == 303 and "discarded+1" in r.headers["Location"]
    assert await runtime.bus.dead_letters() == [keep]
    [event] = await audit(runtime, "deadletter.discarded")
    assert event.details["ids"] == [drop.id] and event.details["count"] == 1
    assert (await runtime.bus.read("act", "act", "c", 10, 0)) == []  # not put back


async def test_only_admins_get_in(app_client, runtime):
    await bury(runtime.bus, "act", "k", {"n": 1})
    [dead] = await runtime.bus.dead_letters()
    csrf = await login(app_client, "alice")
    r = await app_client.get("/admin/deadletters", headers=HTML)
    assert r.status == 403 and "role agent may not do this" in await r.text()
    for path in ("/admin/deadletters/retry", "/admin/deadletters/discard", f"/admin/deadletters/{dead.id}/payload"):
        r = await app_client.post(path, data={"csrf_token": csrf, "id": dead.id, "confirmed": "1"})
        assert r.status == 403, path
    assert "/admin/deadletters" not in await (await app_client.get("/connectors")).text()
    assert await runtime.bus.dead_letters() == [dead]
    assert await audit(runtime, "deadletter.payload_viewed") == []


async def test_forms_without_the_csrf_token_are_refused(app_client, runtime):
    await bury(runtime.bus, "act", "k", {"n": 1})
    [dead] = await runtime.bus.dead_letters()
    await login(app_client, "root")
    for path in ("/admin/deadletters/retry", "/admin/deadletters/discard", f"/admin/deadletters/{dead.id}/payload"):
        r = await app_client.post(path, data={"id": dead.id, "confirmed": "1"})
        assert r.status == 403 and "CSRF" in await r.text(), path
    assert await runtime.bus.dead_letters() == [dead]


async def test_a_long_list_stops_at_the_limit_and_says_how_many_more(app_client, runtime):
    for n in range(103):
        await bury(runtime.bus, "triage", f"t{n}", {"n": n})
    await login(app_client, "root")
    html = await (await app_client.get("/admin/deadletters")).text()
    assert len(rows(html)) == 100 and "… and 3 more (of 103)" in html and "limit=200" in html
    html = await (await app_client.get("/admin/deadletters?limit=200")).text()
    assert len(rows(html)) == 103 and "more (of" not in html
    assert (await app_client.get("/admin/deadletters?limit=0")).status == 400


async def test_a_bus_that_is_away_is_a_message_not_a_500(app_client, runtime):
    from service.bus.redis_streams import RedisStreamsBus

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    own, runtime.bus = runtime.bus, RedisStreamsBus(f"redis://127.0.0.1:{port}/0", retry_seconds=0.2)
    try:
        csrf = await login(app_client, "root")
        r = await app_client.get("/admin/deadletters", headers=HTML)
        assert r.status == 503 and "does not answer" in await r.text()
        for path in ("/admin/deadletters/retry", "/admin/deadletters/dl-1/payload"):
            r = await app_client.post(path, data={"csrf_token": csrf, "id": "1-0", "confirmed": "1"}, headers=HTML)
            assert r.status == 503 and "does not answer" in await r.text(), path
    finally:
        await runtime.bus.close()
        runtime.bus = own


@pytest.fixture
async def redis_client(tmp_path, sqlite_url, redis_url, bus_prefix):
    """The console on a Redis bus of its own (unique prefix), as the web process of the services mode."""
    from console.webhooks_out import SENDER

    settings = load_settings(database_url=sqlite_url, bus="redis", redis_url=redis_url, bus_prefix=bus_prefix,
                             var_dir=tmp_path / "var", demo=False, dry_run=True, bus_block_ms=50,
                             cookie_secure=False)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        await create_user(s, "root", PASSWORDS["root"], "admin")
        await s.commit()
    try:
        async with TestClient(TestServer(create_app(rt))) as client:
            await client.server.app[SENDER].stop()
            yield client, rt
    finally:
        await rt.close()
        delete_redis_keys(redis_url, bus_prefix)


async def test_on_the_redis_bus_the_page_lists_retries_and_discards_the_same(redis_client):
    client, rt = redis_client
    stage, worker = await poison(rt)
    await bury(rt.bus, "triage", "t:1", {"text": SECRET})
    poisoned, other = await rt.bus.dead_letters()
    csrf = await login(client, "root")
    html = await (await client.get("/admin/deadletters")).text()
    assert list(rows(html)) == [poisoned.id, other.id] and "m:7" in rows(html)[poisoned.id]
    assert "Redis bus" in html and "7700 900123" not in html
    shown = await (await client.post(f"/admin/deadletters/{other.id}/payload", data={"csrf_token": csrf})).text()
    assert "[phone]" in shown and "7700 900123" not in shown
    stage.fixed = True
    await client.post("/admin/deadletters/retry", data={"csrf_token": csrf, "id": poisoned.id, "confirmed": "1"})
    await client.post("/admin/deadletters/discard", data={"csrf_token": csrf, "id": other.id, "confirmed": "1"})
    assert await rt.bus.dead_letters() == []
    await worker.run_once()
    assert stage.handled == ["m:7"]
