"""A reply whose platform call went out and got no answer in time may be on the platform already:
the dispatcher marks it ``unknown`` for an agent to check instead of ``failed`` (which invites a
resend, and a customer answered twice). Against the local fake of X, through the real connector."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from privacy_support import World, settings_for

from listener.x.connector import XConnector
from models import Reply
from service.dispatch import Dispatcher
from tests.listener.fakes.x_api import FakeX, tweet


@pytest.fixture
async def fake_x():
    x = FakeX(tweets=[tweet(1)])
    server = TestServer(x.app(), host="127.0.0.1")
    await server.start_server()
    x.base = str(server.make_url("")).rstrip("/")
    yield x
    await server.close()


async def reply_to_a_post(tmp_path, db, fake_x) -> tuple[World, Dispatcher, int]:
    settings = settings_for(tmp_path, db.url, dry_run=False, x_api_base=fake_x.base, x_bearer_token="test",
                            x_user_id="99", x_api_key="k", x_api_secret="s", x_access_token="t", x_access_secret="a")
    world = World(db, settings, {"x": XConnector(settings)})
    mid = await world.ingest(world.post("my order never arrived", author="sam", user_id="id-sam"))
    async with db.session() as s:
        reply = Reply(dedup_key=f"agent:{mid}", mention_id=mid, platform="x", kind="agent", visibility="public",
                      text="Sorry Sam, we're on it", status="pending", sent_by="alice")
        s.add(reply)
        await s.commit()
    return world, Dispatcher(db, world.connectors, dry_run=False), reply.id


async def test_a_reply_x_took_but_never_answered_for_is_unknown_not_failed(tmp_path, db, fake_x, monkeypatch):
    monkeypatch.setattr("listener.x.actions.TIMEOUT", (2.0, 0.5))
    world, dispatcher, reply_id = await reply_to_a_post(tmp_path, db, fake_x)
    fake_x.stall_posts = 1  # X posts it, and its answer never comes in time
    await dispatcher.deliver([reply_id])
    async with db.session() as s:
        reply = await s.get(Reply, reply_id)
    assert reply.status == "unknown" and "check the platform" in reply.error
    assert len(fake_x.posted) == 1
    await dispatcher.deliver([reply_id])  # delivered again (a retry, another process): never posted twice
    assert len(fake_x.posted) == 1


async def test_a_reply_x_refused_is_failed(tmp_path, db, fake_x):
    world, dispatcher, reply_id = await reply_to_a_post(tmp_path, db, fake_x)
    fake_x.fail_next = [(503, {})]
    await dispatcher.deliver([reply_id])
    async with db.session() as s:
        reply = await s.get(Reply, reply_id)
    assert reply.status == "failed" and fake_x.posted == []
