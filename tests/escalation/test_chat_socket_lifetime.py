"""A chat socket is no way around the checks made when it opened: the customer's stops with its
session (signed out, expired, revoked elsewhere), never learns the agent's user name; an agent's
stops with their sign-in (signed out, disabled, no longer an agent), and their reading of a case
over it is audited like the page."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import WSMsgType
from escalation_support import MARIA_MAIL, ask_code, csrf_of, enter_code, new_client, next_of, start
from sqlalchemy import select, update

from console.auth import end_sessions
from console.secure import ESCALATION
from models import AuditEvent, CaseMessage, CustomerSession, User
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


async def _agent_watching(world, smtp_sink):
    """A verified customer's socket and alice's on one case: (case id, customer ws, alice, her ws)."""
    case_id = await _verified_customer(world, smtp_sink)
    customer_ws = await world.client.ws_connect("/secure/ws")
    await next_of(customer_ws, "history")
    alice = await _agent(world)
    agent_ws = await alice.ws_connect(f"/cases/{case_id}/ws")
    await next_of(agent_ws, "history")
    return case_id, customer_ws, alice, agent_ws


async def _change_alice(world, **values) -> None:
    """What another process does (the CLI, another web worker): this one's hub is not told."""
    async with world.rt.db.session() as s:
        uid = await s.scalar(select(User.id).where(User.username == "alice"))
        if values.pop("sign_out", False):
            await end_sessions(s, uid)
        if values:
            await s.execute(update(User).where(User.id == uid).values(**values))
        await s.commit()


async def test_an_agent_signed_out_elsewhere_cannot_write_over_the_socket_left_open(world, smtp_sink):
    _, customer_ws, alice, agent_ws = await _agent_watching(world, smtp_sink)
    try:
        await _change_alice(world, sign_out=True)
        await agent_ws.send_json({"body": "written after signing out", "ref": "m1"})
        assert await _until_closed(agent_ws) == [{"type": "closed"}]
        async with world.rt.db.session() as s:
            assert not list(await s.scalars(select(CaseMessage).where(CaseMessage.sender == "agent")))
    finally:
        await customer_ws.close()
        await alice.close()


async def test_a_disabled_agent_is_hung_up_before_the_customers_next_message_reaches_them(world, smtp_sink):
    _, customer_ws, alice, agent_ws = await _agent_watching(world, smtp_sink)
    try:
        await _change_alice(world, sign_out=True, active=False)
        await customer_ws.send_json({"body": "my new card number is on its way?"})
        await next_of(customer_ws, "message", sender="customer")  # published by now
        assert await _until_closed(agent_ws) == [{"type": "closed"}]
    finally:
        await customer_ws.close()
        await alice.close()


async def test_the_sweep_hangs_up_an_idle_agent_who_is_no_longer_an_agent(world, smtp_sink):
    case_id, customer_ws, alice, agent_ws = await _agent_watching(world, smtp_sink)
    bob = await _agent(world, "bob")
    try:
        bob_ws = await bob.ws_connect(f"/cases/{case_id}/ws")
        await next_of(bob_ws, "history")
        await _change_alice(world, role="moderator")  # in SQL: not even the epoch says so
        await world.client.server.app[ESCALATION].hub.sweep()
        assert await _until_closed(agent_ws) == [{"type": "closed"}]
        await customer_ws.send_json({"body": "still there?"})  # bob and the customer stay connected
        assert (await next_of(bob_ws, "message", sender="customer"))["message"]["body"] == "still there?"
        await bob_ws.close()
    finally:
        await customer_ws.close()
        await alice.close()
        await bob.close()


async def test_signing_out_hangs_up_the_agents_open_case_chats_at_once(world, smtp_sink):
    _, customer_ws, alice, agent_ws = await _agent_watching(world, smtp_sink)
    try:
        csrf = csrf_of(await (await alice.get("/cases")).text())
        assert (await alice.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)).status == 302
        assert await _until_closed(agent_ws) == [{"type": "closed"}]
    finally:
        await customer_ws.close()
        await alice.close()
