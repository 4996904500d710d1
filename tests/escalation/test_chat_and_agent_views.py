"""The 1:1 chat over real websockets, what the agent sees (and the customer does not), audits of
record views, resolution and the return to the community."""

from __future__ import annotations

import re
from datetime import UTC

from escalation_support import MARIA_MAIL, ask_code, csrf_of, enter_code, new_client, next_of, start
from sqlalchemy import select

from models import AuditEvent, Case, CaseMessage, Reply

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def verified(world, smtp_sink, handle="maria_music3", text="my account was hacked", client=None):
    client = client or world.client
    case_id, path = await world.case(handle, text=text)
    await start(client, path)
    await ask_code(client)
    code = await smtp_sink.code_for(MARIA_MAIL, nth=len(smtp_sink.to(MARIA_MAIL)) + 1)
    assert (await enter_code(client, code)).status == 303
    return case_id


async def test_customer_and_agent_chat_live_with_history_and_first_response_time(world, smtp_sink):
    case_id = await verified(world, smtp_sink)
    agent = await new_client(world)
    try:
        r = await agent.post("/login", data={"username": "alice", "password": "correct horse battery"},
                             allow_redirects=False)
        assert r.status == 302
        customer_ws = await world.client.ws_connect("/secure/ws")
        history = await next_of(customer_ws, "history")
        assert [m["sender"] for m in history["messages"]] == ["customer", "system"]  # their post, then "verified"
        agent_ws = await agent.ws_connect(f"/cases/{case_id}/ws")
        await next_of(agent_ws, "history")
        await customer_ws.send_json({"body": "Hello, I can't log in since yesterday"})
        got = await next_of(agent_ws, "message", sender="customer")
        assert got["message"]["body"] == "Hello, I can't log in since yesterday" and got["message"]["sender"] == "customer"
        await agent_ws.send_json({"body": "Hi! I've locked the account; let's reset it together."})
        reply = await next_of(customer_ws, "message", sender="agent")
        assert reply["message"]["sender"] == "agent" and "locked the account" in reply["message"]["body"]
        # a reconnecting customer gets the whole conversation back
        again = await world.client.ws_connect("/secure/ws")
        bodies = [m["body"] for m in (await next_of(again, "history"))["messages"]]
        assert bodies[-2:] == ["Hello, I can't log in since yesterday",
                               "Hi! I've locked the account; let's reset it together."]
        for ws in (customer_ws, agent_ws, again):
            await ws.close()
    finally:
        await agent.close()
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        assert case.first_response_at is not None and case.assigned_to is not None  # the writing agent took it


async def test_only_the_assigned_agent_writes_in_a_case(world, smtp_sink):
    case_id = await verified(world, smtp_sink)
    alice, bob = await new_client(world), await new_client(world)
    try:
        for c, name in ((alice, "alice"), (bob, "bob")):
            await c.post("/login", data={"username": name, "password": "correct horse battery"})
        a = await alice.ws_connect(f"/cases/{case_id}/ws")
        await a.send_json({"body": "I'm on it."})
        await next_of(a, "message")
        b = await bob.ws_connect(f"/cases/{case_id}/ws")
        await b.send_json({"body": "me too"})
        assert "another agent" in (await next_of(b, "error"))["error"]
        await a.close()
        await b.close()
    finally:
        await alice.close()
        await bob.close()
    async with world.rt.db.session() as s:
        bodies = list(await s.scalars(select(CaseMessage.body).where(CaseMessage.case_id == case_id)))
    assert "me too" not in bodies and "I'm on it." in bodies


async def test_script_in_a_chat_message_is_inert_in_the_agent_view(world, smtp_sink):
    case_id = await verified(world, smtp_sink)
    ws = await world.client.ws_connect("/secure/ws")
    await next_of(ws, "history")
    await ws.send_json({"body": XSS})
    assert (await next_of(ws, "message"))["message"]["body"] == XSS  # stored and sent as plain text
    await ws.close()
    agent = await new_client(world)
    try:
        await agent.post("/login", data={"username": "alice", "password": "correct horse battery"})
        page = await agent.get(f"/cases/{case_id}")
        html = await page.text()
        assert page.status == 200
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        js = await (await agent.get("/static/chat.js")).text()
        assert "innerHTML" not in js and "textContent = message.body" in js  # live messages stay text too
    finally:
        await agent.close()


async def test_a_verified_customer_cannot_reach_another_case_by_id(world, smtp_sink):
    maria_case = await verified(world, smtp_sink)
    other_case, _ = await world.case("someone_else", text="SECRET-OTHER-CASE text")
    for path in (f"/cases/{other_case}", f"/cases/{maria_case}", f"/cases/{other_case}/ws",
                 f"/secure/chat?case_id={other_case}", f"/secure/chat?case={other_case}"):
        r = await world.client.get(path, allow_redirects=False)
        body = await r.text()
        assert "SECRET-OTHER-CASE" not in body, path
        if path.startswith("/cases/"):
            assert r.status == 302 and r.headers["Location"].startswith("/login")  # not a staff session
    ws = await world.client.ws_connect(f"/secure/ws?case_id={other_case}")
    history = await next_of(ws, "history")
    assert "SECRET-OTHER-CASE" not in str(history)
    await ws.close()
    r = await world.client.post(f"/cases/{other_case}/resolve", data={}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    async with world.rt.db.session() as s:
        assert (await s.get(Case, other_case)).status == "open"


async def test_the_agent_sees_the_record_and_recent_cases_and_each_view_is_audited(world, smtp_sink):
    old_case = await verified(world, smtp_sink, text="older problem")
    async with world.rt.db.session() as s:
        from escalation.cases import resolve

        await resolve(s, await s.get(Case, old_case), "test")
        await s.commit()
    case_id, _ = await world.case("maria_music3", text="new problem")
    await world.login("alice")
    html = await (await world.client.get(f"/cases/{case_id}")).text()
    assert "Maria Lopez" in html and MARIA_MAIL in html and f'href="/cases/{old_case}"' in html
    async with world.rt.db.session() as s:
        views = list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "customer.viewed")))
    assert [(v.actor, v.object_id, v.reason) for v in views] == [("session:alice", str(world.maria), f"case {case_id}")]
    # outside a case the agent has to say why
    form = await world.client.get(f"/customers/{world.tom}")
    assert "Tom Reid" not in await form.text()
    short = await world.client.post(f"/customers/{world.tom}", data={"csrf_token": csrf_of(await form.text()),
                                                                    "reason": "curious"})
    assert short.status == 400 and "Tom Reid" not in await short.text()
    ok = await world.client.post(f"/customers/{world.tom}", data={"csrf_token": csrf_of(await form.text()),
                                                                 "reason": "chargeback query from the bank"})
    assert "Tom Reid" in await ok.text()
    async with world.rt.db.session() as s:
        views = list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "customer.viewed",
                                                              AuditEvent.object_id == str(world.tom))))
    assert [v.reason for v in views] == ["chargeback query from the bank"]


async def test_resolving_returns_the_customer_to_the_community_without_detail(world, smtp_sink):
    case_id = await verified(world, smtp_sink, text="card 4111 1111 1111 1111 was charged by someone")
    ws = await world.client.ws_connect("/secure/ws")
    await next_of(ws, "history")
    await world.login("alice")  # the same browser now also has a staff session: the two are separate
    page = await world.client.get(f"/cases/{case_id}")
    r = await world.client.post(f"/cases/{case_id}/resolve", data={"csrf_token": csrf_of(await page.text()),
                                                                    "return_to_community": "1"})
    assert r.status == 200
    assert (await next_of(ws, "closed"))["type"] == "closed"
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        notes = list(await s.scalars(select(Reply).where(Reply.case_id == case_id, Reply.kind == "case_closed")))
    assert case.status == "resolved" and case.resolved_at is not None
    assert len(notes) == 1 and notes[0].visibility == "public" and notes[0].status == "dry_run"
    assert not re.search(r"\d{4}", notes[0].text) and "charged" not in notes[0].text
    assert (await world.client.get("/secure/chat")).status == 403


async def test_one_click_moves_a_public_mention_private(world):
    from datetime import datetime

    from models import Author, Mention, TriageResult

    async with world.rt.db.session() as s:
        author = Author(platform="x", author_key="777", platform_user_id="777", handle="pat")
        s.add(author)
        await s.flush()
        mention = Mention(platform="x", external_id="9001", author_id=author.id, is_public=True,
                          text="why is my refund late? my email is pat@example.com",
                          created_at=datetime.now(UTC), content_hash="p1")
        s.add(mention)
        await s.flush()
        s.add(TriageResult(mention_id=mention.id, model_version="t", sentiment="negative", sensitivity="account",
                           escalate=False, issue_type="billing", toxicity="not_offensive", spam="ham",
                           pii_exposed=True, priority=50, scores={}))
        await s.commit()
        mention_id = mention.id
    await world.login("alice")
    page = await world.client.get("/cases")
    r = await world.client.post("/cases/escalate", data={"csrf_token": csrf_of(await page.text()),
                                                         "mention_id": str(mention_id)}, allow_redirects=False)
    assert r.status == 303
    case_id = int(r.headers["Location"].rsplit("/", 1)[1])
    async with world.rt.db.session() as s:
        replies = list(await s.scalars(select(Reply).where(Reply.case_id == case_id)))
        hidden = (await s.get(Mention, mention_id)).hidden
        case = await s.get(Case, case_id)
    assert hidden and case.category == "agent" and case.identity_pending
    assert sorted((r.visibility, r.kind) for r in replies) == [("private", "secure_link_dm"), ("public", "secure_link")]
    public = next(r for r in replies if r.visibility == "public")
    assert "pat@example.com" not in public.text and "refund" not in public.text
    # a second click changes nothing
    again = await world.client.post("/cases/escalate", data={"csrf_token": csrf_of(await page.text()),
                                                             "mention_id": str(mention_id)}, allow_redirects=False)
    assert again.headers["Location"] == f"/cases/{case_id}"
    async with world.rt.db.session() as s:
        assert len(list(await s.scalars(select(Reply).where(Reply.case_id == case_id)))) == 2


