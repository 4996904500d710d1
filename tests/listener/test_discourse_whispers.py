"""Discourse staff whispers (``post_type`` 4): webhooks send them (the payload is serialized as the
system user, who sees them) though only staff see them on the forum, so they are never stored as
public posts; a public post a moderator turns into a whisper leaves the public's sight as a
deleted one does, by webhook or by the re-check. Through the real ingest path."""

from __future__ import annotations

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


@pytest.fixture
async def hook():
    published: list = []

    async def publish(batch):
        published.extend(batch)

    settings = load_settings(discourse_url="https://forum.acme.test", discourse_webhook_secret=SECRET,
                             discourse_api_username="acme_support")
    app = web.Application()
    app.router.add_routes(webhook.routes(settings, publish))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.published = published
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
