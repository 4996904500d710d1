"""The triage queue: what an agent sees, in which order, and how claims keep agents apart."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from models import AuditEvent, Case, Conversation, Reply
from tests.console.conftest import add_mention, login


def conv_order(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-conversation-id="(\d+)"', html)]


async def test_the_queue_orders_by_priority_band_then_sla_deadline(app_client, runtime):
    now = datetime.now(UTC)
    low_old = await add_mention(runtime, "still waiting for my refund", priority=20, created_at=now - timedelta(hours=3))
    high_new = await add_mention(runtime, "charged twice, furious", priority=85, created_at=now - timedelta(minutes=2))
    high_old = await add_mention(runtime, "double charge again", priority=75, created_at=now - timedelta(minutes=40))
    await add_mention(runtime, "thanks, all good", outcome="auto_answer", priority=99)
    await add_mention(runtime, "buy followers", outcome="moderate", priority=99)
    await login(app_client, "alice")
    html = await (await app_client.get("/queue")).text()
    assert conv_order(html) == [high_old.conversation_id, high_new.conversation_id, low_old.conversation_id]
    assert "overdue" in html  # the three-hour-old one missed the one-hour target


async def test_a_backlog_never_pushes_the_oldest_overdue_conversation_out_of_the_queue(runtime):
    """The queue shows ``limit`` conversations; a backlog of newer posts must not hide the one that
    has waited longest (reading only the newest posts did)."""
    from console.queue_data import queue_items

    now = datetime.now(UTC)
    overdue = await add_mention(runtime, "still can't log in, third day", priority=75, created_at=now - timedelta(hours=9))
    for i in range(14):  # newer, less urgent, and more posts than the queue used to read for 2 rows
        m = await add_mention(runtime, f"question {i}", priority=45, created_at=now - timedelta(minutes=30 - i))
        await add_mention(runtime, f"question {i}, again", priority=45, created_at=now - timedelta(minutes=20 - i),
                          conversation_id=m.conversation_id)
    async with runtime.db.session() as s:
        items = await queue_items(s, limit=2)
    assert [i.conversation_id for i in items][0] == overdue.conversation_id and len(items) == 2
    assert items[0].overdue


async def test_filters_narrow_the_queue(app_client, runtime):
    a = await add_mention(runtime, "reddit billing", platform="reddit", sentiment="negative", issue_type="billing")
    b = await add_mention(runtime, "x outage", platform="x", sentiment="neutral", issue_type="outage")
    c = await add_mention(runtime, "account locked", platform="x", sensitivity="account", issue_type="account_access")
    await login(app_client, "alice")
    assert conv_order(await (await app_client.get("/queue?channel=reddit")).text()) == [a.conversation_id]
    assert conv_order(await (await app_client.get("/queue/rows?sentiment=neutral")).text()) == [b.conversation_id]
    assert conv_order(await (await app_client.get("/queue?sensitivity=account")).text()) == [c.conversation_id]
    assert conv_order(await (await app_client.get("/queue?issue_type=outage&channel=reddit")).text()) == []


async def test_a_second_agent_cannot_claim_or_reply_to_a_claimed_conversation(app_client, second_browser, runtime):
    m = await add_mention(runtime, "my order never came")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    r = await app_client.post(f"/conversations/{cid}/claim", data={"csrf_token": alice_csrf}, allow_redirects=False)
    assert r.status == 302
    r = await second_browser.post(f"/conversations/{cid}/claim", data={"csrf_token": bob_csrf}, allow_redirects=False)
    assert r.status == 409 and "alice is working on this conversation" in await r.text()
    r = await second_browser.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
        "csrf_token": bob_csrf, "text": "Hi from Bob", "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "b0b"})
    assert r.status == 409 and "your reply was not sent" in await r.text()
    async with runtime.db.session() as s:
        assert (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all() == []
        conv = await s.get(Conversation, cid)
        assert conv.claimed_by is not None
    # the queue shows who holds it
    assert "alice" in await (await second_browser.get("/queue/rows")).text()
    # a take-over is explicit and audited
    r = await second_browser.post(f"/conversations/{cid}/claim", data={"csrf_token": bob_csrf, "force": "1"},
                                  allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        actions = [e.action for e in await s.scalars(select(AuditEvent).where(AuditEvent.object_type == "conversation", AuditEvent.object_id == str(cid)))]
    assert actions == ["conversation.claimed", "conversation.taken_over"]


async def test_a_reply_is_refused_when_someone_answered_since_the_page_was_loaded(app_client, second_browser, runtime):
    m = await add_mention(runtime, "where is my parcel")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    page = await (await second_browser.get(f"/conversations/{cid}")).text()
    seen = re.search(r'name="seen_reply_id" value="(\d+)"', page).group(1)
    r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
        "csrf_token": alice_csrf, "text": "On its way!", "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "a1"})
    assert r.status == 302
    await app_client.post(f"/conversations/{cid}/release", data={"csrf_token": alice_csrf})
    form = {"csrf_token": bob_csrf, "text": "Let me check", "mention_id": str(m.id), "seen_reply_id": seen,
            "draft_id": "b1"}
    r = await second_browser.post(f"/conversations/{cid}/reply", data=form, allow_redirects=False)
    body = await r.text()
    assert r.status == 409 and "alice replied while you were writing" in body and "Let me check" in body
    r = await second_browser.post(f"/conversations/{cid}/reply", data={**form, "confirm": "1"}, allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        sent = [(x.sent_by, x.text) for x in await s.scalars(select(Reply).where(Reply.conversation_id == cid)
                                                              .order_by(Reply.id))]
    assert sent == [("session:alice", "On its way!"), ("session:bob", "Let me check")]


async def test_sending_a_suggested_reply_records_it_once_even_when_submitted_twice(app_client, runtime):
    from models import Template

    async with runtime.db.session() as s:
        s.add(Template(name="billing_refund", issue_types=["billing"], variants={
            "friendly": "Hi {{ author_name }}, sorry about the double charge. We'll refund it."}))
        await s.commit()
    m = await add_mention(runtime, "charged twice", issue_type="billing", handle="dana")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    assert "Hi dana, sorry about the double charge. We&#39;ll refund it." in page
    form = {"csrf_token": csrf, "text": "Hi dana, sorry about the double charge. We'll refund it today.",
            "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "d00d", "template": "billing_refund"}
    for _ in range(2):
        r = await app_client.post(f"/conversations/{cid}/reply", data=form, allow_redirects=False)
        assert r.status == 302
    async with runtime.db.session() as s:
        rows = (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all()
    assert len(rows) == 1
    assert rows[0].status == "dry_run" and rows[0].template == "billing_refund" and rows[0].sent_by == "session:alice"
    assert rows[0].text.endswith("today.")
    rows_html = await (await app_client.get("/queue/rows")).text()
    assert "answered" in rows_html


async def test_a_public_reply_with_sensitive_details_is_not_sent_and_the_draft_is_kept(app_client, runtime):
    m = await add_mention(runtime, "my card was stolen and used", sensitivity="fraud", handle="ivy")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    assert '<option value="private" selected>' in page  # the form offers a private message first
    form = {"csrf_token": csrf, "text": "So sorry Ivy, we blocked the stolen card and refunded the charges",
            "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "beef"}
    r = await app_client.post(f"/conversations/{cid}/reply", data=form, allow_redirects=False)
    page = await r.text()
    assert r.status == 422 and "Not sent: this is handled in a private channel" in page
    assert "we blocked the stolen card and refunded the charges" in page  # the draft is kept
    assert 'name="public_anyway"' in page  # triage can be wrong: the agent may judge otherwise
    r = await app_client.post(f"/conversations/{cid}/reply", data={**form, "visibility": "private"},
                              allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        rows = (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all()
    assert [row.visibility for row in rows] == ["private"]


async def test_an_agent_may_overrule_triage_on_a_false_alarm_but_never_on_personal_data(app_client, runtime):
    m = await add_mention(runtime, "my cat hacked the delivery system again lol", sensitivity="security",
                          handle="jo")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    form = {"csrf_token": csrf, "text": "Ha! Tell the cat we said hi.", "mention_id": str(m.id),
            "seen_reply_id": "0", "draft_id": "cafe", "public_anyway": "1"}
    r = await app_client.post(f"/conversations/{cid}/reply", data=form, allow_redirects=False)
    assert r.status == 302
    leak = {**form, "draft_id": "f00d", "text": "Your card 4111 1111 1111 1111 is fine"}
    r = await app_client.post(f"/conversations/{cid}/reply", data=leak, allow_redirects=False)
    page = await r.text()
    assert r.status == 422 and 'name="public_anyway"' not in page
    assert 'name="confirm"' not in page  # no "Send anyway" that would only be refused again
    async with runtime.db.session() as s:
        rows = (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all()
        audit = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "reply.public_override"))).all()
    assert [(row.visibility, row.text) for row in rows] == [("public", "Ha! Tell the cat we said hi.")]
    assert len(audit) == 1 and audit[0].actor == "session:alice"


async def test_take_private_opens_an_assigned_case_with_the_secure_link_dm(app_client, runtime):
    m = await add_mention(runtime, "someone logged into my account", sensitivity="account", handle="erin")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/conversations/{cid}/private", data={"csrf_token": csrf, "mention_id": str(m.id)},
                              allow_redirects=False)
    assert r.status == 302 and "case=" in r.headers["Location"]
    async with runtime.db.session() as s:
        case = await s.scalar(select(Case).where(Case.opened_by_mention_id == m.id))
        replies = (await s.scalars(select(Reply).where(Reply.case_id == case.id))).all()
    assert case.category == "agent" and case.assigned_to is not None
    assert {(r.visibility, r.kind) for r in replies} == {("public", "secure_link"), ("private", "secure_link_dm")}
    public = next(r for r in replies if r.visibility == "public")
    assert "erin" not in public.text  # nothing about the customer in public
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    assert f"Case #{case.id}" in page


async def test_resolve_removes_from_the_queue_and_tags_are_cleaned(app_client, runtime):
    m = await add_mention(runtime, "bug in the app")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    await app_client.post(f"/conversations/{cid}/tags", data={"csrf_token": csrf, "tags": "Bug, ios , bug"})
    async with runtime.db.session() as s:
        assert (await s.get(Conversation, cid)).tags == ["bug", "ios"]
    # a tag that is not one refuses the change (it would have been dropped, and the old tags with it)
    r = await app_client.post(f"/conversations/{cid}/tags", data={"csrf_token": csrf, "tags": "<b>x</b>, vip"},
                              allow_redirects=False)
    assert r.status == 400 and "is not" in await r.text()
    async with runtime.db.session() as s:
        assert (await s.get(Conversation, cid)).tags == ["bug", "ios"]
    r = await app_client.post(f"/conversations/{cid}/resolve", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/queue"  # with a notice naming it (console.flash)
    assert cid not in conv_order(await (await app_client.get("/queue/rows")).text())


async def test_claims_reach_other_agents_live_over_server_sent_events(app_client, second_browser, runtime):
    m = await add_mention(runtime, "help please")
    csrf = await login(app_client, "alice")
    await login(second_browser, "bob")
    stream = await second_browser.get("/queue/events")
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    await stream.content.readuntil(b"\n\n")  # connected
    await app_client.post(f"/conversations/{m.conversation_id}/claim", data={"csrf_token": csrf})
    event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
    lines = dict(line.split(": ", 1) for line in event.decode().strip().splitlines())
    assert lines["event"] == "claimed"
    assert json.loads(lines["data"])["conversation_id"] == m.conversation_id and json.loads(lines["data"])["by"] == "alice"
    stream.close()


async def test_the_conversation_shows_customer_history_on_other_channels(app_client, runtime):
    from models import Customer

    async with runtime.db.session() as s:
        cust = Customer(name="Maria Silva", plan="family", attributes={"last_order": "shipped this morning"})
        s.add(cust)
        await s.commit()
        cust_id = cust.id
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await add_mention(runtime, "where is order 1234?", platform="reddit", handle="maria_0", customer_id=cust_id,
                      created_at=yesterday, outcome="auto_answer", issue_type="order_delivery")
    today = await add_mention(runtime, "still no parcel!!", platform="x", handle="mariasilva", customer_id=cust_id,
                              issue_type="order_delivery")
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{today.conversation_id}")).text()
    assert "Maria Silva" in page and "shipped this morning" in page
    assert "where is order 1234?" in page and "reddit" in page
    assert "word &#39;refund&#39; (+0.40)" in page  # the triage explanation


async def test_viewing_a_conversation_with_a_customer_record_is_audited(app_client, runtime):
    from console.queue_data import conversation_view
    from models import Customer

    async with runtime.db.session() as s:
        cust = Customer(name="Ines Duarte", plan="family", attributes={"tier": "gold"})
        s.add(cust)
        await s.commit()
        cust_id = cust.id
    linked = await add_mention(runtime, "my plan renewed twice", handle="ines_d", customer_id=cust_id)
    unlinked = await add_mention(runtime, "app crashes on start", handle="anon_5")
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{linked.conversation_id}")).text()
    assert "Ines Duarte" in page
    await app_client.get(f"/conversations/{unlinked.conversation_id}")

    async def views():
        async with runtime.db.session() as s:
            return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "customer.viewed")
                                        .order_by(AuditEvent.id)))

    [event] = await views()  # the record was shown once; the conversation without one is no view of it
    assert (event.object_type, event.object_id, event.reason) == ("customer", str(cust_id), "conversation view")
    assert event.actor == "session:alice"  # who looked: the signed-in agent
    assert event.details["conversation_id"] == linked.conversation_id and event.at is not None
    assert "Ines" not in str(event.details)  # who was viewed is an id, never the person's data
    # who: the viewer the console passes (the page handler names the signed-in agent)
    async with runtime.db.session() as s:
        await conversation_view(s, linked.conversation_id, viewer="session:bob", why="checking a refund")
    last = (await views())[-1]
    assert (last.actor, last.reason, last.object_id) == ("session:bob", "checking a refund", str(cust_id))


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends with a form


async def test_resolving_a_conversation_another_agent_holds_is_an_explicit_take_over(app_client, second_browser,
                                                                                     runtime):
    m = await add_mention(runtime, "my refund never arrived")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    await app_client.post(f"/conversations/{cid}/claim", data={"csrf_token": alice_csrf})
    r = await second_browser.post(f"/conversations/{cid}/resolve", data={"csrf_token": bob_csrf},
                                  allow_redirects=False)
    page = await r.text()
    assert r.status == 409 and "alice is working on this conversation: it was not resolved" in page
    assert 'id="resolve-take-over"' in page  # the way to do it on purpose
    async with runtime.db.session() as s:
        conv = await s.get(Conversation, cid)
        assert conv.status == "open" and conv.claimed_by is not None
    # alice's reply still goes out: nothing was taken from her
    r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
        "csrf_token": alice_csrf, "text": "Refunded today", "mention_id": str(m.id), "seen_reply_id": "0",
        "draft_id": "a2"})
    assert r.status == 302
    r = await second_browser.post(f"/conversations/{cid}/resolve", data={"csrf_token": bob_csrf, "force": "1"},
                                  allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/queue"
    async with runtime.db.session() as s:
        conv = await s.get(Conversation, cid)
        events = [(e.actor, e.action, (e.details or {}).get("from_user")) for e in await s.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "conversation", AuditEvent.object_id == str(cid))
            .order_by(AuditEvent.id))]
    assert conv.status == "resolved" and conv.claimed_by is None
    assert events[-2:] == [("session:bob", "conversation.taken_over", "alice"),
                           ("session:bob", "conversation.resolved", None)]


async def test_a_reply_refused_because_the_conversation_was_resolved_keeps_the_draft_to_reopen_with(
        app_client, second_browser, runtime):
    m = await add_mention(runtime, "is my order lost?")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    await second_browser.post(f"/conversations/{cid}/resolve", data={"csrf_token": bob_csrf})
    draft = "Sorry for the wait, Dana: it left the depot this morning."
    r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
        "csrf_token": alice_csrf, "text": draft, "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "a3"})
    page = await r.text()
    assert r.status == 409 and "your reply was not sent" in page
    assert draft in page and 'id="reopen-with-draft"' in page  # the text is on the page, with the way back
    r = await app_client.post(f"/conversations/{cid}/resolve", headers=HTML, allow_redirects=False, data={
        "csrf_token": alice_csrf, "reopen": "1", "draft": draft, "mention_id": str(m.id)})
    assert r.status == 303 and r.headers["Location"] == f"/conversations/{cid}"
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    form = re.search(r'<form [^>]*id="reply-form".*?</form>', page, re.DOTALL)
    assert form and draft in form.group(0)  # back in the reply form, ready to send
    async with runtime.db.session() as s:
        assert (await s.get(Conversation, cid)).status == "open"


async def test_a_browser_is_sent_back_to_the_conversation_with_the_refusal_and_its_draft(app_client, second_browser,
                                                                                         runtime):
    """After a 409 the browser is not left at the POST address (a reload would re-post or get 405)."""
    m = await add_mention(runtime, "wrong size delivered")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    await app_client.post(f"/conversations/{cid}/claim", data={"csrf_token": alice_csrf})
    r = await second_browser.post(f"/conversations/{cid}/reply", headers=HTML, allow_redirects=False, data={
        "csrf_token": bob_csrf, "text": "We'll swap it for you", "mention_id": str(m.id), "seen_reply_id": "0",
        "draft_id": "b2", "visibility": "private"})
    assert r.status == 303 and r.headers["Location"] == f"/conversations/{cid}"
    page = await (await second_browser.get(f"/conversations/{cid}", headers=HTML)).text()
    assert "alice is working on this conversation; your reply was not sent." in page
    assert "We&#39;ll swap it for you</textarea>" in page
    assert '<option value="private" selected>' in page  # as it was chosen
    again = await (await second_browser.get(f"/conversations/{cid}", headers=HTML)).text()
    assert "your reply was not sent" not in again  # shown once


async def test_a_refused_draft_holding_personal_data_is_shown_in_place_never_put_in_a_cookie(app_client, runtime):
    m = await add_mention(runtime, "charged twice", handle="lee")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/conversations/{cid}/reply", headers=HTML, allow_redirects=False, data={
        "csrf_token": csrf, "text": "Refunded to 4111 1111 1111 1111", "mention_id": str(m.id),
        "seen_reply_id": "0", "draft_id": "c3", "visibility": "public"})
    assert r.status == 422 and "sc_flash" not in r.cookies
    assert "Refunded to 4111 1111 1111 1111</textarea>" in await r.text()  # the agent's own draft, kept


async def test_a_bad_tag_is_explained_on_the_conversation_with_what_was_typed(app_client, runtime):
    m = await add_mention(runtime, "app freezes")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/conversations/{cid}/tags", headers=HTML, data={"csrf_token": csrf,
                                                                                "tags": "ios, <b>x</b>"})
    page = await r.text()
    assert r.status == 200 and str(r.url).endswith(f"/conversations/{cid}")  # redirected back, not left at /tags
    assert "a tag is 1-40 letters" in page and 'value="ios, &lt;b&gt;x&lt;/b&gt;"' in page
    assert 'id="reply-form"' in page  # the normal page, with the nav
    assert '<a href="/queue">Queue</a>' in page


async def test_the_unclaimed_filter_leaves_out_live_claims_and_the_sensitivity_filter_offers_what_can_be_queued(
        app_client, runtime):
    free = await add_mention(runtime, "nobody has this one")
    held = await add_mention(runtime, "alice has this one")
    lapsed = await add_mention(runtime, "claimed long ago")
    csrf = await login(app_client, "alice")
    await app_client.post(f"/conversations/{held.conversation_id}/claim", data={"csrf_token": csrf})
    await app_client.post(f"/conversations/{lapsed.conversation_id}/claim", data={"csrf_token": csrf})
    async with runtime.db.session() as s:
        (await s.get(Conversation, lapsed.conversation_id)).claimed_at = datetime.now(UTC) - timedelta(hours=1)
        await s.commit()
    page = await (await app_client.get("/queue?unclaimed=1")).text()
    assert sorted(conv_order(page)) == sorted([free.conversation_id, lapsed.conversation_id])
    assert 'name="unclaimed" value="1" checked' in page
    assert held.conversation_id in conv_order(await (await app_client.get("/queue")).text())
    sensitivity = re.search(r'<select name="sensitivity">(.*?)</select>', page, re.DOTALL).group(1)
    assert re.findall(r'<option value="(\w+)"', sensitivity) == ["none", "account"]  # security/fraud go private


async def test_a_filtered_queue_with_no_match_says_so_and_offers_to_clear_the_filters(app_client, runtime):
    await add_mention(runtime, "billing on x", platform="x")
    await login(app_client, "alice")
    page = await (await app_client.get("/queue?channel=reddit")).text()
    assert "No item matches these filters." in page and '<a href="/queue">Clear the filters</a>' in page
    assert "Nothing waiting for an agent" not in page
    rows = await (await app_client.get("/queue/rows?channel=reddit")).text()  # the live refresh says the same
    assert "No item matches these filters." in rows


async def test_take_private_acts_on_the_post_picked_in_reply_to(app_client, runtime):
    """The "Take private" button submits the reply form, so the post is the one "Reply to" shows."""
    customer = await add_mention(runtime, "I was charged twice", platform="reddit", handle="kim_r")
    helper = await add_mention(runtime, "same here, call your bank", platform="reddit", handle="helper_hal",
                               conversation_id=customer.conversation_id,
                               created_at=datetime.now(UTC) - timedelta(minutes=1))
    cid = customer.conversation_id
    csrf = await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{cid}?mention={customer.id}")).text()
    assert f'<option value="{customer.id}" selected>' in page
    assert re.search(r'<button type="submit" form="reply-form" formaction="/conversations/\d+/private"', page)
    r = await app_client.post(f"/conversations/{cid}/private", allow_redirects=False,
                              data={"csrf_token": csrf, "mention_id": str(customer.id), "text": ""})
    assert r.status == 302 and f"mention={customer.id}" in r.headers["Location"]
    other = await add_mention(runtime, "unrelated", handle="zed")
    r = await app_client.post(f"/conversations/{cid}/private", allow_redirects=False,
                              data={"csrf_token": csrf, "mention_id": str(other.id)})
    assert r.status == 400  # a post of another conversation is refused
    async with runtime.db.session() as s:
        opened = set(await s.scalars(select(Case.opened_by_mention_id)))
    assert customer.id in opened and helper.id not in opened and other.id not in opened


async def test_a_moderator_reads_a_conversation_without_its_forms_or_the_customer_record(app_client, runtime):
    from models import Customer, ModerationAction

    async with runtime.db.session() as s:
        cust = Customer(name="Rosa Private", plan="family")
        s.add(cust)
        await s.commit()
    m = await add_mention(runtime, "you people are useless", handle="rosa", customer_id=cust.id)
    async with runtime.db.session() as s:  # a rule's alert links the moderators here
        s.add(ModerationAction(dedup_key="t:alert", mention_id=m.id, action="notify", rule="abuse", reason="abuse",
                               actor="bot", status="alert", details={}))
        await s.commit()
    await login(app_client, "mod")
    r = await app_client.get(f"/conversations/{m.conversation_id}")
    page = await r.text()
    assert r.status == 200 and "you people are useless" in page
    assert "reading this conversation as a moderator" in page and '<a href="/moderation">' in page
    for form in ("/reply", "/claim", "/resolve", "/tags", "/report", "/private"):
        assert f'action="/conversations/{m.conversation_id}{form}"' not in page
    assert "Rosa Private" not in page  # the record is the agents'; nothing to audit
    async with runtime.db.session() as s:
        assert (await s.scalars(select(AuditEvent).where(AuditEvent.action == "customer.viewed"))).all() == []
