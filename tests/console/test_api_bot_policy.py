"""Bots that reply and act through the API go through the same rules as people and the service's own
automatic answers: the operator's kill switch, per-channel dry run, the hourly bot rate and the
channel's pace (console.api.bot_limits); another agent's claim and the console's role rules on
actions; the service's reserved notices are not a bot's to post."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from community.replybot import Ledger
from listener.protocol import ActionResult
from models import AuditEvent, Case, Conversation, Mention, ModerationAction, Reply, User
from models.base import utcnow
from tests.console.conftest import add_mention, bot_token
from tests.console.test_api_spec import Described


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FakeX:
    """An X connector that records each call; ``fail`` makes the next calls fail (the platform refuses)."""

    platform = "x"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail = False

    async def perform(self, action):  # noqa: ANN001
        self.calls.append((action.kind, action.text))
        if self.fail:
            return ActionResult(False, error="403 duplicate content")
        return ActionResult(True, [str(len(self.calls))])

    async def close(self) -> None:
        pass


def configure(runtime, *, connector: bool = True, **settings) -> FakeX:  # noqa: ANN001
    """The runtime with these settings (live: the handlers read ``runtime.settings`` per request) and a
    fake X connector that really "sends" (no global dry run unless asked)."""
    runtime.settings = runtime.settings.model_copy(update={"dry_run": False, **settings})
    fake = FakeX()
    runtime.connectors = [fake] if connector else []
    return fake


async def replies_of(runtime, mention_id: int) -> list[Reply]:  # noqa: ANN001
    async with runtime.db.session() as s:
        return list(await s.scalars(select(Reply).where(Reply.mention_id == mention_id).order_by(Reply.id)))


async def audit(runtime, action: str) -> list[AuditEvent]:  # noqa: ANN001
    async with runtime.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# --- the operator's bot policy ------------------------------------------------------------------

async def test_the_kill_switch_stops_api_bots_with_a_clear_json_refusal(app_client, runtime):
    fake = configure(runtime, bot_enabled=False)
    m = await add_mention(runtime, "my shuffle is broken")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    for visibility in ("public", "private"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h,
                                  json={"text": "Try turning it off and on", "visibility": visibility})
        body = await r.json()
        assert r.status == 423 and body["error"]["status"] == 423, body
        assert "switched off" in body["error"]["message"]
    assert await replies_of(runtime, m.id) == [] and fake.calls == []


async def test_a_channel_switched_off_stops_only_that_channels_bots(app_client, runtime):
    configure(runtime, bot_channels={"reddit": {"enabled": False}})
    on_x = await add_mention(runtime, "app crashes", platform="x")
    on_reddit = await add_mention(runtime, "app crashes", platform="reddit", handle="redditor")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    r = await app_client.post(f"/api/v1/mentions/{on_reddit.id}/replies", headers=h, json={"text": "Sorry!"})
    assert r.status == 423
    r = await app_client.post(f"/api/v1/mentions/{on_x.id}/replies", headers=h, json={"text": "Sorry!"})
    assert r.status == 201 and (await r.json())["reply"]["status"] == "sent"


async def test_a_channel_in_bot_dry_run_records_api_replies_as_dry_run_and_sends_nothing(app_client, runtime):
    fake = configure(runtime, bot_dry_run_channels=["x"])
    m = await add_mention(runtime, "how do I export?")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h, json={"text": "Settings → Export."})
    assert r.status == 201 and (await r.json())["reply"]["status"] == "dry_run"
    assert fake.calls == []
    [row] = await replies_of(runtime, m.id)
    assert (row.kind, row.status) == ("bot_api", "dry_run")
    [event] = await audit(runtime, "reply.created")
    assert event.details.get("dry_run") is True


async def test_the_hourly_bot_rate_counts_api_replies_and_answers_429_with_retry_after(app_client, runtime,
                                                                                        described):
    fake = configure(runtime, bot_rate_per_hour=2)
    m = await add_mention(runtime, "my shuffle is broken")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    async with runtime.db.session() as s:  # the service's own automatic answer, a minute ago, counts too
        s.add(Reply(dedup_key="auto:earlier", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                    visibility="public", kind="auto_answer", text="Try this article", status="sent",
                    sent_by="bot"))
        await s.commit()
    url = f"/api/v1/mentions/{m.id}/replies"
    first = await app_client.post(url, headers=h, json={"text": "reply one"})
    assert first.status == 201 and (await first.json())["reply"]["status"] == "sent"
    async with app_client.request("POST", url, headers=h, json={"text": "reply two"}) as r:
        body = await r.json()
        assert r.status == 429, body
        described.check("POST", "/api/v1/mentions/{id}/replies", 429, body)
        wait = int(r.headers["Retry-After"])
    assert 3500 <= wait <= 3600 and body["error"]["retry_after"] == wait
    assert "hourly rate" in body["error"]["message"]
    assert [c[1] for c in fake.calls] == ["reply one"]
    assert [x.kind for x in await replies_of(runtime, m.id)] == ["auto_answer", "bot_api"]
    async with runtime.db.session() as s:  # and the bot's own gates count the API's replies
        ledger = await Ledger.load(s, conversation_ids=set(), author_ids=set(), platforms={"x"},
                                   max_cooldown_hours=0)
    assert ledger.sent_last_hour["x"] == 2


async def test_concurrent_api_replies_never_go_over_the_hourly_rate(app_client, runtime):
    fake = configure(runtime, bot_rate_per_hour=1)
    mentions = [await add_mention(runtime, f"help {i}", handle=f"p{i}") for i in range(5)]
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    rs = await asyncio.gather(*[app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h,
                                                json={"text": "On it!"}) for m in mentions])
    assert {r.status for r in rs} <= {201, 429}, [r.status for r in rs]
    assert all(r.headers.get("Retry-After") for r in rs if r.status == 429)
    async with runtime.db.session() as s:
        rows = list(await s.scalars(select(Reply).where(Reply.kind == "bot_api")))
    assert len(rows) <= 1 and len(fake.calls) == len(rows) == sum(r.status == 201 for r in rs)


async def test_api_replies_share_the_channels_pace_with_incident_replies(app_client, runtime):
    from service.dispatch import Dispatcher

    fake = configure(runtime, incident_broadcast_per_minute=2)
    m = await add_mention(runtime, "the app is down")
    async with runtime.db.session() as s:  # an incident status reply went out a moment ago
        s.add(Reply(dedup_key="status:1", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                    visibility="public", kind="status", text="We are on it", status="sent", sent_by="bot",
                    sent_at=utcnow()))
        await s.commit()
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    url = f"/api/v1/mentions/{m.id}/replies"
    assert (await app_client.post(url, headers=h, json={"text": "one"})).status == 201
    r = await app_client.post(url, headers=h, json={"text": "two"})
    body = await r.json()
    assert r.status == 429 and "pace" in body["error"]["message"], body
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert [c[1] for c in fake.calls] == ["one"]
    pacer = Dispatcher.for_settings(runtime.db, runtime.connectors, runtime.settings)
    async with runtime.db.session() as s:  # the incident queue sees the API's reply take a slot
        assert await pacer._paced_recently(s, "x", utcnow()) == 2


async def test_the_pace_does_not_apply_to_what_is_only_recorded(app_client, runtime):
    configure(runtime, connector=False, incident_broadcast_per_minute=1)
    m = await add_mention(runtime, "the app is down")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    for text in ("one", "two", "three"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h, json={"text": text})
        assert r.status == 201 and (await r.json())["reply"]["status"] == "dry_run"


async def test_a_failed_reply_frees_its_idempotency_key_for_a_new_attempt(app_client, runtime, described):
    fake = configure(runtime)
    fake.fail = True
    m = await add_mention(runtime, "where is my order?")
    h = {**bearer(await bot_token(runtime, "alice", ["replies:write"])), "Idempotency-Key": "order-7"}
    path, url = "/api/v1/mentions/{id}/replies", f"/api/v1/mentions/{m.id}/replies"
    async with app_client.request("POST", url, headers=h, json={"text": "Checking!"}) as r:
        failed = await r.json()
        described.check("POST", path, r.status, failed)
    assert r.status == 201 and failed["reply"]["status"] == "failed"
    assert "duplicate content" in failed["reply"]["error"]
    fake.fail = False
    async with app_client.request("POST", url, headers=h, json={"text": "Checking!"}) as r:
        again = await r.json()
        described.check("POST", path, r.status, again)
    assert r.status == 201 and again["created"] is True and again["reply"]["status"] == "sent"
    assert again["reply"]["id"] != failed["reply"]["id"]
    repeat = await app_client.post(url, headers=h, json={"text": "Checking!"})
    assert repeat.status == 200 and (await repeat.json())["reply"]["id"] == again["reply"]["id"]
    rows = await replies_of(runtime, m.id)
    assert [r.status for r in rows] == ["failed", "sent"] and len(fake.calls) == 2


async def test_a_bot_cannot_send_an_unknown_reply_again_while_the_channels_bots_are_off(app_client, runtime):
    fake = configure(runtime, bot_enabled=False)
    m = await add_mention(runtime, "where is my order?")
    async with runtime.db.session() as s:
        row = Reply(dedup_key="api:x:1", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                    visibility="public", kind="bot_api", text="Checking!", status="unknown", sent_by="token:alice")
        s.add(row)
        await s.commit()
        reply_id = row.id
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    r = await app_client.post(f"/api/v1/replies/{reply_id}/settle", headers=h, json={"outcome": "not_posted"})
    assert r.status == 423 and "switched off" in (await r.json())["error"]["message"]
    assert [x.status for x in await replies_of(runtime, m.id)] == ["unknown"] and fake.calls == []
    r = await app_client.post(f"/api/v1/replies/{reply_id}/settle", headers=h, json={"outcome": "posted"})
    assert r.status == 200 and (await r.json())["reply"]["status"] == "sent"  # saying what happened still works


# --- the service's own notices -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["secure_link_notice", "pii_removed_notice", "secure_link_dm", "case_closed_public"])
async def test_a_bot_cannot_post_the_services_reserved_notices(app_client, runtime, name):
    from models import Template

    async with runtime.db.session() as s:
        s.add(Template(name=name, variants={"friendly": "We've sent you a secure link by DM"}, issue_types=[]))
        await s.commit()
    m = await add_mention(runtime, "account question")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    for visibility in ("public", "private"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h,
                                  json={"template": name, "visibility": visibility})
        body = await r.json()
        assert r.status == 422 and "reserved" in body["error"]["message"] and name in body["error"]["message"]
    assert await replies_of(runtime, m.id) == []


# --- claims and roles on actions ----------------------------------------------------------------

async def claim_for(runtime, mention: Mention, username: str) -> int:  # noqa: ANN001
    async with runtime.db.session() as s:
        user = await s.scalar(select(User).where(User.username == username))
        conv = await s.get(Conversation, mention.conversation_id)
        conv.claimed_by, conv.claimed_at = user.id, utcnow()
        await s.commit()
        return user.id


async def conversation(runtime, mention: Mention) -> Conversation:  # noqa: ANN001
    async with runtime.db.session() as s:
        return await s.get(Conversation, mention.conversation_id)


async def test_another_agents_bot_cannot_resolve_a_claimed_conversation_unless_it_takes_it_over(app_client, runtime):
    m = await add_mention(runtime, "my refund never arrived")
    alice = await claim_for(runtime, m, "alice")
    h = bearer(await bot_token(runtime, "bob", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"
    r = await app_client.post(url, headers=h, json={"action": "resolve"})
    body = await r.json()
    assert r.status == 409 and "alice is working on this conversation" in body["error"]["message"]
    assert "take_over" in body["error"]["message"]
    conv = await conversation(runtime, m)
    assert (conv.status, conv.claimed_by) == ("open", alice)
    assert await audit(runtime, "mention.resolve") == []
    r = await app_client.post(url, headers=h, json={"action": "resolve", "take_over": True})
    assert r.status == 200
    conv = await conversation(runtime, m)
    assert (conv.status, conv.claimed_by) == ("resolved", None)
    [taken] = await audit(runtime, "conversation.taken_over")
    assert taken.actor == "token:bob" and taken.details["from_user"] == "alice"
    assert len(await audit(runtime, "conversation.resolved")) == 1
    mine = await add_mention(runtime, "another one", handle="dan")  # her own bot needs no take-over
    await claim_for(runtime, mine, "alice")
    ha = bearer(await bot_token(runtime, "alice", ["actions:write"]))
    assert (await app_client.post(f"/api/v1/mentions/{mine.id}/actions", headers=ha,
                                  json={"action": "resolve"})).status == 200


async def test_another_agents_bot_cannot_escalate_a_claimed_conversation_unless_it_takes_it_over(app_client, runtime):
    m = await add_mention(runtime, "someone is using my card")
    await claim_for(runtime, m, "alice")
    h = bearer(await bot_token(runtime, "bob", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"
    r = await app_client.post(url, headers=h, json={"action": "escalate"})
    assert r.status == 409 and "alice" in (await r.json())["error"]["message"]
    async with runtime.db.session() as s:
        assert (await s.scalars(select(Case))).all() == []
    assert await replies_of(runtime, m.id) == []
    r = await app_client.post(url, headers=h, json={"action": "escalate", "take_over": True})
    assert r.status == 200 and (await r.json())["case_id"] > 0
    async with runtime.db.session() as s:
        bob = await s.scalar(select(User).where(User.username == "bob"))
    assert (await conversation(runtime, m)).claimed_by == bob.id
    assert len(await audit(runtime, "conversation.taken_over")) == 1


async def test_take_over_is_only_for_escalate_and_resolve(app_client, runtime):
    m = await add_mention(runtime, "hello")
    h = bearer(await bot_token(runtime, "alice", ["actions:write"]))
    r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h,
                              json={"action": "tag", "tags": ["x"], "take_over": True})
    assert r.status == 422 and "take_over" in (await r.json())["error"]["message"]


async def test_a_moderators_token_does_not_do_the_care_teams_work(app_client, runtime):
    m = await add_mention(runtime, "app crashes on start")
    await claim_for(runtime, m, "alice")
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"
    for action in ({"action": "tag", "tags": ["x"]}, {"action": "resolve"}, {"action": "escalate"},
                   {"action": "resolve", "take_over": True}):
        r = await app_client.post(url, headers=h, json=action)
        body = await r.json()
        assert r.status == 403 and "care team" in body["error"]["message"], (action, body)
    conv = await conversation(runtime, m)
    assert conv.status == "open" and conv.tags in (None, []) and conv.claimed_by is not None
    async with runtime.db.session() as s:
        assert (await s.scalars(select(Case))).all() == []
    assert await replies_of(runtime, m.id) == []
    r = await app_client.post(url, headers=h, json={"action": "hide"})  # moderating stays theirs
    assert r.status == 200


async def test_a_moderator_escalates_a_post_held_in_the_moderation_queue_as_the_queue_does(app_client, runtime):
    from community import moderation

    m = await add_mention(runtime, "they posted my address, I'm scared")
    async with runtime.db.session() as s:
        hold, _ = await moderation.report(s, await s.get(Mention, m.id), "agent:bob", "doxxing")
        await s.commit()
        hold_id = hold.id
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"
    r = await app_client.post(url, headers=h, json={"action": "escalate"})
    body = await r.json()
    assert r.status == 200 and body["case_id"] > 0, body
    async with runtime.db.session() as s:
        hold = await s.get(ModerationAction, hold_id)
    assert hold.status == "reviewed" and hold.details["decision"] == "escalate"
    again = await app_client.post(url, headers=h, json={"action": "escalate"})  # a retry: the same case
    assert again.status == 200 and (await again.json())["case_id"] == body["case_id"]


# --- the description ------------------------------------------------------------------------------

def test_the_description_documents_reply_statuses_limits_and_the_reply_body():
    from console.api.openapi import spec
    from console.api.openapi_schemas import SCHEMAS

    doc = spec()
    status = SCHEMAS["Reply"]["properties"]["status"]
    assert {"sent", "failed", "dry_run", "pending", "unknown", "cancelled"} <= set(status["enum"])
    assert "held back" in status["description"]
    op = doc["paths"]["/api/v1/mentions/{id}/replies"]["post"]
    assert "Retry-After" in op["responses"]["429"]["headers"] and "423" in op["responses"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"required": ["text"]} in body["anyOf"] and {"required": ["template"]} in body["anyOf"]
    assert "failed" in body["properties"]["idempotency_key"]["description"]
    actions = doc["paths"]["/api/v1/mentions/{id}/actions"]["post"]
    assert "take_over" in actions["description"]
    assert all("take_over" in v["properties"] for v in actions["requestBody"]["content"]["application/json"][
        "schema"]["oneOf"])


@pytest.fixture
async def described(app_client) -> Described:
    return Described(await (await app_client.get("/api/openapi.json")).json())


async def test_template_answers_match_their_closed_schema(app_client, runtime, described):
    h = bearer(await bot_token(runtime, "alice", ["templates:write", "templates:read"]))
    r = await app_client.post("/api/v1/templates", headers=h, json={
        "name": "double_charge", "issue_types": ["billing"], "variants": {"friendly": "Sorry!"}})
    described.check("POST", "/api/v1/templates", r.status, await r.json())
    r = await app_client.get("/api/v1/templates", headers=h)
    described.check("GET", "/api/v1/templates", r.status, await r.json())
    r = await app_client.get("/api/v1/templates/double_charge", headers=h)
    described.check("GET", "/api/v1/templates/{name}", r.status, await r.json())


@pytest.mark.parametrize("query", ["/api/v1/queue?offset=", "/api/v1/queue?limit=", "/api/v1/mentions?offset=",
                                   "/api/v1/mentions?since_id="])
async def test_an_empty_paging_parameter_is_a_400_not_the_default(app_client, runtime, query):
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    r = await app_client.get(query, headers=h)
    body = await r.json()
    assert r.status == 400 and body["error"]["status"] == 400 and "must be an integer" in body["error"]["message"]
