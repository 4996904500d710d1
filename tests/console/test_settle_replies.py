"""A reply left ``unknown`` (its sender killed mid platform call) is shown plainly wherever replies are
listed to agents and settled by someone who may send: posted (its id or address checked) or sent
again through the console's own path, once; from ``unknown`` only (a late platform answer or another
settling wins), with CSRF, audited with ids only. On SQLite and PostgreSQL, against fake platforms."""

from __future__ import annotations

import asyncio
import html

import pytest
from sqlalchemy import update

from models import Mention, Reply
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service.stranded import record_reply_outcome
from tests.console import settle_support
from tests.console.conftest import Browser, add_mention, bot_token, login
from tests.console.settle_support import (
    SETTLED,
    X_REPLY,
    answer_first,
    audited,
    bearer,
    get,
    platform,
    settle,
    unknown_reply,
)
from tests.console.test_api_spec import Described

rt, client = settle_support.rt, settle_support.client  # a console sending to fake platforms


@pytest.fixture
async def second_browser(client):
    """Another person's browser on the same server."""
    b = Browser(str(client.make_url("/")).rstrip("/") + "/")
    yield b
    await b.session.close()


async def test_an_agent_sees_an_unknown_reply_plainly_and_records_it_posted_with_its_address(client, rt):
    m = await add_mention(rt, "charged twice for March", handle="dana")
    rid = await unknown_reply(rt, m)
    csrf = await login(client, "alice")
    page = await (await client.get(f"/conversations/{m.conversation_id}")).text()
    assert "May or may not have been posted: check on X</strong>" in page
    assert f'href="{m.url}"' in page and "It was not posted — send it again" in page

    r = await settle(client, csrf, m, rid, "posted", platform_ref="https://x.com/brand")  # names no tweet
    page = html.unescape(await r.text())
    assert r.status == 422 and "paste the reply's tweet id" in page
    assert 'value="https://x.com/brand"' in page  # what was pasted is kept
    async with rt.db.session() as s:  # X's ids are numbers
        await s.execute(update(Mention).where(Mention.id == m.id).values(external_id="1780000000000000000"))
        await s.commit()
    r = await settle(client, csrf, m, rid, "posted", platform_ref="https://x.com/dana/status/1780000000000000000")
    assert r.status == 422 and "the post being answered" in html.unescape(await r.text())  # the customer's
    assert (await get(rt, Reply, rid)).status == "unknown" and await audited(rt, "reply.settled") == []

    r = await settle(client, csrf, m, rid, "posted", platform_ref=X_REPLY)
    assert r.status == 303 and r.headers["Location"] == f"/conversations/{m.conversation_id}"
    page = await (await client.get(r.headers["Location"])).text()
    assert "Recorded as posted on X (id 1790000000000000001)." in page and "May or may not" not in page
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.error, reply.external_ids) == ("sent", None, ["1790000000000000001"])
    assert reply.sent_at == reply.claimed_at  # it went out when it was claimed
    [event] = await audited(rt, "reply.settled")
    assert (event.actor, event.object_type, event.object_id) == ("session:alice", "reply", str(rid))
    assert event.details == {"mention_id": m.id, "kind": "agent", "outcome": "posted",
                             "external_id": "1790000000000000001"}  # ids only, no words
    assert platform(rt, "x").calls == []  # nothing went to the platform

    r = await settle(client, csrf, m, rid, "not_posted")  # a second click, or a stale page
    assert r.status == 409 and "no longer unknown: it is sent now" in await r.text()
    assert platform(rt, "x").calls == [] and len(await audited(rt, "reply.sent_again")) == 0


async def test_not_posted_sends_the_reply_again_through_the_console_path_once(client, rt):
    m = await add_mention(rt, "where is my refund", handle="erin")
    rid = await unknown_reply(rt, m, "Hi Erin, the refund left today.")
    csrf = await login(client, "alice")
    r = await settle(client, csrf, m, rid, "not_posted")
    assert r.status == 303
    assert "Sent again on X." in await (await client.get(r.headers["Location"])).text()
    x = platform(rt, "x")
    assert [(a.kind, a.target_external_id, a.text) for a in x.calls] == [
        ("public_reply", m.external_id, "Hi Erin, the refund left today.")]
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.error, reply.external_ids) == ("sent", None, ["r1"])
    [event] = await audited(rt, "reply.sent_again")
    assert event.actor == "session:alice" and event.details == {"mention_id": m.id, "kind": "agent"}
    r = await settle(client, csrf, m, rid, "not_posted")  # the double click
    assert r.status == 409 and len(x.calls) == 1


async def test_a_late_platform_answer_between_page_load_and_settling_wins(client, rt):
    m = await add_mention(rt, "refund?", handle="fay")
    sent, failed = await unknown_reply(rt, m, "first"), await unknown_reply(rt, m, "second")
    csrf = await login(client, "alice")
    assert (await (await client.get(f"/conversations/{m.conversation_id}")).text()).count("It was posted") == 2
    async with rt.db.session() as s:  # the killed sender's call answers after all
        for rid, status in ((sent, "sent"), (failed, "failed")):
            reply = await s.get(Reply, rid)
            assert await record_reply_outcome(s, reply, {"status": status, "error": None, "external_ids": ["late"],
                                                         "sent_at": utcnow()})
        await s.commit()
    r = await settle(client, csrf, m, sent, "not_posted")
    assert r.status == 409 and "no longer unknown: it is sent now" in await r.text()
    r = await settle(client, csrf, m, failed, "posted", platform_ref=X_REPLY)
    assert r.status == 409 and "it is failed now" in await r.text()
    assert platform(rt, "x").calls == []  # never sent twice
    assert [(await get(rt, Reply, i)).status for i in (sent, failed)] == ["sent", "failed"]
    assert (await get(rt, Reply, failed)).external_ids == ["late"]
    assert await audited(rt, "reply.sent_again") == [] and await audited(rt, "reply.settled") == []
    assert len(await audited(rt, "reply.late_result")) == 2


@pytest.mark.parametrize("outcome", ["posted", "not_posted"])
async def test_an_answer_landing_between_the_read_and_the_update_wins(client, rt, monkeypatch, outcome):
    m = await add_mention(rt, "refund?", handle="tia")
    rid = await unknown_reply(rt, m)
    answer_first(rt, monkeypatch, status="sent")
    r = await settle(client, await login(client, "alice"), m, rid, outcome, platform_ref=X_REPLY)
    assert r.status == 409 and "no longer unknown: it is sent now" in await r.text()
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["late"]) and platform(rt, "x").calls == []
    for action in SETTLED:
        assert await audited(rt, action) == []


async def test_two_settlings_at_once_send_it_once(client, rt):
    m = await add_mention(rt, "refund?", handle="gus")
    rid = await unknown_reply(rt, m, "Hi Gus, it is refunded.", kind="bot_api", sent_by="token:alice")
    h = bearer(await bot_token(rt, "alice", ["replies:write"]))
    answers = await asyncio.gather(*(client.post(f"/api/v1/replies/{rid}/settle", headers=h,
                                                 json={"outcome": "not_posted"}) for _ in range(2)))
    assert sorted(r.status for r in answers) == [200, 409]
    conflict = await next(r for r in answers if r.status == 409).json()
    assert conflict["error"]["current_status"] in ("pending", "sending", "sent")
    assert [a.text for a in platform(rt, "x").calls] == ["Hi Gus, it is refunded."]


async def test_only_a_role_that_may_send_settles_a_reply_and_only_with_the_csrf_token(client, rt, second_browser):
    m = await add_mention(rt, "refund?", handle="hal")
    rid = await unknown_reply(rt, m)
    csrf = await login(client, "alice")
    r = await client.post(f"/conversations/{m.conversation_id}/replies/{rid}/settle", allow_redirects=False,
                          data={"outcome": "not_posted"})
    assert r.status == 403  # no CSRF token
    for user in ("mod", "mia"):
        other = await login(second_browser, user)
        r = await settle(second_browser, other, m, rid, "not_posted")
        assert r.status == 403
        h = bearer(await bot_token(rt, user, ["replies:write"]))
        r = await client.post(f"/api/v1/replies/{rid}/settle", headers=h, json={"outcome": "posted"})
        assert r.status == 403 and "error" in await r.json()
        await second_browser.post("/logout", data={"csrf_token": other})
    page = await (await client.get(f"/conversations/{m.conversation_id}")).text()
    assert "It was posted" in page
    h = bearer(await bot_token(rt, "alice", ["mentions:read"]))  # the role, without the scope
    assert (await client.post(f"/api/v1/replies/{rid}/settle", headers=h, json={"outcome": "posted"})).status == 403
    other_conv = await add_mention(rt, "unrelated", handle="ida")
    r = await settle(client, csrf, other_conv, rid, "posted")  # not this conversation's reply
    assert r.status == 404
    assert (await get(rt, Reply, rid)).status == "unknown" and platform(rt, "x").calls == []
    assert await audited(rt, "reply.settled") == [] and await audited(rt, "reply.sent_again") == []


async def test_sent_again_the_public_guard_holds_as_when_it_was_written(client, rt):
    private = await add_mention(rt, "someone is logged into my account", sensitivity="security", handle="jo")
    rid = await unknown_reply(rt, private, "Hi Jo, we reset your sessions.")
    h = bearer(await bot_token(rt, "alice", ["replies:write"]))
    r = await client.post(f"/api/v1/replies/{rid}/settle", headers=h, json={"outcome": "not_posted"})
    assert r.status == 422 and "handled in a private channel" in (await r.json())["error"]["message"]  # bots: never
    csrf = await login(client, "alice")
    r = await client.post(f"/conversations/{private.conversation_id}/replies/{rid}/settle", allow_redirects=False,
                          headers={"Accept": "text/html"}, data={"csrf_token": csrf, "outcome": "not_posted"})
    assert r.status == 303  # a browser goes back to the conversation, which says why
    page = await (await client.get(r.headers["Location"])).text()
    assert "Not sent again: this is handled in a private channel" in page
    assert 'name="public_anyway"' in page  # triage can be wrong: a person may overrule it, as when writing
    r = await settle(client, csrf, private, rid, "not_posted")  # another client: the page in place
    assert r.status == 422 and 'name="public_anyway"' in await r.text()
    assert platform(rt, "x").calls == [] and (await get(rt, Reply, rid)).status == "unknown"
    r = await settle(client, csrf, private, rid, "not_posted", public_anyway="1")
    assert r.status == 303 and [a.text for a in platform(rt, "x").calls] == ["Hi Jo, we reset your sessions."]
    [override] = await audited(rt, "reply.public_override")
    assert (override.actor, override.object_id) == ("session:alice", str(private.id))

    card = await add_mention(rt, "charged twice", handle="kim")
    rid = await unknown_reply(rt, card, "Your card 4111 1111 1111 1111 was refunded.")
    r = await settle(client, csrf, card, rid, "not_posted", public_anyway="1")
    assert r.status == 422 and 'name="public_anyway"' not in await r.text()  # personal data: nobody
    assert len(platform(rt, "x").calls) == 1


async def test_sent_again_a_reply_to_a_deleted_post_is_cancelled_and_erased_words_are_not_sent(client, rt):
    gone = await add_mention(rt, "refund?", handle="lee")
    rid = await unknown_reply(rt, gone)
    async with rt.db.session() as s:
        await s.execute(update(Mention).where(Mention.id == gone.id).values(deleted=True))
        await s.commit()
    csrf = await login(client, "alice")
    r = await settle(client, csrf, gone, rid, "not_posted")
    assert "Not sent again: the post was deleted on X" in await (await client.get(r.headers["Location"])).text()
    assert (await get(rt, Reply, rid)).status == "cancelled" and platform(rt, "x").calls == []
    erased = await unknown_reply(rt, await add_mention(rt, "refund?", handle="max"), ERASED_TEXT)
    m = await get(rt, Mention, (await get(rt, Reply, erased)).mention_id)
    r = await settle(client, csrf, m, erased, "not_posted")
    assert r.status == 409 and "erased on a privacy request" in await r.text()
    assert platform(rt, "x").calls == []


async def test_the_api_settles_a_reply_as_described(client, rt):
    m = await add_mention(rt, "refund?", handle="ned")
    rid = await unknown_reply(rt, m, kind="bot_api", sent_by="token:alice")
    described = Described(await (await client.get("/api/openapi.json")).json())
    h = bearer(await bot_token(rt, "alice", ["replies:write"]))
    url, path = f"/api/v1/replies/{rid}/settle", "/api/v1/replies/{id}/settle"
    for body, status in (({"outcome": "not_posted", "platform_ref": X_REPLY}, 422),
                         ({"outcome": "posted", "platform_ref": "not a tweet"}, 422), ({"outcome": "maybe"}, 422),
                         ({"outcome": "posted", "platform_ref": X_REPLY}, 200), ({"outcome": "posted"}, 409)):
        r = await client.post(url, headers=h, json=body)
        answer = await r.json()
        described.check("POST", path, r.status, answer)
        assert r.status == status, answer
    assert answer["error"]["current_status"] == "sent"
    assert (await client.post("/api/v1/replies/999999/settle", headers=h, json={"outcome": "posted"})).status == 404
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["1790000000000000001"])
    [event] = await audited(rt, "reply.settled")
    assert event.actor == "token:alice"
    op = described.doc["paths"][path]["post"]
    assert op["x-roles"] == ["agent", "admin"] and op["x-token-scope"] == "replies:write"


async def test_the_moderation_page_shows_an_unknown_bot_reply_first_and_an_admin_settles_it(client, rt,
                                                                                           second_browser):
    m = await add_mention(rt, "how do I export?", handle="ray")
    rid = await unknown_reply(rt, m, "Settings → Export.", kind="auto_answer", sent_by="bot")
    async with rt.db.session() as s:  # a hundred newer bot replies: the unknown one stays on the page
        for i in range(101):
            s.add(Reply(dedup_key=f"b:{i}", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                        kind="auto_answer", text=f"answer {i}", status="sent", sent_by="bot"))
        await s.commit()
    await login(client, "mod")
    page = await (await client.get("/moderation")).text()
    assert f'data-reply-id="{rid}"' in page and "May or may not have been posted: check on X" in page
    assert "An agent settles it from" in page and f"/replies/{rid}/settle" not in page  # a moderator cannot send
    csrf = await login(second_browser, "root")
    assert f"/replies/{rid}/settle" in await (await second_browser.get("/moderation")).text()
    r = await second_browser.post(f"/conversations/{m.conversation_id}/replies/{rid}/settle", allow_redirects=False,
                                  data={"csrf_token": csrf, "outcome": "posted", "back": "moderation",
                                        "platform_ref": X_REPLY})
    assert r.status == 303 and r.headers["Location"] == "/moderation"
    assert "Recorded as posted on X" in await (await second_browser.get("/moderation")).text()
    assert (await get(rt, Reply, rid)).external_ids == ["1790000000000000001"]
    csrf = await login(client, "mod")
    r = await client.post(f"/moderation/replies/{rid}/delete", data={"csrf_token": csrf, "reason": "wrong answer"},
                          allow_redirects=False)
    assert r.status == 303  # taken back on X, by the id the admin pasted
    assert [(a.kind, a.target_external_id) for a in platform(rt, "x").calls] == [("delete_reply", "1790000000000000001")]
    unsure = await unknown_reply(rt, m, "Settings → Export, then CSV.", kind="auto_answer", sent_by="bot")
    r = await client.post(f"/moderation/replies/{unsure}/delete", data={"csrf_token": csrf, "reason": "wrong"},
                          allow_redirects=False)
    page = await (await client.get(r.headers["Location"])).text()
    assert "It may still be on X, where it cannot be deleted without its id: check there." in page


async def test_the_queue_names_the_conversations_with_an_unknown_reply(client, rt):
    m = await add_mention(rt, "refund?", handle="sam")
    await login(client, "alice")
    assert "may or may not have been posted" not in await (await client.get("/queue")).text()
    await unknown_reply(rt, m)
    await unknown_reply(rt, m)
    page = await (await client.get("/queue")).text()
    assert "Replies that may or may not have been posted" in page
    assert f'<a href="/conversations/{m.conversation_id}">conversation {m.conversation_id}</a> (2)' in page


async def test_a_reply_is_not_sent_again_while_another_agent_holds_the_conversation(client, rt, second_browser):
    m = await add_mention(rt, "refund?", handle="uli")
    again, posted = await unknown_reply(rt, m, "first"), await unknown_reply(rt, m, "second")
    bob = await login(second_browser, "bob")
    r = await second_browser.post(f"/conversations/{m.conversation_id}/claim", data={"csrf_token": bob},
                                  allow_redirects=False)
    assert r.status == 302
    csrf = await login(client, "alice")
    r = await settle(client, csrf, m, again, "not_posted")
    assert r.status == 409 and "bob is working on this conversation: nothing was sent again" in await r.text()
    h = bearer(await bot_token(rt, "alice", ["replies:write"]))
    r = await client.post(f"/api/v1/replies/{again}/settle", headers=h, json={"outcome": "not_posted"})
    assert r.status == 409 and platform(rt, "x").calls == []
    r = await settle(client, csrf, m, posted, "posted")  # recording what happened sends nothing: no claim needed
    assert r.status == 303 and (await get(rt, Reply, posted)).status == "sent"
    assert (await get(rt, Reply, again)).status == "unknown"
