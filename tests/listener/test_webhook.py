"""The generic signed JSON webhook (other forums, the in-product help widget)."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from listener import webhook
from listener.ingest import ingest_batch
from listener.webhook import ReplayGuard, sign, to_mention
from models import Author, Conversation, Customer, Mention, SocialIdentity
from models.db import Database
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
    assert resp.status == 202 and (await resp.json()) == {"accepted": 1, "customers_linked": 0}  # no database here
    (m,) = client.published
    assert m.author_id == "help-widget:u-9"  # namespaced: another forum may have its own "u-9"
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


async def test_refused_signatures_are_logged_for_the_operator_at_most_once_a_minute(client, caplog):
    assert (await deliver(client, widget_post(), secret="old-secret")).status == 401
    assert (await deliver(client, widget_post(), secret="old-secret")).status == 401
    (line,) = [r.getMessage() for r in caplog.records if r.name == "socialcare.listener.webhook"]
    assert "refused 1 request(s) (invalid signature" in line and "secret" in line and SECRET not in line


def test_the_refusal_log_counts_what_it_kept_quiet_about(caplog):
    refusals, request = webhook.RefusalLog(logging.getLogger("t"), "hook", every=60.0), SimpleNamespace(remote="1.2.3.4")
    for now in (0.0, 1.0, 2.0, 61.0):
        refusals.refused(request, "invalid signature", now=now)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["hook: refused 1 request(s)",
                                                                       "hook: refused 3 request(s)"]


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


# --- the widget's signed customer reference links the author to the customer record ---------------


@pytest.fixture
async def linked(sqlite_url, tmp_path):
    """The webhook on a real database with two customers, and what it published."""
    db = Database(sqlite_url)
    await db.upgrade()
    async with db.session() as s:
        s.add_all([Customer(external_ref="cus_42", name="Jane Doe", email="Jane@Example.com"),
                   Customer(external_ref="cus_43", name="Ann Other", email="ann@example.com")])
        await s.commit()
    published: list = []

    async def publish(batch):
        published.extend(batch)

    app = web.Application()
    app.router.add_routes(webhook.routes(load_settings(webhook_secret=SECRET, var_dir=tmp_path / "var"), publish,
                                         db=db))  # var_dir: the erasure tombstones' key (service.tombstones)
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    c.published, c.db = published, db
    yield c
    await c.close()
    await db.close()


async def ingested(client):
    """Ingest what the webhook published; returns {external_id: (author customer, thread customer)}."""
    async with client.db.session() as s:
        await ingest_batch(s, client.published)
        await s.commit()
        out = {}
        for m in await s.scalars(select(Mention)):
            author, conv = await s.get(Author, m.author_id), await s.get(Conversation, m.conversation_id)
            out[m.external_id] = (author.customer_id if author else None, conv.customer_id)
        return out


async def customer_id(client, ref):
    async with client.db.session() as s:
        return await s.scalar(select(Customer.id).where(Customer.external_ref == ref))


async def test_a_signed_customer_id_or_email_links_the_author_and_the_thread(linked):
    resp = await deliver(linked, {"mentions": [
        widget_post(1),  # customer id cus_42
        {**widget_post(2, thread_id="conv-8"), "author": {"id": "u-10"}, "customer": {"email": "ANN@example.com"}},
        {**widget_post(3, thread_id="conv-9"), "author": {"id": "u-11"}, "customer": {"id": "cus_unknown"}},
    ]})
    assert resp.status == 202 and (await resp.json()) == {"accepted": 3, "customers_linked": 2}
    jane, ann = await customer_id(linked, "cus_42"), await customer_id(linked, "cus_43")
    rows = await ingested(linked)
    assert rows["help-widget:msg-1"] == (jane, jane)
    assert rows["help-widget:msg-2"] == (ann, ann)  # by e-mail, whatever its case
    assert rows["help-widget:msg-3"] == (None, None)  # a customer the CRM does not know: not invented
    async with linked.db.session() as s:
        ident = await s.scalar(select(SocialIdentity).where(SocialIdentity.handle_key == "id:help-widget:u-9"))
    assert ident.customer_id == jane and ident.platform == "webhook" and ident.source == "webhook"


async def test_an_author_seen_before_is_linked_later_and_another_sources_namesake_is_not(linked):
    anonymous = {k: v for k, v in widget_post(1).items() if k != "customer"}
    forum_namesake = {**anonymous, "source": "other-forum", "id": "p-1"}  # its own user "u-9"
    assert (await deliver(linked, {"mentions": [anonymous, forum_namesake]})).status == 202
    assert await ingested(linked) == {"help-widget:msg-1": (None, None), "other-forum:p-1": (None, None)}
    linked.published.clear()
    assert (await deliver(linked, widget_post(2))).status == 202  # now signed in: cus_42
    jane = await customer_id(linked, "cus_42")
    rows = await ingested(linked)
    assert rows["help-widget:msg-2"] == (jane, jane) and rows["help-widget:msg-1"][0] == jane
    assert rows["other-forum:p-1"] == (None, None)


async def test_only_a_signed_request_links_a_customer(linked):
    """Ingest alone never trusts ``raw["customer"]``: replay files and the ingest API carry it too."""
    forged = {**widget_post(1), "author": {"id": "u-77"}}
    assert (await deliver(linked, forged, secret="wrong")).status == 401
    linked.published.append(to_mention(forged, 0, []))  # as if it came in by replay
    assert await ingested(linked) == {"help-widget:msg-1": (None, None)}


async def test_a_malformed_customer_reference_is_a_400(linked):
    resp = await deliver(linked, {**widget_post(1), "customer": {"id": ["cus_42"], "email": "not-an-address"}})
    problems = (await resp.json())["problems"]
    assert resp.status == 400 and any("customer.id" in p for p in problems)
    assert any("customer.email" in p for p in problems) and linked.published == []


# --- bad input: refused with a 4xx naming the problem, never a 500, never accepted and lost --------


def deep(depth: int, kind: str = "list") -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)


async def test_deeply_nested_json_is_a_400_not_a_500(client):
    for depth in (950, 5_000):  # within the 50 KB limit
        for kind in ("list", "object"):
            resp = await deliver(client, None, body=deep(depth, kind))
            assert resp.status == 400 and "JSON" in (await resp.json())["error"], (depth, kind)
    assert client.published == []


async def test_times_out_of_range_are_refused_naming_the_field(client):
    for value in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 12, ["2026-11-20"]):
        resp = await deliver(client, {"mentions": [widget_post(1, created_at=value),
                                                   widget_post(2, edited_at=value)]})
        problems = (await resp.json())["problems"]
        assert resp.status == 400, value
        assert any("mentions[0].created_at" in p for p in problems) and any("mentions[1].edited_at" in p for p in problems)
    assert client.published == []


async def test_strings_a_database_refuses_or_of_the_wrong_type_are_refused_before_publishing(client):
    cases = {"author.id": widget_post(author={"id": "\ud800"}), "author.handle": widget_post(author={"handle": ["x"]}),
             "url": widget_post(url=["u"]), "author.name": widget_post(author={"name": "nul\x00"}),
             "text": widget_post(text="surrogate \udc00"), "thread_id": widget_post(thread_id={"a": 1}),
             "context.note": widget_post(context={"note": "\ud800"}), "lang": widget_post(lang=5),
             "public": widget_post(public="false"),
             "id": widget_post(id="x" * 200)}
    for field, post in cases.items():
        resp = await deliver(client, {"mentions": [widget_post(9), post]})
        body = await resp.json()
        assert resp.status == 400 and any(f"mentions[1].{field}" in p for p in body["problems"]), (field, body)
    assert client.published == []


async def test_a_timestamp_that_is_not_a_finite_number_is_refused(client):
    for ts in ("nan", "NaN", "inf", "-inf", "1e400"):
        resp = await deliver(client, widget_post(), ts=ts)
        assert resp.status == 401, ts
    guard = ReplayGuard(tolerance=300)
    assert guard.fresh("nan", "sig", now=1000) is not None and guard.fresh("nan", "sig", now=1600) is not None
    assert client.published == []
