"""What an agent is told around the queue: a resolve names the conversation it resolved on the queue
(with a way to reopen it), a take-over after a refused reply gives the reply back unsent, and a due
or held time carries its date and how late it is, the exact UTC time kept for the browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from console.times import clock, due, span
from models import AuditEvent, Conversation, ModerationAction, Reply
from tests.console.conftest import add_mention, login


def status_of(html: str) -> str | None:
    match = re.search(r'<div class="notice" role="status" id="queue-notice"><bdi>(.*?)</bdi>', html)
    return match.group(1) if match else None


async def test_resolving_names_the_conversation_on_the_queue_once_with_a_way_to_reopen_it(app_client, runtime):
    m = await add_mention(runtime, "where is my parcel", handle="dana")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/conversations/{cid}/resolve", data={"csrf_token": "0" * 64}, allow_redirects=False)
    assert r.status == 403  # CSRF as every form
    r = await app_client.post(f"/conversations/{cid}/resolve", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/queue"
    page = await (await app_client.get("/queue")).text()
    assert status_of(page) == f"Conversation {cid} with dana resolved."
    undo = re.search(r'<form method="post" action="/conversations/(\d+)/resolve"[^>]*>(.*?)</form>', page, re.DOTALL)
    assert undo and int(undo.group(1)) == cid and 'name="reopen" value="1"' in undo.group(2)
    assert f'name="csrf_token" value="{csrf}"' in undo.group(2)
    assert status_of(await (await app_client.get("/queue")).text()) is None  # read once
    r = await app_client.post(f"/conversations/{cid}/resolve", data={"csrf_token": csrf, "reopen": "1"},
                              allow_redirects=False)
    assert r.headers["Location"] == f"/conversations/{cid}"
    async with runtime.db.session() as s:
        assert (await s.get(Conversation, cid)).status == "open"


async def test_the_resolve_button_says_whether_we_replied_so_the_page_can_ask_first(app_client, runtime):
    quiet = await add_mention(runtime, "hello? anyone?")
    answered = await add_mention(runtime, "my invoice is wrong")
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key="t:answered", mention_id=answered.id, conversation_id=answered.conversation_id,
                    platform="x", visibility="public", kind="agent", text="Fixed it", status="sent",
                    sent_by="session:alice"))
        await s.commit()
    await login(app_client, "alice")
    form = re.compile(r'<form [^>]*id="resolve-form"[^>]*>')
    html = await (await app_client.get(f"/conversations/{quiet.conversation_id}")).text()
    assert 'data-unanswered="1"' in form.search(html).group(0)
    html = await (await app_client.get(f"/conversations/{answered.conversation_id}")).text()
    assert "data-unanswered" not in form.search(html).group(0)


async def test_taking_over_after_a_refused_reply_gives_the_reply_back_unsent(app_client, second_browser, runtime):
    m = await add_mention(runtime, "my order never came", handle="dana")
    cid = m.conversation_id
    alice_csrf = await login(app_client, "alice")
    bob_csrf = await login(second_browser, "bob")
    await app_client.post(f"/conversations/{cid}/claim", data={"csrf_token": alice_csrf})
    draft = "Hi Dana, your parcel left the depot this morning."
    r = await second_browser.post(f"/conversations/{cid}/reply", data={
        "csrf_token": bob_csrf, "text": draft, "mention_id": str(m.id), "seen_reply_id": "0", "draft_id": "b1",
        "visibility": "private"})
    page = await r.text()
    assert r.status == 409 and "your reply was not sent" in page
    take_over = re.search(r'<form [^>]*id="take-over-form".*?</form>', page, re.DOTALL).group(0)
    assert f'name="draft" value="{draft}"' in take_over and f'name="mention_id" value="{m.id}"' in take_over
    r = await second_browser.post(f"/conversations/{cid}/claim", allow_redirects=False, data={
        "csrf_token": bob_csrf, "force": "1", "draft": draft, "mention_id": str(m.id), "visibility": "private"})
    assert r.status == 303 and r.headers["Location"] == f"/conversations/{cid}"
    page = await (await second_browser.get(f"/conversations/{cid}")).text()
    reply_form = re.search(r'<form [^>]*id="reply-form".*?</form>', page, re.DOTALL).group(0)
    assert f">{draft}</textarea>" in reply_form and '<option value="private" selected>' in reply_form
    assert "You took over this conversation. Your reply was not sent yet" in page
    assert "You are working on this conversation" in page
    async with runtime.db.session() as s:
        assert (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all() == []  # not sent
        actions = [e.action for e in await s.scalars(select(AuditEvent).where(
            AuditEvent.object_type == "conversation", AuditEvent.object_id == str(cid)).order_by(AuditEvent.id))]
    assert actions == ["conversation.claimed", "conversation.taken_over"]


def test_a_time_not_today_has_its_date_and_a_due_time_says_how_late_it_is():
    now = datetime(2026, 12, 7, 4, 52, tzinfo=UTC)
    assert clock(datetime(2026, 12, 7, 1, 47, tzinfo=UTC), now) == "01:47"
    assert clock(datetime(2026, 11, 20, 1, 47, tzinfo=UTC), now) == "2026-11-20 01:47"
    assert due(now - timedelta(days=17, hours=3), now) == "overdue by 17 days"
    assert due(now + timedelta(minutes=12, seconds=30), now) == "due in 12 min"
    assert due(now - timedelta(hours=2, minutes=5), now) == "overdue by 2 h 5 min"
    assert span(20) == "1 min" and span(86_400) == "1 day"


async def test_the_queue_says_how_late_a_post_is_with_its_date_and_exact_time(app_client, runtime):
    old = await add_mention(runtime, "still no refund", created_at=datetime.now(UTC) - timedelta(days=17, hours=1))
    await add_mention(runtime, "app crashes on start", created_at=datetime.now(UTC) - timedelta(minutes=5))
    await login(app_client, "alice")
    rows = await (await app_client.get("/queue/rows")).text()
    row = re.search(rf'data-conversation-id="{old.conversation_id}".*?</tr>', rows, re.DOTALL).group(0)
    cell = re.search(r'<td class="due">(.*?)</td>', row, re.DOTALL).group(1)
    assert re.search(r'<strong><time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">overdue by 17 days</time>',
                     cell), cell
    assert re.search(r"<small>\d{4}-\d\d-\d\d \d\d:\d\d UTC</small>", cell)  # not today: its date
    assert re.search(r">due in (54|55) min</time>", rows)  # the five-minute-old one, of a one-hour target


async def test_a_post_held_on_another_day_shows_the_date_it_was_held(app_client, runtime):
    m = await add_mention(runtime, "you are all useless idiots", outcome="moderate")
    held_at = datetime.now(UTC) - timedelta(days=3)
    async with runtime.db.session() as s:
        hold = ModerationAction(dedup_key="t:held", mention_id=m.id, action="hold", rule="abusive-language",
                                reason="Please keep it civil.", actor="bot", status="pending", details={},
                                created_at=held_at)
        s.add(hold)
        await s.commit()
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    row = re.search(rf'<tr data-action-id="{hold.id}".*?</tr>', page, re.DOTALL).group(0)
    assert (f'<time datetime="{held_at.isoformat()}" title="{held_at:%Y-%m-%d %H:%M} UTC">'
            f"held {held_at:%Y-%m-%d %H:%M} UTC</time>") in row
