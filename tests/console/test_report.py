"""Reporting a post to the moderators, from the conversation view (agents) and the API (bots), and
the moderation queue showing held and reported posts redacted, with who reported them."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import AuditEvent, Mention, ModerationAction
from tests.console.conftest import add_mention, bot_token, login


async def holds(runtime, mention_id: int) -> list[ModerationAction]:
    async with runtime.db.session() as s:
        return list(await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == mention_id)
                                    .order_by(ModerationAction.id)))


def queue_row(html: str, hold_id: int) -> str:
    match = re.search(rf'<tr data-action-id="{hold_id}"[^>]*>(.*?)</tr>', html, re.DOTALL)
    assert match, f"hold {hold_id} is not in the moderation queue"
    return match.group(1)


async def test_an_agent_reports_a_post_and_the_moderators_see_who_and_why(app_client, runtime):
    m = await add_mention(runtime, "I know where you live, @support", handle="angry")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    assert "Report to moderators" in page and "Held for the moderators" not in page
    note = "Threatening staff; mail me at alice.agent@example.com if you need more"
    r = await app_client.post(f"/conversations/{cid}/report", allow_redirects=False,
                              data={"csrf_token": csrf, "mention_id": str(m.id), "note": note})
    assert r.status == 302 and r.headers["Location"] == f"/conversations/{cid}"
    (hold,) = await holds(runtime, m.id)
    assert (hold.action, hold.status, hold.rule, hold.actor) == ("hold", "pending", "reported", "session:alice")
    assert hold.reason == "Threatening staff; mail me at [email] if you need more"  # no personal data kept
    page = await (await app_client.get(f"/conversations/{cid}")).text()
    assert "Held for the moderators" in page
    again = await app_client.post(f"/conversations/{cid}/report", allow_redirects=False,
                                  data={"csrf_token": csrf, "mention_id": str(m.id), "note": "again"})
    assert again.status == 302 and len(await holds(runtime, m.id)) == 1  # one pending report per reporter
    async with runtime.db.session() as s:
        audit = await s.scalar(select(AuditEvent).where(AuditEvent.action == "moderation.hold",
                                                        AuditEvent.object_id == str(m.id)))
    assert audit.actor == "session:alice"

    await login(app_client, "mod")
    row = queue_row(await (await app_client.get("/moderation")).text(), hold.id)
    assert "Reported by <bdi>alice</bdi>" in row and "Threatening staff" in row and "I know where you live" in row
    assert 'class="reported"' in (await (await app_client.get("/moderation")).text())


async def test_a_report_needs_a_note_and_a_public_post_of_this_conversation(app_client, runtime):
    m = await add_mention(runtime, "first post")
    other = await add_mention(runtime, "a post elsewhere")
    async with runtime.db.session() as s:
        dm = Mention(platform="x", external_id="dm-1", author_id=m.author_id, conversation_id=m.conversation_id,
                     text="a direct message", created_at=m.created_at, content_hash="dm-1", is_public=False)
        s.add(dm)
        await s.commit()
        dm_id = dm.id
    csrf = await login(app_client, "alice")
    url = f"/conversations/{m.conversation_id}/report"
    r = await app_client.post(url, data={"csrf_token": csrf, "mention_id": str(m.id), "note": "   "})
    assert r.status == 400 and "Say why" in await r.text()
    r = await app_client.post(url, data={"csrf_token": csrf, "mention_id": str(other.id), "note": "spam"})
    assert r.status == 400
    r = await app_client.post(url, data={"csrf_token": csrf, "mention_id": str(dm_id), "note": "abuse"})
    assert r.status == 400
    r = await app_client.post(url, data={"csrf_token": csrf, "mention_id": "x", "note": "abuse"})
    assert r.status == 400
    for mid in (m.id, other.id, dm_id):
        assert await holds(runtime, mid) == []


async def test_a_bot_reports_through_the_api_once_and_again_after_a_review(app_client, runtime):
    m = await add_mention(runtime, "buy cheap followers at spam.example", handle="spammer")
    h = {"Authorization": f"Bearer {await bot_token(runtime, 'alice', ['actions:write'])}"}
    url = f"/api/v1/mentions/{m.id}/actions"
    r = await app_client.post(url, json={"action": "report"}, headers=h)
    assert r.status == 422 and "report needs a reason" in (await r.json())["error"]["message"]
    r = await app_client.post(url, json={"action": "report", "reason": "looks like a spam wave"}, headers=h)
    body = await r.json()
    assert r.status == 200 and body["status"] == "pending" and body["repeated"] is False
    r = await app_client.post(url, json={"action": "report", "reason": "still spam"}, headers=h)
    assert (await r.json())["moderation_action_id"] == body["moderation_action_id"] and (await r.json())["repeated"]
    (hold,) = await holds(runtime, m.id)
    assert (hold.rule, hold.actor, hold.reason) == ("reported", "token:alice", "looks like a spam wave")
    read_only = {"Authorization": f"Bearer {await bot_token(runtime, 'alice', ['mentions:read'])}"}
    assert (await app_client.post(url, json={"action": "report", "reason": "x"}, headers=read_only)).status == 403

    csrf = await login(app_client, "mod")
    row = queue_row(await (await app_client.get("/moderation")).text(), hold.id)
    assert "Reported by <bdi>alice&#39;s bot</bdi>" in row and "looks like a spam wave" in row
    r = await app_client.post(f"/moderation/{hold.id}/review", data={"csrf_token": csrf, "decision": "approve"},
                              allow_redirects=False)
    assert r.status == 303
    assert f'data-action-id="{hold.id}"' not in await (await app_client.get("/moderation")).text()
    r = await app_client.post(url, json={"action": "report", "reason": "back again"}, headers=h)
    assert r.status == 200 and (await r.json())["repeated"] is False  # a new report after the review
    assert [x.status for x in await holds(runtime, m.id) if x.action == "hold"] == ["reviewed", "pending"]


async def test_the_moderation_queue_shows_posts_redacted(app_client, runtime):
    from community import moderation

    text = "my card 4111 1111 1111 1111 got charged twice"
    m = await add_mention(runtime, text, outcome="moderate",
                          pii=[{"type": "card_number", "start": 8, "end": 27}])
    async with runtime.db.session() as s:
        hold = await moderation.add_action(s, "test:pii", await s.get(Mention, m.id), "hold",
                                           "personal data in public", rule="pii_public")
        await s.commit()
        hold_id = hold.id
    await login(app_client, "mod")
    row = queue_row(await (await app_client.get("/moderation")).text(), hold_id)
    assert "4111 1111" not in row and "[card_number]" in row and "got charged" in row
    assert "pii_public" in row and "personal data in public" in row
