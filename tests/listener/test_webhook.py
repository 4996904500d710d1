"""The generic signed JSON webhook (other forums, the in-product help widget)."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from listener import webhook
from listener.webhook import ReplayGuard, sign
from service.settings import load_settings

SECRET = "generic-secret"


@pytest.fixture
async def client():
    published: list = []

    async def publish(batch):
        published.extend(batch)

    app = web.Application()
    app.router.add_routes(webhook.routes(load_settings(webhook_secret=SECRET, webhook_max_bytes=50_000), publish))
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    c.published = published
    yield c
    await c.close()


def widget_post(i: int = 1, **extra) -> dict:
    return {"source": "help-widget", "id": f"msg-{i}", "text": "I was charged twice for my family plan",
            "created_at": "2026-11-20T08:01:02Z", "author": {"id": "u-9", "handle": "jane", "name": "Jane"},
            "thread_id": "conv-7", "customer": {"id": "cus_42", "plan": "family"}, "context": {"page": "/billing"},
            **extra}


async def deliver(client, payload, *, ts=None, secret=SECRET, body=None, signature=None):
    raw = body if body is not None else json.dumps(payload).encode()
    ts = str(int(time.time())) if ts is None else ts
    headers = {"Content-Type": "application/json", "X-Socialcare-Timestamp": ts,
               "X-Socialcare-Signature": signature or sign(secret, raw, ts)}
    return await client.post(webhook.PATH, data=raw, headers=headers)


async def test_a_signed_post_becomes_a_private_mention_carrying_the_customer_context(client):
    resp = await deliver(client, widget_post(1))
    assert resp.status == 202 and (await resp.json()) == {"accepted": 1}
    (m,) = client.published
    assert (m.platform, m.external_id, m.conversation_id, m.channel) == ("webhook", "help-widget:msg-1",
                                                                         "help-widget:conv-7", "help-widget")
    assert m.is_public is False and m.kind == "dm" and m.author_handle == "jane"
    assert m.raw["customer"] == {"id": "cus_42", "plan": "family"} and m.raw["context"]["page"] == "/billing"
    assert m.created_at.isoformat() == "2026-11-20T08:01:02+00:00"


async def test_batches_edits_and_deletions(client):
    batch = {"mentions": [widget_post(2, public=True, in_reply_to="msg-1"),
                          widget_post(1, text="charged twice (edited)", edited_at="2026-11-20T09:00:00Z"),
                          {"source": "help-widget", "id": "msg-0", "event": "delete"}]}
    assert (await deliver(client, batch)).status == 202
    reply, edit, gone = client.published
    assert reply.in_reply_to == "help-widget:msg-1" and reply.is_public and reply.kind == "forum_post"
    assert edit.edited_at.hour == 9 and edit.event == "upsert"
    assert gone.event == "delete" and gone.external_id == "help-widget:msg-0"


async def test_signature_timestamp_and_replay_are_checked_before_parsing(client):
    assert (await deliver(client, widget_post(), secret="wrong")).status == 401
    assert (await deliver(client, None, body=b"{broken", secret="wrong")).status == 401  # not 400: never parsed
    old = str(int(time.time()) - 3600)
    resp = await deliver(client, widget_post(), ts=old)
    assert resp.status == 401 and "window" in (await resp.json())["error"]
    raw = json.dumps(widget_post(5)).encode()
    ts = str(int(time.time()))
    assert (await deliver(client, None, body=raw, ts=ts)).status == 202
    again = await deliver(client, None, body=raw, ts=ts)  # the same request captured and replayed
    assert again.status == 401 and "replay" in (await again.json())["error"]
    signed_for_other_ts = sign(SECRET, raw, ts)
    assert (await deliver(client, None, body=raw, ts=str(int(ts) + 1), signature=signed_for_other_ts)).status == 401
    assert len(client.published) == 1


async def test_malformed_json_and_invalid_posts_are_400_and_publish_nothing(client):
    resp = await deliver(client, None, body=b'{"source": ')
    assert resp.status == 400 and (await resp.json())["error"] == "malformed JSON"
    bad = {"mentions": [widget_post(1), {"source": "Bad Source!", "text": 5}, widget_post(3, created_at="yesterday")]}
    resp = await deliver(client, bad)
    problems = (await resp.json())["problems"]
    assert resp.status == 400 and any("mentions[1].source" in p for p in problems)
    assert any("mentions[1].id" in p for p in problems) and any("mentions[2].created_at" in p for p in problems)
    assert (await deliver(client, {"mentions": []})).status == 400
    assert client.published == []


async def test_oversized_bodies_get_413_without_being_read(client):
    resp = await deliver(client, widget_post(text="x" * 60_000))
    assert resp.status == 413
    ok = await deliver(client, widget_post(text="y" * 40_000))  # large but within the limit: kept whole
    assert ok.status == 202 and len(client.published[-1].text) == 40_000


def test_replay_guard_forgets_after_the_window():
    guard = ReplayGuard(tolerance=300)
    assert guard.fresh("1000", "sig", now=1000) is None
    assert "replay" in guard.fresh("1000", "sig", now=1100)
    assert "window" in guard.fresh("1000", "sig", now=1400)
    assert "invalid" in guard.fresh("soon", "sig2", now=1000)


def test_no_secret_no_route():
    assert webhook.routes(load_settings(), lambda b: None) == []
