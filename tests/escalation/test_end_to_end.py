"""The whole flow through the real pipeline: a public mention about a hijacked account → triage →
route → act opens the case, posts the detail-free notice and DMs the secure link on X (the real X
connector against a local fake of the X API) → the customer opens the link, gets a code by e-mail
(local SMTP sink), verifies → chats with the agent over websockets → the agent resolves and
returns the customer to the community."""

from __future__ import annotations

import importlib.util
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from escalation_support import ask_code, csrf_of, enter_code, escalation_settings, next_of, start
from sqlalchemy import select

from escalation import sla
from escalation.handoff import PUBLIC_CLOSING_NOTE
from listener.protocol import NormalizedMention
from models import Case, CaseMessage, Reply, SecureLink, SlaBreach

FAKES = Path(__file__).resolve().parents[1] / "listener" / "fakes" / "x_api.py"
MARIA = {"author_id": "4000000003", "author_handle": "maria_music3", "author_name": "Maria"}
NOTICE = "We've sent you a secure link by DM — please don't share account details here."


def load_fake_x():
    spec = importlib.util.spec_from_file_location("escalation_fake_x_api", FAKES)
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.FakeX


@pytest.fixture
async def fake_x():
    x = load_fake_x()()
    server = TestServer(x.app(), host="127.0.0.1")
    await server.start_server()
    x.base = str(server.make_url("")).rstrip("/")
    yield x
    await server.close()


def tweet(external_id: str, text: str, **author: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=external_id, text=text, created_at=datetime.now(UTC),
                             conversation_id=external_id, url=f"https://x.com/{author['author_handle']}/status/{external_id}",
                             lang="en", kind="post", is_public=True, channel="@AcmeHelp", **author)


@pytest.mark.timeout(300)
async def test_a_hijacked_account_goes_private_is_verified_chats_and_is_resolved(tmp_path, sqlite_url, smtp_sink,
                                                                                 fake_x, triager):
    from console.app import create_app
    from console.auth import create_user
    from escalation.customers import link_identity
    from listener.x.connector import XConnector
    from models import Customer
    from service.runtime import Runtime
    from service.seed import seed_demo

    settings = escalation_settings(tmp_path, sqlite_url, smtp_sink.port, dry_run=False, x_api_base=fake_x.base,
                                   x_user_id="99", x_bearer_token="test", x_api_key="k", x_api_secret="s",
                                   x_access_token="t", x_access_secret="a")
    rt = await Runtime.open(settings, triager=triager, with_connectors=False)
    client = agent = None
    try:
        await seed_demo(rt.db)
        async with rt.db.session() as s:
            await create_user(s, "alice", "correct horse battery", "agent")
            maria = Customer(external_ref="C-E2E", name="Maria Lopez", email="maria.lopez@example.com", plan="premium")
            s.add(maria)
            await s.flush()
            await link_identity(s, maria.id, "x", MARIA["author_handle"])
            await s.commit()
        await rt.start()
        x = XConnector(settings)  # outbound only: the mentions come in through the bus, as a listener's would
        rt.pipeline.ctx.connectors["x"] = x
        rt.connectors.append(x)

        # 1. the public mention, and a second one about the same problem
        await rt.submit([tweet("1870000000000000001", "@AcmeHelp my account was hijacked, someone changed my "
                               "password and email and they're messaging my friends", **MARIA)])
        await rt.pipeline.wait_idle(timeout=120)
        await rt.submit([tweet("1870000000000000002", "@AcmeHelp still locked out of my hacked account, "
                               "please help asap", **MARIA)])
        await rt.pipeline.wait_idle(timeout=120)
        async with rt.db.session() as s:
            cases = list(await s.scalars(select(Case)))
            assert len(cases) == 1, "the second mention joins the open case"
            case = cases[0]
            assert case.category == "security" and case.customer_id is not None and not case.identity_pending
            assert len(list(await s.scalars(select(CaseMessage).where(CaseMessage.case_id == case.id)))) == 2
            replies = list(await s.scalars(select(Reply).where(Reply.case_id == case.id)))
        case_id = case.id

        # 2. public notices without detail, one DM with the link, all really sent through X
        assert [p["text"] for p in fake_x.posted] == [NOTICE, NOTICE]
        assert len(fake_x.dms) == 1 and fake_x.dms[0]["to"] == MARIA["author_id"]
        link = re.search(r"https://care\.example\.com(/secure/[A-Za-z0-9_-]+)", fake_x.dms[0]["text"])
        assert link, fake_x.dms[0]["text"]
        assert sorted((r.visibility, r.status) for r in replies) == [("private", "sent"), ("public", "sent"),
                                                                     ("public", "sent")]
        # the token lives on only as a hash; the outbox copy is scrubbed once delivered
        await sla.sweep(rt.db)
        async with rt.db.session() as s:
            dm = await s.scalar(select(Reply).where(Reply.kind == "secure_link_dm"))
            stored = await s.scalar(select(SecureLink.token_hash).where(SecureLink.case_id == case_id))
        token = link.group(1).rsplit("/", 1)[1]
        assert token not in dm.text and "/secure/" not in dm.text.replace("[secure link", "")
        assert stored != token and len(stored) == 64

        # 3-4. the customer opens the link and verifies with the code e-mailed to the address on record
        client = TestClient(TestServer(create_app(rt)))
        await client.start_server()
        assert (await start(client, link.group(1))).url.path == "/secure/verify"
        await ask_code(client)
        code = await smtp_sink.code_for("maria.lopez@example.com")
        assert (await enter_code(client, code)).headers["Location"] == "/secure/chat"

        # 5. the chat, live, with the customer record on the agent's side only
        agent = TestClient(client.server)
        await agent.start_server()
        await agent.post("/login", data={"username": "alice", "password": "correct horse battery"})
        page = await (await agent.get(f"/cases/{case_id}")).text()
        assert "Maria Lopez" in page and "maria.lopez@example.com" in page
        customer_ws = await client.ws_connect("/secure/ws")
        agent_ws = await agent.ws_connect(f"/cases/{case_id}/ws")
        await next_of(customer_ws, "history")
        await next_of(agent_ws, "history")
        await agent_ws.send_json({"body": "Hi Maria, I've secured your account. Did you add a new device today?"})
        assert "secured your account" in (await next_of(customer_ws, "message", "agent"))["message"]["body"]
        await customer_ws.send_json({"body": "No, that wasn't me."})
        assert (await next_of(agent_ws, "message", "customer"))["message"]["body"] == "No, that wasn't me."

        # 6. resolved, and back to the community with a closing note that says nothing about the case
        r = await agent.post(f"/cases/{case_id}/resolve", data={"csrf_token": csrf_of(page), "return_to_community": "1"})
        assert r.status == 200
        await next_of(customer_ws, "closed")
        await customer_ws.close()
        await agent_ws.close()
        assert fake_x.posted[-1]["text"] == PUBLIC_CLOSING_NOTE
        assert fake_x.posted[-1]["reply"]["in_reply_to_tweet_id"] == "1870000000000000001"
        await sla.sweep(rt.db)
        async with rt.db.session() as s:
            case = await s.get(Case, case_id)
            assert case.status == "resolved" and case.first_response_at is not None
            assert list(await s.scalars(select(SlaBreach))) == []  # answered and resolved in time
        assert (await client.get("/secure/chat")).status == 403
    finally:
        for c in (agent, client):
            if c is not None:
                await c.close()
        await rt.close()
