"""A chat socket is no way around the checks made when it opened: the customer's stops with its
session (signed out, expired, revoked elsewhere), never learns the agent's user name, and an agent's
reading of a case over it is audited like the page."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import WSMsgType
from escalation_support import MARIA_MAIL, ask_code, csrf_of, enter_code, new_client, next_of, start
from sqlalchemy import select, update

from console.secure import ESCALATION
from models import AuditEvent, CustomerSession
from models.base import utcnow


async def _verified_customer(world, smtp_sink) -> int:
    case_id, path = await world.case("maria_music3")
    await start(world.client, path)
    await ask_code(world.client)
    assert (await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))).status == 303
    return case_id


async def _agent(world, name: str = "alice"):
    agent = await new_client(world)
    assert (await agent.post("/login", data={"username": name, "password": "correct horse battery"},
                             allow_redirects=False)).status == 302
    return agent


async def _until_closed(ws, timeout: float = 5.0) -> list[dict]:
    """The events a socket gets until it is closed (fails if it stays open)."""
    events = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return events
        events.append(msg.json())


async def test_an_agent_reading_a_case_over_the_socket_is_audited_first(world, smtp_sink):
    case_id = await _verified_customer(world, smtp_sink)
    bob = await _agent(world, "bob")
    try:
        ws = await bob.ws_connect(f"/cases/{case_id}/ws")
        assert (await next_of(ws, "history"))["messages"]
        async with world.rt.db.session() as s:  # committed by the time the history arrived
            views = list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "case.viewed")))
        assert [(v.actor, v.object_id) for v in views] == [("session:bob", str(case_id))]
        await ws.close()
    finally:
        await bob.close()


async def test_the_customer_is_told_a_case_was_taken_but_not_by_which_user(world, smtp_sink):
    case_id = await _verified_customer(world, smtp_sink)
    customer_ws = await world.client.ws_connect("/secure/ws")
    await next_of(customer_ws, "history")
    alice = await _agent(world)
    try:
        agent_ws = await alice.ws_connect(f"/cases/{case_id}/ws")
        await next_of(agent_ws, "history")
        page = await (await alice.get(f"/cases/{case_id}")).text()
        assert (await alice.post(f"/cases/{case_id}/take", data={"csrf_token": csrf_of(page)},
                                 allow_redirects=False)).status == 303
        assert await next_of(customer_ws, "assigned") == {"type": "assigned"}
        assert (await next_of(agent_ws, "assigned"))["agent"] == "alice"  # the console still names them
        await agent_ws.close()
    finally:
        await customer_ws.close()
        await alice.close()


async def test_signing_out_hangs_up_the_customers_open_socket(world, smtp_sink):
    await _verified_customer(world, smtp_sink)
    customer_ws = await world.client.ws_connect("/secure/ws")
    await next_of(customer_ws, "history")
    chat = await (await world.client.get("/secure/chat")).text()
    assert (await world.client.post("/secure/end", data={"csrf_token": csrf_of(chat)})).status == 200
    assert await _until_closed(customer_ws) == [{"type": "closed"}]


async def test_a_socket_whose_session_expired_or_was_revoked_elsewhere_gets_nothing_more(world, smtp_sink):
    case_id = await _verified_customer(world, smtp_sink)
    sockets = [await world.client.ws_connect("/secure/ws") for _ in range(2)]
    for ws in sockets:
        await next_of(ws, "history")
    alice = await _agent(world)
    try:
        agent_ws = await alice.ws_connect(f"/cases/{case_id}/ws")
        await next_of(agent_ws, "history")
        async with world.rt.db.session() as s:  # the session's time is up
            await s.execute(update(CustomerSession).where(CustomerSession.case_id == case_id)
                            .values(expires_at=utcnow() - timedelta(seconds=1)))
            await s.commit()
        await agent_ws.send_json({"body": "Your temporary password is in your e-mail."})
        await next_of(agent_ws, "sent")
        for ws in sockets:
            assert await _until_closed(ws) == [{"type": "closed"}]
        await agent_ws.close()
    finally:
        await alice.close()


async def test_the_sweep_hangs_up_a_socket_revoked_by_another_process(world, smtp_sink):
    case_id = await _verified_customer(world, smtp_sink)
    ws = await world.client.ws_connect("/secure/ws")
    await next_of(ws, "history")
    async with world.rt.db.session() as s:  # as an erasure run by the CLI does
        await s.execute(update(CustomerSession).where(CustomerSession.case_id == case_id)
                        .values(revoked_at=utcnow(), customer_id=None))
        await s.commit()
    await world.client.server.app[ESCALATION].hub.sweep()
    assert await _until_closed(ws) == [{"type": "closed"}]
