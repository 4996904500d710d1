"""Discourse: signed webhooks on an aiohttp endpoint, and the API connector against a local fake forum."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from listener.cursors import MemoryCursorStore
from listener.discourse import webhook
from listener.discourse.connector import DiscourseConnector, DiscourseHTTPError
from listener.errors import AuthError, RateLimited, TransientError
from listener.protocol import Action
from listener.runner import run_connector
from service.settings import load_settings

from .fakes.discourse import API_KEY, FakeDiscourse, post, webhook_request

SECRET = "wh-secret-for-tests"
FORUM = "https://forum.acme.test"


@pytest.fixture
async def hook():
    published: list = []
    state = {"fail": False}

    async def publish(batch):
        if state["fail"]:
            raise ConnectionError("bus down")
        published.extend(batch)

    settings = load_settings(discourse_url=FORUM, discourse_webhook_secret=SECRET, webhook_max_bytes=200_000,
                             discourse_api_username="acme_support")
    app = web.Application()
    app.router.add_routes(webhook.routes(settings, publish))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.published, client.state = published, state
    yield client
    await client.close()


async def send(client, event, payload, secret=SECRET, body=None):
    raw, headers = webhook_request(event, payload, secret)
    return await client.post(webhook.PATH, data=body if body is not None else raw, headers=headers)


async def test_post_events_create_edit_and_delete_one_threaded_mention(hook):
    first = post(101, number=1)
    resp = await send(hook, "post_created", {"post": first})
    assert resp.status == 202 and (await resp.json())["external_id"] == "40/1"
    reply = post(102, number=2, raw="same here", reply_to=None, username="bob")
    nested = post(103, number=3, raw="@bob try clearing the cache", reply_to=2)
    for p in (reply, nested):
        assert (await send(hook, "post_created", {"post": p})).status == 202
    edited = {**nested, "raw": "@bob try clearing the app cache", "updated_at": "2026-11-20T09:00:00.000Z"}
    assert (await send(hook, "post_edited", {"post": edited})).status == 202
    assert (await send(hook, "post_destroyed", {"post": {**reply, "deleted_at": "2026-11-20T10:00:00Z"}})).status == 202
    m1, m2, m3, m3e, m2d = hook.published
    assert m1.text == "Cannot log in since update\n\nI cannot log in since the update" and m1.in_reply_to is None
    assert m1.url == f"{FORUM}/t/cannot-log-in-since-update/40/1" and m1.kind == "forum_post"
    assert (m2.in_reply_to, m3.in_reply_to) == ("40/1", "40/2") and {m2.conversation_id, m3.conversation_id} == {"40/1"}
    assert m3e.external_id == m3.external_id and m3e.event == "upsert" and m3e.edited_at.hour == 9
    assert m3e.text == "@bob try clearing the app cache" and m3.edited_at is None
    assert (m2d.external_id, m2d.event) == ("40/2", "delete")
    assert m1.raw["instance"] == FORUM and m1.author_handle == "jane_doe"


async def test_a_private_message_is_private_and_topic_created_publishes_nothing(hook):
    assert (await send(hook, "post_created", {"post": post(7, topic_id=77, archetype="private_message")})).status == 202
    topic = {"topic": {"id": 78, "title": "Refund?", "slug": "refund", "archetype": "regular", "posts_count": 1,
                       "created_by": {"id": 17, "username": "jane_doe"}}}
    resp = await send(hook, "topic_created", topic)
    assert resp.status == 200 and (await resp.json())["accepted"] == 0
    (pm,) = hook.published
    assert pm.kind == "dm" and pm.is_public is False


async def test_nothing_is_parsed_before_the_signature_is_verified(hook):
    resp = await send(hook, "post_created", {"post": post(1)}, secret="wrong")
    assert resp.status == 401 and (await resp.json())["error"] == "invalid signature"
    _, headers = webhook_request("post_created", {}, SECRET)
    resp = await hook.post(webhook.PATH, data=b"{not json", headers=headers)  # signature of another body
    assert resp.status == 401
    resp = await hook.post(webhook.PATH, data=b"{}", headers={"X-Discourse-Event": "post_created"})
    assert resp.status == 401
    assert hook.published == []


async def test_a_wrong_secret_is_logged_once_a_minute_with_a_count(hook, caplog):
    """Discourse's own event log alone would show the 401s: the operator must read it here too."""
    for _ in range(3):
        assert (await send(hook, "post_created", {"post": post(1)}, secret="rotated")).status == 401
    (line,) = [r.getMessage() for r in caplog.records if r.name == "socialcare.listener.discourse"]
    assert "refused 1 request(s)" in line and "SOCIALCARE_DISCOURSE_WEBHOOK_SECRET" in line
    assert "rotated" not in line and SECRET not in line


async def test_events_of_our_own_posts_publish_nothing(hook):
    """Our reply comes back as post_created (and /posts.json): stored, it would be triaged as a customer's."""
    ours = post(301, number=2, raw="Sorry to hear that! Could you try reinstalling?", username="Acme_Support")
    for event in ("post_created", "post_edited", "post_destroyed"):
        resp = await send(hook, event, {"post": ours})
        assert resp.status == 200 and (await resp.json())["accepted"] == 0
    assert hook.published == []


async def test_malformed_json_and_posts_without_ids_are_400(hook):
    raw = b'{"post": {"id": 1, '
    _, headers = webhook_request("post_created", {}, SECRET)
    import hashlib
    import hmac

    headers["X-Discourse-Event-Signature"] = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    resp = await hook.post(webhook.PATH, data=raw, headers=headers)
    assert resp.status == 400 and (await resp.json())["error"] == "malformed JSON"
    resp = await send(hook, "post_created", {"post": {"id": 5, "raw": "no topic"}})
    assert resp.status == 400 and hook.published == []


async def test_bodies_over_the_limit_get_413_and_a_large_post_within_it_is_kept_whole(hook):
    big = post(9, raw="x" * 150_000, cooked="<p>(long)</p>")
    assert (await send(hook, "post_created", {"post": big})).status == 202
    assert hook.published[-1].text.endswith("x" * 150_000)
    huge = post(10, raw="y" * 300_000)
    assert (await send(hook, "post_created", {"post": huge})).status == 413

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b"z" * 10_000

    _, headers = webhook_request("post_created", {}, SECRET)
    headers.pop("Content-Type")
    resp = await hook.post(webhook.PATH, data=chunks(), headers=headers)
    assert resp.status == 413 and len(hook.published) == 1


async def test_a_bus_failure_answers_503_so_discourse_can_redeliver(hook):
    hook.state["fail"] = True
    assert (await send(hook, "post_created", {"post": post(3)})).status == 503


def test_without_a_webhook_secret_no_route_is_mounted():
    assert webhook.routes(load_settings(discourse_url=FORUM), lambda b: None) == []


# --- the API connector ------------------------------------------------------------------------


@pytest.fixture
async def forum():
    fake = FakeDiscourse(posts=[post(100 + i, topic_id=40 + i // 3, number=1 + i % 3,
                                     reply_to=(i % 3) or None, raw=f"post {i}") for i in range(8)])
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


def after(cursor: str) -> int:
    """The highest post id seen, from the connector's JSON cursor (which also holds the re-check window)."""
    return json.loads(cursor)["after"]


def connector(forum, key=API_KEY) -> DiscourseConnector:
    return DiscourseConnector(load_settings(discourse_url=forum.base, discourse_api_key=key,
                                            discourse_api_username="acme_support"))


async def test_poll_pages_back_to_the_cursor_and_a_restart_repeats_nothing(forum):
    store = MemoryCursorStore()
    first = connector(forum)
    baseline, cursor = await first.poll_once(None)  # first run: the latest page is the baseline
    assert [m.raw["id"] for m in baseline] == [105, 106, 107] and after(cursor) == 107
    await store.set("discourse", cursor)
    await first.close()
    forum.posts += [post(108 + i, topic_id=50, number=1 + i, raw=f"new {i}") for i in range(7)]
    second = connector(forum)  # a restart
    got, cursor = await second.poll_once(await store.get("discourse"))
    assert [m.raw["id"] for m in got] == list(range(108, 115)) and after(cursor) == 114
    assert any("before=" in r for r in forum.requests)  # it paged back
    assert got[1].in_reply_to == "50/1" and got[0].url == f"{forum.base}/t/cannot-log-in-since-update/50/1"
    again, cursor = await second.poll_once(cursor)
    assert again == [] and after(cursor) == 114
    await second.close()


async def test_the_poll_reads_past_our_own_posts_without_publishing_them(forum):
    forum.posts.append(post(200, topic_id=40, number=9, raw="We are looking into it", username="acme_support"))
    c = connector(forum)
    mentions, cursor = await c.poll_once("106")  # a cursor saved before the re-check window: the bare id
    assert [m.raw["id"] for m in mentions] == [107] and after(cursor) == 200
    await c.close()


async def test_api_errors_are_classified(forum):
    with pytest.raises(AuthError):
        await connector(forum, key="wrong").poll_once(None)
    c = connector(forum)
    forum.fail_next = [(429, {"Retry-After": "3"})]
    with pytest.raises(RateLimited) as rl:
        await c.poll_once(None)
    assert rl.value.retry_after == 3
    forum.fail_next = [(502, {})]
    with pytest.raises(TransientError):
        await c.poll_once(None)
    check = await connector(forum, key="wrong").check()
    assert not check["ok"] and "403" in check["error"]
    assert (await c.check())["ok"]
    await c.close()


async def test_replies_private_messages_and_moderation(forum):
    c = connector(forum)
    r = await c.perform(Action(kind="public_reply", platform="discourse", target_external_id="41/2", text="Try this"))
    assert r.ok and forum.created[-1] == {"topic_id": 41, "raw": "Try this", "reply_to_post_number": 2}
    pm = await c.perform(Action(kind="private_message", platform="discourse", recipient_handle="jane_doe",
                                text="Your secure link: https://care.acme.test/s/abc"))
    assert pm.ok and forum.created[-1]["archetype"] == "private_message"
    assert forum.created[-1]["target_recipients"] == "jane_doe"
    assert not (await c.perform(Action(kind="private_message", platform="discourse", text="hi"))).ok
    assert (await c.perform(Action(kind="hide", platform="discourse", target_external_id="41/2"))).ok
    assert forum.actions[-1][:2] == ("flag", "104") and forum.actions[-1][2]["take_action"] is True
    assert (await c.perform(Action(kind="remove", platform="discourse", target_external_id="40/2"))).ok
    assert forum.actions[-1][:2] == ("delete", "101")
    assert (await c.perform(Action(kind="remove", platform="discourse", target_external_id="40/1"))).ok
    assert forum.actions[-1][:2] == ("delete_topic", "40")  # a first post goes with its topic
    missing = await c.perform(Action(kind="hide", platform="discourse", target_external_id="99/1"))
    assert not missing.ok and "404" in missing.error
    await c.close()


async def test_an_error_page_that_quotes_a_post_never_reaches_a_message_or_a_log(forum, waits, caplog):
    """A 4xx's message, which the runner logs and shows, names the status, its reason and Discourse's
    ``error_type``, never the body: an error page may echo a post's words."""
    secret = "My card is 4111 1111 1111 1111"
    c = connector(forum)
    forum.fail_on["POST /posts.json"] = [(422, {}, json.dumps({"errors": [f"Body is invalid: {secret}"],
                                                               "error_type": "invalid_parameters"}))]
    r = await c.perform(Action(kind="public_reply", platform="discourse", target_external_id="41/2", text=secret))
    assert not r.ok and r.error.startswith("Discourse answered 422 Unprocessable ")  # Entity, or Content (3.13)
    assert r.error.endswith(" (invalid_parameters) on /posts.json") and "4111" not in r.error
    forum.fail_on["GET /posts.json"] = [(400, {}, f"<html><p>{secret}</p></html>")]
    with pytest.raises(DiscourseHTTPError) as err:
        await c.poll_once(None)
    assert err.value.status == 400 and str(err.value) == "Discourse answered 400 Bad Request on /posts.json"
    forum.fail_on["GET /posts.json"] = [(409, {}, json.dumps({"error_type": secret}))]  # not an identifier
    store, stop = MemoryCursorStore(), asyncio.Event()

    async def publish(batch):
        stop.set()

    status = await asyncio.wait_for(run_connector(c, publish, store, stop, backoff_base=0.01), 30)
    assert status.last_error is None and len(waits) == 1  # backed off once, then polled
    logged = [r.getMessage() for r in caplog.records]
    assert any("409 Conflict on /posts.json" in line for line in logged)
    assert not any("4111" in line for line in logged)
    await c.close()


# --- bad input: refused with a 4xx naming the field, never a 500, never accepted and lost -----------


async def send_raw(client, event, raw: bytes):
    import hashlib
    import hmac

    _, headers = webhook_request(event, {}, SECRET)
    headers["X-Discourse-Event-Signature"] = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return await client.post(webhook.PATH, data=raw, headers=headers)


async def test_deeply_nested_json_is_a_400_not_a_500(hook):
    for raw in (b"[" * 950 + b"]" * 950, b'{"post":' * 950 + b"1" + b"}" * 950, b"[" * 50_000 + b"]" * 50_000):
        resp = await send_raw(hook, "post_created", raw)
        assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    assert hook.published == []


async def test_ids_that_are_not_integers_are_refused_clearly(hook):
    import json

    body = json.dumps({"post": post(1)}).replace('"topic_id": 40', '"topic_id": 1e400').encode()
    resp = await send_raw(hook, "post_created", body)
    assert resp.status == 400 and any("post.topic_id" in p for p in (await resp.json())["problems"])
    for field, value in [("topic_id", True), ("topic_id", 2**70), ("topic_id", 4.5), ("topic_id", "40"),
                         ("post_number", -1), ("post_number", None), ("reply_to_post_number", "x"),
                         ("user_id", {"a": 1})]:
        resp = await send(hook, "post_created", {"post": {**post(1), field: value}})
        body = await resp.json()
        assert resp.status == 400 and any(f"post.{field}" in p for p in body["problems"]), (field, value, body)
    assert hook.published == []


async def test_times_out_of_range_are_refused_naming_the_field(hook):
    for value in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 12):
        resp = await send(hook, "post_created", {"post": post(1, created_at=value)})
        assert resp.status == 400 and any("post.created_at" in p for p in (await resp.json())["problems"]), value
        resp = await send(hook, "post_edited", {"post": post(1, updated_at=value)})
        assert resp.status == 400 and any("post.updated_at" in p for p in (await resp.json())["problems"]), value
    assert hook.published == []


async def test_strings_of_the_wrong_type_or_that_a_database_refuses_are_refused_before_publishing(hook):
    for field, value in [("username", {"a": 1}), ("username", "\ud800"), ("name", ["x"]), ("raw", "nul\x00"),
                         ("topic_title", 5), ("category_slug", "\udc00"), ("topic_slug", ["s"])]:
        resp = await send(hook, "post_created", {"post": {**post(1), field: value}})
        body = await resp.json()
        assert resp.status == 400 and any(f"post.{field}" in p for p in body["problems"]), (field, value, body)
    assert hook.published == []


# --- a deleted post recovered by its author or a moderator ------------------------------------------


async def test_a_recovered_post_is_published_as_a_restore_with_its_words(hook):
    """Discourse sends ``post_recovered`` (``X-Discourse-Event-Type: post``) with the post itself as
    its body, like ``post_edited``; our own recovered reply is ignored like our other posts."""
    reply = post(102, number=2, raw="same here", username="bob", updated_at="2026-11-20T11:00:00.000Z")
    resp = await send(hook, "post_recovered", {"post": reply})
    assert resp.status == 202 and await resp.json() == {"accepted": 1, "event": "post_recovered", "external_id": "40/2"}
    (back,) = hook.published
    assert (back.event, back.text, back.in_reply_to, back.edited_at.hour) == ("restore", "same here", "40/1", 11)
    ours = await send(hook, "post_recovered", {"post": post(301, number=3, username="acme_support")})
    assert ours.status == 200 and (await ours.json())["accepted"] == 0 and len(hook.published) == 1


async def test_a_post_its_author_deleted_then_recovered_is_stored_shown_and_triaged_again(hook, db):
    """Discourse replaces the words of a post its author deletes (an edit), then deletes it; recovering
    puts the words back (another edit) and sends ``post_recovered``. Each delivery goes through the
    ingest stage as the bus would carry it."""
    from sqlalchemy import select

    from models import Mention
    from service.bus import Envelope
    from service.pipeline import ingest_key
    from service.stages.base import StageContext
    from service.stages.ingest import IngestStage

    words = post(103, number=3, raw="the app logs me out every hour")
    withdrawn = {**words, "raw": "(post withdrawn by author, will be automatically deleted in 24 hours unless "
                                 "flagged)", "updated_at": "2026-11-20T09:00:00.000Z"}
    back = {**words, "updated_at": "2026-11-20T10:00:00.000Z"}
    for event, body in [("post_created", words), ("post_edited", withdrawn),
                        ("post_destroyed", {**withdrawn, "user_deleted": True}), ("post_edited", back),
                        ("post_recovered", back)]:
        assert (await send(hook, event, {"post": body})).status == 202
    stage = IngestStage(StageContext(settings=None, db=db))
    triaged = []
    for n, m in enumerate(hook.published):
        env = Envelope(id=str(n), topic="ingest", key=ingest_key(m), payload={"mention": m.to_dict()})
        triaged.append([o.key for o in await stage.handle([env])])
    async with db.session() as s:
        row = await s.scalar(select(Mention).where(Mention.external_id == "40/3"))
    assert (row.deleted, row.hidden, row.text) == (False, False, "the app logs me out every hour")
    created, edited, deleted, edited_while_deleted, recovered = triaged
    assert created == [f"m:{row.id}"] and deleted == [] and recovered[0].startswith(f"m:{row.id}:edit:")
    assert recovered[0] != edited_while_deleted[0]  # its own message: triage skips a deleted post's edit


async def test_the_body_is_read_as_json_whatever_content_type_the_webhook_was_given(hook):
    """Discourse's "application/x-www-form-urlencoded" webhooks send the same JSON body (only the
    header differs); a body that is not JSON is refused as malformed, whatever its header says."""
    raw, headers = webhook_request("post_recovered", {"post": post(104, number=4)}, SECRET)
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    resp = await hook.post(webhook.PATH, data=raw, headers=form)
    assert resp.status == 202 and hook.published[-1].event == "restore"
    resp = await send_raw(hook, "post_recovered", b"payload=%7B%22post%22%3A%7B%7D%7D")
    assert resp.status == 400 and (await resp.json())["error"] == "malformed JSON"
