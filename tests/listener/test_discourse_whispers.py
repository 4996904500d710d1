"""Discourse staff whispers (``post_type`` 4): webhooks send them (the payload is serialized as the
system user, who sees them) though only staff see them on the forum, so they are never stored as
public posts; a public post a moderator turns into a whisper leaves the public's sight as a
deleted one does, by webhook or by the re-check. Through the real ingest path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from listener.discourse import webhook
from listener.discourse.connector import DiscourseConnector
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, WHISPER, FakeDiscourse, post, webhook_request
from .ingest_path import Pipeline

SECRET = "wh-secret-for-tests"
NOTE = "internal: this customer is on the refund watch list, do not promise anything"


async def start(db=None):
    published: list = []

    async def publish(batch):
        published.extend(batch)

    settings = load_settings(discourse_url="https://forum.acme.test", discourse_webhook_secret=SECRET,
                             discourse_api_username="acme_support")
    app = web.Application()
    app.router.add_routes(webhook.routes(settings, publish, db=db))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.published = published
    return client


@pytest.fixture
async def hook():
    client = await start()
    yield client
    await client.close()


@pytest.fixture
async def hook_with_db(db):
    client = await start(db)
    yield client
    await client.close()


async def send(client, event, payload):
    raw, headers = webhook_request(event, payload, SECRET)
    return await client.post(webhook.PATH, data=raw, headers=headers)


async def test_a_staff_whisper_is_never_published_as_a_post(hook):
    whisper = post(110, number=4, raw=NOTE, username="mod_mia", user_id=3, post_type=WHISPER)
    for event in ("post_created", "post_recovered", "post_destroyed"):
        resp = await send(hook, event, {"post": whisper})
        assert resp.status == 200 and (await resp.json()) == {"accepted": 0,
                                                              "ignored": f"{event} of a staff whisper"}
    assert hook.published == []


async def test_a_post_turned_into_a_whisper_is_deleted_here_without_its_words(hook, db):
    pipeline = Pipeline(db)
    public = post(111, number=2, raw="I can share my order number here: 12345")
    assert (await send(hook, "post_created", {"post": public})).status == 202
    await pipeline.run(hook.published)
    turned = {**public, "post_type": WHISPER, "raw": NOTE, "cooked": f"<p>{NOTE}</p>"}  # PUT /posts/111/post_type
    assert (await send(hook, "post_edited", {"post": turned})).status == 202
    gone = hook.published[-1]
    assert (gone.external_id, gone.event, gone.text) == ("40/2", "delete", "")
    assert NOTE not in repr(gone.raw)
    assert await pipeline.run([gone]) == []  # nothing to triage
    row = (await pipeline.rows())["40/2"]
    assert row.deleted and row.hidden and NOTE not in row.text


async def test_the_recheck_deletes_a_window_post_turned_into_a_whisper(db, made):
    forum = FakeDiscourse(posts=[post(100, topic_id=40, raw="The app logs me out every hour"),
                                 post(101, topic_id=40, number=2, reply_to=1, raw="same here", username="bob",
                                      user_id=18)])
    server = await serve(forum)
    try:
        c = DiscourseConnector(load_settings(discourse_url=forum.base, discourse_api_key=API_KEY,
                                             discourse_api_username="acme_support"), recheck_seconds=0.0)
        made.append(c)
        pipeline = Pipeline(db)
        first, cursor = await c.poll_once("99")
        await pipeline.run(first)
        forum.find(40, 2).update(post_type=WHISPER, raw=NOTE, cooked=f"<p>{NOTE}</p>")  # off /posts.json now
        (gone,), cursor = await c.poll_once(cursor)  # read alone: a whisper
        assert (gone.external_id, gone.event, gone.text) == ("40/2", "delete", "")
        await pipeline.run([gone])
        assert (await pipeline.rows())["40/2"].deleted
        assert (await c.poll_once(cursor))[0] == []  # said once
        forum.find(40, 2).update(post_type=1, raw="same here", cooked="<p>same here</p>")  # turned back
        (back,), _ = await c.poll_once(cursor)
        assert (back.external_id, back.event, back.text) == ("40/2", "restore", "same here")
    finally:
        await server.close()


def now(seconds: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_a_whisper_edited_then_turned_into_a_regular_post_is_stored_shown_and_triaged(hook_with_db, db):
    """The whisper's edit publishes a deletion, kept for a post never stored; staff later turn the
    whisper into a regular post (``PUT /posts/{id}/post_type``): its edit, made after that deletion
    reached ingest, goes out as a restore, stored shown and triaged, not stored deleted."""
    hook, pipeline = hook_with_db, Pipeline(db)
    w = post(120, number=3, raw="heads up: outage fix ships tonight", username="mod_mia", user_id=3,
             post_type=WHISPER, created_at=now(-600), updated_at=now(-600))
    assert (await send(hook, "post_created", {"post": w})).status == 200  # ignored: a whisper
    edited = {**w, "raw": "heads up: the outage fix ships tonight", "updated_at": now(-300)}
    assert (await send(hook, "post_edited", {"post": edited})).status == 202
    assert [(m.external_id, m.event) for m in hook.published] == [("40/3", "delete")]
    assert await pipeline.run(hook.published) == []  # kept: a deletion of a post not stored
    assert "40/3" not in await pipeline.rows()
    text = "Update for everyone: the outage fix ships tonight"
    public = {**w, "post_type": 1, "raw": text, "cooked": f"<p>{text}</p>", "updated_at": now()}
    assert (await send(hook, "post_edited", {"post": public})).status == 202
    back = hook.published[-1]
    assert (back.external_id, back.event, back.text) == ("40/3", "restore", text)
    assert len(await pipeline.run([back])) == 1  # on to triage
    row = (await pipeline.rows())["40/3"]
    assert not row.deleted and not row.hidden and row.text == text


async def test_an_edit_older_than_the_kept_deletion_stays_an_upsert_and_is_stored_deleted(hook_with_db, db):
    """The deletion came before its post (a post_destroyed ahead of a retried post_created), then a
    retry of an edit made before that deletion: the post is not shown again."""
    hook, pipeline = hook_with_db, Pipeline(db)
    p = post(130, number=4, raw="my card is 4111 1111 1111 1111", created_at=now(-900), updated_at=now(-600))
    assert (await send(hook, "post_destroyed", {"post": {**p, "deleted_at": now(-60)}})).status == 202
    await pipeline.run(hook.published)
    assert (await send(hook, "post_edited", {"post": p})).status == 202
    stale = hook.published[-1]
    assert (stale.external_id, stale.event) == ("40/4", "upsert")
    assert await pipeline.run([stale]) == []
    row = (await pipeline.rows())["40/4"]
    assert row.deleted and row.hidden
