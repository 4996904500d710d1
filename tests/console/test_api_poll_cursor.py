"""The polling cursor of ``GET /api/v1/mentions?since_id=`` never passes over a mention that may
still show: one routed late (a triage backlog, a message retried) or, on PostgreSQL, one whose
ingest transaction commits after a higher id was routed and polled. What it does pass (a mention
deleted, or still not routed ``ROUTING_HOLD`` after ingest) it names in ``passed_unrouted``."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console import poll_cursor
from console.id_gaps import GAP_TTL
from console.poll_cursor import ROUTING_HOLD
from models import Mention, RouteDecision, TriageResult
from models.mentions import ERASED_TEXT
from tests.console.conftest import bot_token

_n = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_mention(s, *, ingested_ago: timedelta = timedelta(0), platform: str = "x", is_public: bool = True,
                deleted: bool = False, text: str | None = None) -> Mention:
    """A mention added to session ``s``, not flushed."""
    n = next(_n)
    now = datetime.now(UTC)
    m = Mention(platform=platform, external_id=f"poll{n}", text=text or f"post {n}",
                created_at=now - ingested_ago, ingested_at=now - ingested_ago, content_hash=f"poll{n}",
                is_public=is_public, deleted=deleted)
    s.add(m)
    return m


def decision(mention_id: int) -> list:
    return [TriageResult(mention_id=mention_id, model_version="t", sentiment="negative", sensitivity="none",
                         escalate=False, issue_type="billing", toxicity="not_offensive", spam="ham",
                         pii_exposed=False, priority=50, scores={}),
            RouteDecision(mention_id=mention_id, outcome="agent_queue", reason="r", router_version="t")]


async def ingest(db, *, routed: bool = True, **kw) -> int:
    """Ingest one mention (its own transaction), and route it (another, as the pipeline does)."""
    async with db.session() as s:
        m = new_mention(s, **kw)
        await s.flush()
        mention_id = m.id
        await s.commit()
    if routed:
        await route(db, mention_id)
    return mention_id


async def route(db, mention_id: int) -> None:
    async with db.session() as s:
        s.add_all(decision(mention_id))
        await s.commit()


async def triaged(db, sensitivity: str, **kw) -> int:
    """A mention ingested and triaged (``sensitivity``), not routed."""
    mention_id = await ingest(db, routed=False, **kw)
    async with db.session() as s:
        tri = decision(mention_id)[0]
        tri.sensitivity = sensitivity
        s.add(tri)
        await s.commit()
    return mention_id


async def poll(client, token: str, since_id: int, query: str = "") -> tuple[list[int], int, list[int]]:
    r = await client.get(f"/api/v1/mentions?since_id={since_id}{query}", headers=bearer(token))
    assert r.status == 200, await r.text()
    body = await r.json()
    return [m["id"] for m in body["mentions"]], body["next_since_id"], body.get("passed_unrouted", [])


# --- SQLite (the console's test runtime) -------------------------------------------------------
async def test_a_mention_routed_after_sixteen_minutes_is_still_delivered(app_client, runtime):
    """The review's case: a triage backlog of 16 minutes let the cursor pass a mention for good."""
    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    slow = await ingest(runtime.db, routed=False, ingested_ago=timedelta(minutes=16))
    fast = await ingest(runtime.db)
    assert first < slow < fast
    assert await poll(app_client, token, first) == ([], first, [])  # held below the slow one
    await route(runtime.db, slow)  # the backlog clears
    assert await poll(app_client, token, first) == ([slow, fast], fast, [])
    assert await poll(app_client, token, fast) == ([], fast, [])


async def test_a_mention_still_unrouted_after_the_hold_is_passed_and_named_once(app_client, runtime):
    """A mention not routed ``ROUTING_HOLD`` after ingest (dead-lettered, its message lost) stops
    holding every bot back; the page that passes it says so, and no later page repeats it."""
    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    stuck = await ingest(runtime.db, routed=False, ingested_ago=ROUTING_HOLD + timedelta(minutes=1))
    fast = await ingest(runtime.db)
    assert await poll(app_client, token, first) == ([fast], fast, [stuck])
    await route(runtime.db, stuck)  # an operator retries the dead letter: routed after it was passed
    assert await poll(app_client, token, fast) == ([], fast, [])
    r = await app_client.get(f"/api/v1/mentions/{stuck}", headers=bearer(token))  # read by id, as named
    assert (await r.json())["route"]["outcome"] == "agent_queue"


class Routing:
    """A route stage that fails (its message dead-lettered) until it is told to route."""

    name = "route"

    def __init__(self, db) -> None:
        from service.stages.base import StageContext

        self.ctx, self.works = StageContext(settings=None, db=db), False

    async def handle(self, batch):
        if not self.works:
            raise RuntimeError("router down")
        for env in batch:
            await route(self.ctx.db, env.payload["mention_id"])
        return []


async def test_a_dead_lettered_mention_is_passed_at_once_and_read_by_id_once_retried(app_client, runtime, make_bus):
    """A mention whose routing message sits in the dead letters (either bus) is routed only if someone
    retries it: it no longer holds the feed back for the hour, and the page that passes it names it.
    Retried and routed later, it is in no later page and reads by id, as ``passed_unrouted`` promises."""
    from service import deadletters
    from service.workers import StageWorker

    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    dead = await ingest(runtime.db, routed=False)
    slow = await ingest(runtime.db, routed=False, ingested_ago=timedelta(minutes=5))  # still on its way
    bus, stage = await make_bus(1), Routing(runtime.db)
    worker = StageWorker(bus, stage, batch_size=1, block_ms=50)
    await bus.ensure_group("route", "route")
    await bus.publish("route", {"mention_id": dead}, key=f"m:{dead}")
    while await worker.run_once():
        pass
    [letter] = await bus.dead_letters()
    await route(runtime.db, slow)
    fast = await ingest(runtime.db)
    assert await poll(app_client, token, first) == ([slow, fast], fast, [dead])
    stage.works = True  # an operator retries the dead letter: routed after it was passed
    assert (await deadletters.retry(bus, [letter.id])).done == [letter.id]
    while await worker.run_once():
        pass
    assert await poll(app_client, token, fast) == ([], fast, [])
    r = await app_client.get(f"/api/v1/mentions/{dead}", headers=bearer(token))
    assert (await r.json())["route"]["outcome"] == "agent_queue"


async def test_only_a_dead_lettered_mention_is_passed_early_on_both_databases(any_db):
    """The dead-letter record read by the cursor's own statements (SQLite, PostgreSQL); a mention of
    another id, or a letter of ingest (no mention yet), changes nothing."""
    from console.queries import routed_mentions
    from service.dead_mentions import note_dead_letter

    first = await ingest(any_db)
    dead = await ingest(any_db, routed=False)
    held = await ingest(any_db, routed=False)
    await ingest(any_db)
    await note_dead_letter(any_db, "triage", {"mention_id": dead})
    await note_dead_letter(any_db, "ingest", {"mention": {"platform": "x", "external_id": "1"}})
    async with any_db.session() as s:
        page = await routed_mentions(s, since_id=first, private=True)
    assert ([m["id"] for m in page], page.next_since_id, page.passed_unrouted) == ([], held - 1, [dead])


async def test_a_deleted_mention_does_not_hold_the_cursor_and_an_erased_one_is_not_named(app_client, runtime):
    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    gone = await ingest(runtime.db, routed=False, deleted=True)  # deleted before triage: never routed
    erased = await ingest(runtime.db, routed=False, deleted=True, text=ERASED_TEXT)
    fast = await ingest(runtime.db)
    assert gone < erased < fast
    assert await poll(app_client, token, first) == ([fast], fast, [gone])


async def test_what_a_reader_never_sees_neither_holds_its_cursor_nor_is_named_to_it(app_client, runtime):
    """A private message is the care team's: it does not hold a marketing token's cursor back; a
    mention of another platform does not hold a poll of one platform."""
    marketing = await bot_token(runtime, "mia", ["mentions:read"])
    agent = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    dm = await ingest(runtime.db, routed=False, is_public=False)
    old_dm = await ingest(runtime.db, routed=False, is_public=False, ingested_ago=ROUTING_HOLD * 2)
    fast = await ingest(runtime.db)
    assert await poll(app_client, marketing, first) == ([fast], fast, [])
    assert await poll(app_client, agent, first) == ([], dm - 1, [])  # the care team waits for the DM
    reddit = await ingest(runtime.db, routed=False, platform="reddit")
    later = await ingest(runtime.db)
    assert await poll(app_client, agent, fast, "&platform=x") == ([later], later, [])
    assert await poll(app_client, agent, fast) == ([], reddit - 1, [])
    assert old_dm not in (await poll(app_client, marketing, first))[2]


async def test_a_public_post_scored_security_or_fraud_is_named_only_to_the_care_team(app_client, runtime):
    """A public post triage scored security or fraud is the care team's even before it is routed (the
    listing leaves it out for everyone else, and so does a read by id): passed unrouted, it is named
    to an agent only; it holds no other reader's cursor back either."""
    marketing = await bot_token(runtime, "mia", ["mentions:read"])
    moderator = await bot_token(runtime, "mod", ["mentions:read"])
    agent = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    scored = {}
    for sensitivity in ("security", "fraud", "none"):  # triaged, never routed (its routing message lost)
        scored[sensitivity] = await triaged(runtime.db, sensitivity, ingested_ago=ROUTING_HOLD * 2)
    held = await triaged(runtime.db, "fraud")  # being routed: holds the care team's cursor only
    fast = await ingest(runtime.db)
    for outsider in (marketing, moderator):
        assert await poll(app_client, outsider, first) == ([fast], fast, [scored["none"]])
        r = await app_client.get(f"/api/v1/mentions/{scored['fraud']}", headers=bearer(outsider))
        assert r.status == 404  # what the id would lead to: nothing, for them
    assert await poll(app_client, agent, first) == ([], held - 1, sorted(scored.values()))


async def test_the_care_team_rule_for_passed_ids_holds_on_both_databases(any_db):
    """The same, through the read model, on SQLite and PostgreSQL."""
    from console.queries import routed_mentions

    first = await ingest(any_db)
    security = await triaged(any_db, "security", ingested_ago=ROUTING_HOLD * 2)
    dm = await ingest(any_db, routed=False, is_public=False, ingested_ago=ROUTING_HOLD * 2)
    plain = await triaged(any_db, "none", ingested_ago=ROUTING_HOLD * 2)
    fast = await ingest(any_db)
    async with any_db.session() as s:
        outside = await routed_mentions(s, since_id=first, private=False)
        team = await routed_mentions(s, since_id=first, private=True)
    assert ([m["id"] for m in outside], outside.next_since_id, outside.passed_unrouted) == ([fast], fast, [plain])
    assert ([m["id"] for m in team], team.next_since_id, team.passed_unrouted) == ([fast], fast, [security, dm, plain])


async def test_many_passed_mentions_are_named_a_page_at_a_time_and_the_cursor_moves_on(
        app_client, runtime, monkeypatch):
    monkeypatch.setattr(poll_cursor, "MAX_PASSED", 2)
    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    gone = [await ingest(runtime.db, routed=False, deleted=True) for _ in range(5)]
    last = await ingest(runtime.db)
    named, delivered, since = [], [], first
    for _ in range(5):
        ids, since, passed = await poll(app_client, token, since)
        delivered += ids
        named += passed
    assert named == gone and delivered == [last] and since == last


async def test_a_full_page_moves_the_cursor_to_its_last_mention_only(app_client, runtime):
    token = await bot_token(runtime, "alice", ["mentions:read"])
    first = await ingest(runtime.db)
    a = await ingest(runtime.db)
    gone = await ingest(runtime.db, routed=False, deleted=True)
    b = await ingest(runtime.db)
    assert await poll(app_client, token, first, "&limit=1") == ([a], a, [])
    assert await poll(app_client, token, a, "&limit=1") == ([b], b, [gone])


# --- PostgreSQL: ids given at insert, seen at commit ----------------------------------------------
@pytest.fixture
async def pg_client(tmp_path, postgres_url):
    from console.app import create_app
    from console.auth import create_api_token, create_user
    from console.webhooks_out import SENDER
    from service.runtime import Runtime
    from service.settings import load_settings
    from tests.console.conftest import NoTriage

    settings = load_settings(database_url=postgres_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        user = await create_user(s, "alice", "alice password 1", "agent")
        token = await create_api_token(s, user, "bot", ["mentions:read"])
        await s.commit()
    async with TestClient(TestServer(create_app(rt))) as c:
        await c.server.app[SENDER].stop()
        yield rt, c, token
    await rt.close()


async def test_on_postgresql_a_mention_committed_after_a_higher_routed_id_is_not_skipped(pg_client):
    """The review's second case: an ingest batch takes an id and works on; another worker commits
    (and the route stage routes) a higher id; a poll then must not move past the lower one."""
    rt, client, token = pg_client
    base = await ingest(rt.db)
    async with rt.db.session() as slow:
        late = new_mention(slow)
        await slow.flush()  # id given, transaction open
        fast = await ingest(rt.db)
        assert late.id < fast
        assert await poll(client, token, base) == ([], base, [])
        await slow.commit()
    await route(rt.db, late.id)
    assert await poll(client, token, base) == ([late.id, fast], fast, [])


async def _until_delivered(client, token, since: int, seconds: float = 20.0):
    """Poll until a mention comes (another database of the cluster may have a write open a moment:
    the snapshot's xmin is cluster-wide)."""
    for _ in range(int(seconds * 10)):
        got = await poll(client, token, since)
        if got[0]:
            return got
        await asyncio.sleep(0.1)
    return got


async def test_on_postgresql_a_rolled_back_id_does_not_hold_the_cursor(pg_client):
    """An id whose transaction rolled back never appears: once no transaction older than the
    higher mention's routing runs, the cursor moves past it (no wait for GAP_TTL)."""
    rt, client, token = pg_client
    base = await ingest(rt.db)
    async with rt.db.session() as s:
        lost = new_mention(s)
        await s.flush()
        await s.rollback()
    after = await ingest(rt.db)
    assert base < lost.id < after
    assert await _until_delivered(client, token, base) == ([after], after, [])


@pytest.mark.parametrize("written_ago", [timedelta(0), GAP_TTL + timedelta(minutes=1)], ids=["recent", "old"])
async def test_on_postgresql_a_gap_nothing_proves_over_holds_the_cursor_for_gap_ttl(pg_client, written_ago):
    """When the higher mention was routed in its own ingest transaction, nothing proves the missing
    id's transaction over: the id holds the cursor until GAP_TTL after the higher mention was
    written (the bound the outgoing webhooks' scanner uses too), then it counts as rolled back."""
    rt, client, token = pg_client
    base = await ingest(rt.db)
    async with rt.db.session() as s:
        lost = new_mention(s)
        await s.flush()
        await s.rollback()
    async with rt.db.session() as s:  # mention and routing in one transaction
        m = new_mention(s, ingested_ago=written_ago)
        await s.flush()
        s.add_all(decision(m.id))
        await s.commit()
    assert base < lost.id < m.id
    held = written_ago < GAP_TTL
    assert await poll(client, token, base) == (([], lost.id - 1, []) if held else ([m.id], m.id, []))
