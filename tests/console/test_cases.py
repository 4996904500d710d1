"""Private cases in the console: no agent silently takes another's case, and cases, their
conversation and their author link to each other."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import AuditEvent, Case, User
from tests.console.conftest import add_mention, login

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def _case(runtime, text: str, *, handle: str = "erin", assigned_to: str | None = None) -> tuple[int, int]:
    m = await add_mention(runtime, text, handle=handle, outcome="escalate_private", sensitivity="account",
                          pii=[{"type": "email", "start": text.find("erin@"), "end": text.find("erin@") + 17}]
                          if "erin@" in text else None)
    async with runtime.db.session() as s:
        owner = await s.scalar(select(User.id).where(User.username == assigned_to)) if assigned_to else None
        case = Case(conversation_id=m.conversation_id, author_id=m.author_id, opened_by_mention_id=m.id,
                    category="account", assigned_to=owner)
        s.add(case)
        await s.commit()
        return case.id, m.conversation_id


async def test_taking_a_case_another_agent_holds_is_an_explicit_audited_take_over(app_client, second_browser,
                                                                                  runtime):
    case_id, _ = await _case(runtime, "locked out of my account", assigned_to="alice")
    bob_csrf = await login(second_browser, "bob")
    page = await (await second_browser.get(f"/cases/{case_id}")).text()
    assert "Take over from <bdi>alice</bdi>" in page and "Take this case" not in page
    r = await second_browser.post(f"/cases/{case_id}/take", data={"csrf_token": bob_csrf}, allow_redirects=False)
    assert r.status == 409 and "alice is assigned to this case; take it over to work on it." in await r.text()
    r = await second_browser.post(f"/cases/{case_id}/take", data={"csrf_token": bob_csrf}, headers=HTML,
                                  allow_redirects=False)  # a browser is sent back to the case with the message
    assert r.status == 303 and r.headers["Location"] == f"/cases/{case_id}"
    assert "alice is assigned to this case" in await (await second_browser.get(f"/cases/{case_id}")).text()
    async with runtime.db.session() as s:
        assert (await s.get(Case, case_id)).assigned_to == await s.scalar(
            select(User.id).where(User.username == "alice"))
    r = await second_browser.post(f"/cases/{case_id}/take", data={"csrf_token": bob_csrf, "force": "1"},
                                  allow_redirects=False)
    assert r.status == 303
    async with runtime.db.session() as s:
        ids = dict((await s.execute(select(User.username, User.id))).all())
        assert (await s.get(Case, case_id)).assigned_to == ids["bob"]
        over = await s.scalar(select(AuditEvent).where(AuditEvent.action == "case.taken_over"))
    assert over.actor == "session:bob" and over.object_id == str(case_id)
    assert over.details["from_user_id"] == ids["alice"] and over.details["user_id"] == ids["bob"]


async def test_the_agent_whose_case_was_taken_is_told_and_learns_which_message_was_refused(app_client, second_browser,
                                                                                          runtime):
    case_id, _ = await _case(runtime, "someone changed my e-mail", assigned_to="alice")
    await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    ws = await app_client.ws_connect(f"/cases/{case_id}/ws")
    assert (await ws.receive_json())["type"] == "history"
    await ws.send_json({"body": "Hi, I'm on it", "ref": "m1-1"})
    acks = [await ws.receive_json() for _ in range(2)]
    assert {"type": "sent", "ref": "m1-1"}.items() <= next(a for a in acks if a["type"] == "sent").items()
    await second_browser.post(f"/cases/{case_id}/take", data={"csrf_token": bob_csrf, "force": "1"})
    assert await ws.receive_json() == {"type": "assigned", "agent": "bob"}
    await ws.send_json({"body": "Let me check the logs", "ref": "m2-1"})
    refused = await ws.receive_json()
    assert refused == {"type": "error", "error": "another agent is assigned to this case", "ref": "m2-1"}
    await ws.close()


async def test_cases_name_their_author_show_a_redacted_opening_and_link_to_their_conversation(app_client, runtime):
    case_id, cid = await _case(runtime, "please reset it, write to erin@example.com asap", handle="erin_t")
    await login(app_client, "alice")
    listing = await (await app_client.get("/cases")).text()
    row = re.search(rf'<tr data-case-id="{case_id}".*?</tr>', listing, re.DOTALL).group(0)
    assert "<bdi>erin_t</bdi> on x" in row and "please reset it, write to" in row
    assert "erin@example.com" not in listing  # redacted as everywhere
    assert f'href="/conversations/{cid}"' in row
    page = await (await app_client.get(f"/cases/{case_id}")).text()
    assert re.search(rf'href="/conversations/{cid}\?mention=\d+">conversation {cid}</a>', page)
    assert "erin@example.com" not in page
    conversation = await (await app_client.get(f"/conversations/{cid}")).text()
    assert f'<a href="/cases/{case_id}">Case #{case_id} · account · open</a>' in conversation


async def test_each_case_message_says_when_and_where_it_was_written_and_the_links_their_state(app_client, runtime):
    """A case's customer lines may be public posts under another handle, on another channel: each
    says its channel (a link to a public post), its time, and the case says what its secure links
    became, without ever showing one."""
    from datetime import UTC, datetime, timedelta

    from escalation import chat
    from escalation.links import issue_secure_link, start_session
    from models import CaseMessage

    case_id, _ = await _case(runtime, "locked out of my account", handle="erin")
    posted = datetime(2026, 11, 20, 14, 7, tzinfo=UTC)
    reddit = await add_mention(runtime, "still locked out, anyone?", platform="reddit", handle="erin_alt",
                               outcome="escalate_private", created_at=posted)
    settings = runtime.settings
    async with runtime.db.session() as s:
        case = await s.get(Case, case_id)
        s.add(CaseMessage(case_id=case_id, sender="customer", mention_id=case.opened_by_mention_id,
                          body="locked out of my account"))
        s.add(CaseMessage(case_id=case_id, sender="customer", mention_id=reddit.id, body=reddit.text))
        old = await issue_secure_link(s, case, settings, issued_by="bot", now=datetime.now(UTC) - timedelta(days=3))
        used_url = await issue_secure_link(s, case, settings, issued_by="session:alice")
        from models import SecureLink

        used = await s.scalar(select(SecureLink).order_by(SecureLink.id.desc()).limit(1))
        cs, _ = await start_session(s, used, settings)
        cs.verified_at = datetime.now(UTC)
        fresh_url = await issue_secure_link(s, case, settings, issued_by="token:linkbot")
        await chat.post(s, case, "customer", "here is my order number")
        await s.commit()
    await login(app_client, "alice")
    page = await (await app_client.get(f"/cases/{case_id}")).text()
    items = re.findall(r'<li class="msg (\w+)" data-id="\d+">(.*?)</li>', page, re.DOTALL)
    by_text = {re.search(r'<bdi class="body">(.*?)</bdi>', body).group(1): body for _, body in items}
    post = by_text["still locked out, anyone?"]
    assert re.search(r'<time datetime="2026-11-20T14:07:00\+00:00"[^>]*>2026-11-20 14:07</time> UTC', post)
    assert f'<a href="{reddit.url}"' in post and "public post on Reddit by erin_alt" in post
    assert "public post on X by erin" in by_text["locked out of my account"]
    chat_line = by_text["here is my order number"]
    assert "secure chat" in chat_line and "<time datetime=" in chat_line and "<a " not in chat_line
    links = re.search(r'<ul class="links" id="secure-links">(.*?)</ul>', page, re.DOTALL).group(1)
    states = re.findall(r'by <bdi>(.*?)</bdi>: <strong>(.*?)</strong>', links)
    assert states == [("a bot (linkbot)", "not opened yet, expires"), ("alice", "opened and verified"),
                      ("the service", "withdrawn unused (a newer link or the case closed)")]
    for url in (old, used_url, fresh_url):  # never the link, nor its token
        assert url.rsplit("/", 1)[1] not in page
