"""Outgoing webhooks: signed bodies, retries with back-off, one delivery per event and subscriber."""

from __future__ import annotations

import json
from datetime import timedelta

import aiohttp
from sqlalchemy import select

from console.webhooks_out import MAX_ATTEMPTS, backoff, deliver_due, scan, signature_header, verify
from models import Case, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from tests.console.conftest import add_mention, bot_token


async def subscribe(app_client, runtime, url: str, events: list[str]) -> dict:
    token = await bot_token(runtime, "root", ["webhooks"])
    r = await app_client.post("/api/v1/webhooks", headers={"Authorization": f"Bearer {token}"},
                              json={"name": "crm-bot", "url": url, "events": events})
    assert r.status == 201, await r.text()
    return await r.json()


async def test_events_are_signed_retried_with_back_off_and_delivered_once(app_client, runtime, receiver):
    sub = await subscribe(app_client, runtime, receiver.url, ["mention.triaged", "case.opened"])
    receiver.statuses = [500, 503]
    m = await add_mention(runtime, "my card 4111 1111 1111 1111 was stolen", sensitivity="fraud",
                          pii=[{"type": "card_number", "start": 8, "end": 27}])
    async with runtime.db.session() as s:
        s.add(Case(conversation_id=m.conversation_id, opened_by_mention_id=m.id, category="fraud"))
        await s.commit()
    later = utcnow() + timedelta(seconds=5)
    assert await scan(runtime.db, now=later) == 2
    assert await scan(runtime.db, now=later) == 0  # the watermark moved on
    async with aiohttp.ClientSession() as http:
        # the first event fails (500): the subscription is paused, its second event waits with it
        assert await deliver_due(runtime.db, http, now=later) == 0
        assert await deliver_due(runtime.db, http, now=later + timedelta(seconds=5)) == 0  # not due yet
        assert await deliver_due(runtime.db, http, now=later + backoff(1) + timedelta(seconds=1)) == 0  # 503
        assert await deliver_due(runtime.db, http, now=utcnow() + backoff(2) + timedelta(seconds=1)) == 2
        assert await deliver_due(runtime.db, http, now=later + timedelta(hours=2)) == 0
    assert len(receiver.got) == 4
    bodies = {}
    for headers, body in receiver.got:
        assert verify(sub["secret"], headers["X-Socialcare-Signature"], body)
        assert not verify("another secret of enough length", headers["X-Socialcare-Signature"], body)
        event = json.loads(body)
        assert headers["X-Socialcare-Event"] == event["type"]
        bodies[event["id"]] = event
    assert sorted(e["type"] for e in bodies.values()) == ["case.opened", "mention.triaged"]  # each delivered once
    triaged = next(e for e in bodies.values() if e["type"] == "mention.triaged")
    assert triaged["data"]["mention_id"] == m.id and triaged["data"]["text"] is None  # a fraud report: withheld
    assert triaged["data"]["text_withheld"] is True and "4111" not in body.decode()
    async with runtime.db.session() as s:
        rows = (await s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
    assert [(d.status, d.attempts) for d in rows] == [("delivered", 3), ("delivered", 1)]


async def test_a_failing_endpoint_is_given_up_after_the_last_attempt_and_410_unsubscribes(app_client, runtime,
                                                                                          receiver):
    await subscribe(app_client, runtime, receiver.url, ["mention.routed"])
    receiver.statuses = [500] * MAX_ATTEMPTS
    await add_mention(runtime, "hello")
    now = utcnow() + timedelta(seconds=5)
    await scan(runtime.db, now=now)
    async with aiohttp.ClientSession() as http:
        for _ in range(MAX_ATTEMPTS):
            await deliver_due(runtime.db, http, now=now)
            now += timedelta(days=1)
    async with runtime.db.session() as s:
        d = await s.scalar(select(WebhookDelivery))
    assert (d.status, d.attempts, d.last_error) == ("failed", MAX_ATTEMPTS, "HTTP 500")
    receiver.statuses = [410]
    await add_mention(runtime, "again")
    await scan(runtime.db, now=now)
    async with aiohttp.ClientSession() as http:
        await deliver_due(runtime.db, http, now=now)
    async with runtime.db.session() as s:
        assert (await s.scalar(select(WebhookSubscription))).active is False


async def test_history_before_the_first_subscription_is_not_replayed(app_client, runtime, receiver):
    await add_mention(runtime, "old news")
    await scan(runtime.db, now=utcnow() + timedelta(seconds=5))
    await subscribe(app_client, runtime, receiver.url, ["mention.routed"])
    assert await scan(runtime.db, now=utcnow() + timedelta(seconds=5)) == 0


def test_signatures_expire_and_resist_tampering():
    body = b'{"id":"x"}'
    header = signature_header("s" * 32, body, timestamp=1_000_000)
    assert verify("s" * 32, header, body, now=1_000_100)
    assert not verify("s" * 32, header, body, now=1_000_000 + 3600)
    assert not verify("s" * 32, header, body + b" ", now=1_000_100)
    assert not verify("s" * 32, "garbage", body)
    assert backoff(1) < backoff(2) < backoff(3) and backoff(50) == timedelta(hours=1)


async def test_subscriptions_are_validated_and_admin_only(app_client, runtime):
    admin = await bot_token(runtime, "root", ["webhooks"])
    agent = await bot_token(runtime, "alice", ["*"])
    h = {"Authorization": f"Bearer {admin}"}
    for body in ({"name": "x", "url": "ftp://example.com/h", "events": ["case.opened"]},
                 {"name": "x", "url": "https://example.com/h", "events": ["case.exploded"]},
                 {"name": "x", "url": "https://example.com/h", "events": []}):
        r = await app_client.post("/api/v1/webhooks", headers=h, json=body)
        assert r.status == 422, body
    r = await app_client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {agent}"})
    assert r.status == 403
    listed = await (await app_client.get("/api/v1/webhooks", headers=h)).json()
    assert listed["webhooks"] == [] and "case.opened" in listed["events"]


async def test_an_sla_breach_is_pushed_once_per_breach_without_personal_data(app_client, runtime, receiver):
    from escalation import sla

    await subscribe(app_client, runtime, receiver.url, ["sla.breached"])
    m = await add_mention(runtime, "my card 4111 1111 1111 1111 was charged twice", sensitivity="fraud",
                          handle="maria_music3")
    async with runtime.db.session() as s:
        case = Case(conversation_id=m.conversation_id, opened_by_mention_id=m.id, category="fraud",
                    first_response_due=utcnow() - timedelta(minutes=5), resolution_due=utcnow() + timedelta(hours=1))
        s.add(case)
        await s.commit()
        case_id = case.id
    assert await sla.sweep(runtime.db) == 1
    assert await sla.sweep(runtime.db) == 0  # the checker runs again: the same breach, no new one
    later = utcnow() + timedelta(seconds=5)
    assert await scan(runtime.db, now=later) == 1
    assert await scan(runtime.db, now=later) == 0
    async with aiohttp.ClientSession() as http:
        assert await deliver_due(runtime.db, http, now=later) == 1
    [(headers, body)] = receiver.got
    event = json.loads(body)
    assert headers["X-Socialcare-Event"] == event["type"] == "sla.breached"
    assert (event["data"]["case_id"], event["data"]["kind"], event["data"]["category"]) == (
        case_id, "first_response", "fraud")
    assert b"4111 1111" not in body and b"maria" not in body.lower()
    # the resolution deadline passing later is a second breach: a second event
    async with runtime.db.session() as s:
        (await s.get(Case, case_id)).resolution_due = utcnow() - timedelta(seconds=1)
        await s.commit()
    assert await sla.sweep(runtime.db) == 1
    assert await scan(runtime.db, now=utcnow() + timedelta(seconds=5)) == 1
    async with runtime.db.session() as s:
        kinds = [d.payload["data"]["kind"] for d in await s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]
    assert kinds == ["first_response", "resolution"]


async def test_the_new_events_can_be_subscribed_to(app_client, runtime):
    admin = await bot_token(runtime, "root", ["webhooks"])
    listed = await (await app_client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {admin}"})).json()
    assert {"moderation.notify", "sla.breached"} <= set(listed["events"])


async def test_a_triaged_event_quotes_public_posts_redacted_and_withholds_private_matters(app_client, runtime,
                                                                                         receiver):
    """A subscriber outside the care team gets a public post's words (personal data and secure links
    masked), never a private message's or a takeover or fraud report's, nor their explanations."""
    from models import Mention, TriageResult

    await subscribe(app_client, runtime, receiver.url, ["mention.triaged"])
    public = await add_mention(runtime, "billed twice, card 4111 1111 1111 1111, see care.example.com/secure/"
                               "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg", pii=[{"type": "card_number",
                                                                                  "start": 19, "end": 38}])
    dm = await add_mention(runtime, "DM: my ex has my login and drains the family account")
    hacked = await add_mention(runtime, "someone hacked my account from Lagos", sensitivity="security")
    follow_up = await add_mention(runtime, "reset it but my playlists are gone", outcome="escalate_private")
    async with runtime.db.session() as s:
        (await s.get(Mention, dm.id)).is_public = False
        (await s.get(TriageResult, hacked.id)).scores = {
            "sensitivity": {"label": "security", "score": 0.97, "explanation": ["word 'hacked' (+0.61)"]}}
        await s.commit()
    later = utcnow() + timedelta(seconds=5)
    assert await scan(runtime.db, now=later) == 4
    async with aiohttp.ClientSession() as http:
        assert await deliver_due(runtime.db, http, now=later) == 4
    data = {e["data"]["mention_id"]: e["data"] for e in (json.loads(b) for _, b in receiver.got)}
    assert "billed twice" in data[public.id]["text"] and data[public.id]["text_withheld"] is False
    assert "4111" not in data[public.id]["text"] and "AbCdEfGh" not in data[public.id]["text"]
    for private in (dm.id, hacked.id, follow_up.id):  # the last joined a private case
        assert data[private]["text"] is None and data[private]["text_withheld"] is True
    raw = b"".join(b for _, b in receiver.got).decode()
    assert "drains the family" not in raw and "hacked" not in raw and "Lagos" not in raw and "playlists" not in raw
    assert data[hacked.id]["triage"]["sensitivity"] == "security"  # the labels still go: a bot routes on them


async def test_a_post_not_routed_yet_goes_without_its_text(app_client, runtime, receiver):
    """A backlog: the route stage has not decided yet whether the post joins a private case, so its
    triaged event keeps the text in the console."""
    from sqlalchemy import delete

    from models import RouteDecision

    await subscribe(app_client, runtime, receiver.url, ["mention.triaged"])
    follow_up = await add_mention(runtime, "reset it but my playlists are gone", outcome="escalate_private")
    async with runtime.db.session() as s:
        await s.execute(delete(RouteDecision).where(RouteDecision.mention_id == follow_up.id))
        await s.commit()
    later = utcnow() + timedelta(seconds=5)
    assert await scan(runtime.db, now=later) == 1
    async with aiohttp.ClientSession() as http:
        assert await deliver_due(runtime.db, http, now=later) == 1
    [(_, body)] = receiver.got
    data = json.loads(body)["data"]
    assert data["text"] is None and data["text_withheld"] is True and b"playlists" not in body

