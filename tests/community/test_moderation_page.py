"""The moderation page tells a moderator enough to decide and answers every change on the page:
scores as probabilities, times and links for held posts, a snippet for each recent action,
a confirmation naming the post, refusals named by what the post says, the form's message in the
page with what was selected kept, and alerts acknowledged lately still listed."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import Mention, ModerationAction, Reply
from tests.community import test_console_pages as pages
from tests.community.test_console_pages import alert_line, held_post, login, status_line

rt, client, world = pages.rt, pages.client, pages.world  # the console's fixtures


def row_of(page: str, attr: str, row_id: int) -> str:
    match = re.search(rf'<tr {attr}="{row_id}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert match, f"no row {attr}={row_id}"
    return match.group(1)


async def test_a_held_post_shows_its_scores_times_links_and_that_it_is_hidden(client, rt, world):
    m, hold = await held_post(world)
    await login(client, "mod", "/moderation")
    row = row_of(await (await client.get("/moderation")).text(), "data-action-id", hold.id)
    assert "spam 0.97" in row and "toxicity 0.02" in row and "sensitivity" in row  # probabilities, not labels
    assert f"posted {m.created_at:%Y-%m-%d %H:%M}" in row and f"held {hold.created_at:%H:%M} UTC" in row
    assert f'<a href="{m.url}" rel="noopener noreferrer">Original post</a>' in row
    assert f'<a href="/conversations/{m.conversation_id}">Conversation</a>' in row
    assert "hidden on reddit" in row


async def test_a_post_address_that_is_not_a_web_address_is_not_linked(client, rt, world):
    m, hold = await held_post(world)
    async with rt.db.session() as s:
        (await s.get(Mention, m.id)).url = "javascript:alert(1)"
        await s.commit()
    await login(client, "mod", "/moderation")
    page = await (await client.get("/moderation")).text()
    assert "javascript:" not in page and "Original post" not in row_of(page, "data-action-id", hold.id)


async def test_recent_actions_name_the_post_by_a_redacted_snippet_with_links(client, rt, world):
    m = await world.mention("giveaway! mail winners@example.com for free premium", platform="reddit", issue="other",
                            pii=[{"type": "email", "start": 15, "end": 34}])
    await world.run(m)
    async with rt.db.session() as s:
        action = await s.scalar(select(ModerationAction).where(ModerationAction.mention_id == m.id))
    await login(client, "mod", "/moderation")
    row = row_of(await (await client.get("/moderation")).text(), "data-recent-id", action.id)
    assert "giveaway! mail [email] for free premium" in row and "winners@" not in row
    assert f'href="{m.url}"' in row and f'href="/conversations/{m.conversation_id}"' in row


async def test_a_single_decision_is_confirmed_once_naming_the_post(client, rt, world):
    _, hold = await held_post(world)
    csrf = await login(client, "mod", "/moderation")
    r = await client.post(f"/moderation/{hold.id}/review", data={"decision": "approve", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/moderation"
    assert status_line(await (await client.get("/moderation")).text()) == "«buy followers cheap» approved."
    assert status_line(await (await client.get("/moderation")).text()) is None  # shown once


async def test_a_refused_decision_is_explained_in_the_page_with_what_was_typed_kept(client, rt, world):
    _, hold = await held_post(world)
    _, other = await held_post(world, "followers for sale", "seller2")
    csrf = await login(client, "mod", "/moderation")
    r = await client.post(f"/moderation/{hold.id}/review", data={"decision": "ban", "reason": " ", "csrf_token": csrf})
    page = await r.text()
    assert r.status == 400 and r.content_type == "text/html" and "<h1>Moderation queue</h1>" in page
    assert alert_line(page) == "banning needs a reason for its author"
    r = await client.post("/moderation/bulk", data=[("ids", str(hold.id)), ("decision", "remove"),
                                                    ("reason", ""), ("csrf_token", csrf)])
    page = await r.text()
    assert r.status == 400 and alert_line(page) == "removing a post needs a reason for its author"
    assert re.search(rf'name="ids" value="{hold.id}"[^>]*checked', page)  # the selection is kept
    assert not re.search(rf'name="ids" value="{other.id}"[^>]*checked', page)
    assert '<option value="remove" selected>' in page
    assert world.connectors["reddit"].calls == []  # nothing done


async def test_a_bulk_decision_refused_for_every_post_names_them_in_the_page(client, rt, world):
    _, hold = await held_post(world)
    csrf = await login(client, "mod", "/moderation")
    await client.post(f"/moderation/{hold.id}/review", data={"decision": "approve", "csrf_token": csrf})
    r = await client.post("/moderation/bulk", data=[("ids", str(hold.id)), ("decision", "approve"),
                                                    ("csrf_token", csrf)])
    assert r.status == 400
    assert alert_line(await r.text()) == "nothing approved: «buy followers cheap» (this item was already reviewed)"


async def test_taking_back_a_bot_reply_is_confirmed_and_a_missing_reason_explained_in_the_page(client, rt, world):
    m = await world.mention("how do I reset my password", platform="reddit", issue="account_access")
    async with rt.db.session() as s:
        reply = Reply(dedup_key="auto:test", mention_id=m.id, conversation_id=m.conversation_id, platform="reddit",
                      visibility="public", kind="auto_answer", text="Hi there, this should help: https://kb/reset",
                      status="sent", sent_by="bot", external_ids=["t1_r1"])
        s.add(reply)
        await s.commit()
    csrf = await login(client, "mod", "/moderation")
    url = f"/moderation/replies/{reply.id}/delete"
    r = await client.post(url, data={"csrf_token": csrf, "reason": ""})
    assert r.status == 400 and alert_line(await r.text()) == (
        "say why the reply «Hi there, this should help: https://kb/reset» is taken back")
    r = await client.post(url, data={"csrf_token": csrf, "reason": "wrong article"}, allow_redirects=False)
    assert r.status == 303 and world.connectors["reddit"].kinds() == ["delete_reply"]
    page = await (await client.get("/moderation")).text()
    assert status_line(page) == "Reply «Hi there, this should help: https://kb/reset» taken back."
    assert f'data-reply-id="{reply.id}"' not in page


async def test_a_refused_platform_call_is_explained_in_the_page(client, rt, world):
    m = await world.mention("how do I reset my password", platform="reddit", issue="account_access")
    async with rt.db.session() as s:
        reply = Reply(dedup_key="auto:test2", mention_id=m.id, conversation_id=m.conversation_id, platform="reddit",
                      visibility="public", kind="auto_answer", text="Try this", status="sent", sent_by="bot",
                      external_ids=["t1_r2"])
        s.add(reply)
        await s.commit()
    world.connectors["reddit"].fail = True
    csrf = await login(client, "mod", "/moderation")
    r = await client.post(f"/moderation/replies/{reply.id}/delete", data={"csrf_token": csrf, "reason": "wrong"})
    assert r.status == 502 and alert_line(await r.text()) == "the platform refused to delete «Try this»: 403 Forbidden"


async def test_oversized_or_foreign_digit_ids_are_not_found_or_refused_never_a_500(client, rt, world):
    csrf = await login(client, "mod", "/moderation")
    for path in (f"/moderation/{10**30}/review", f"/moderation/alerts/{10**30}/acknowledge",
                 f"/moderation/replies/{10**30}/delete"):
        r = await client.post(path, data={"decision": "approve", "csrf_token": csrf}, allow_redirects=False)
        assert r.status == 404, path
    r = await client.post("/moderation/bulk", data={"decision": "approve", "ids": str(10**30), "csrf_token": csrf})
    assert r.status == 400 and "ids must be numbers" in await r.text()


async def on_platform(rt, mention: Mention, event: str) -> None:
    """The connector reports the post deleted (``delete``) or shown again (``restore``), through ingest."""
    from listener.ingest import ingest_batch
    from listener.protocol import NormalizedMention
    from models import Conversation

    async with rt.db.session() as s:
        thread = (await s.get(Conversation, mention.conversation_id)).thread_key.split(":", 1)[1]
        await ingest_batch(s, [NormalizedMention(platform=mention.platform, external_id=mention.external_id,
                                                 text=mention.text, created_at=mention.created_at,
                                                 conversation_id=thread, event=event)])
        await s.commit()


async def test_a_held_post_deleted_on_its_platform_leaves_the_queue_and_a_stale_decision_is_refused(
        client, rt, world):
    """Its author deleted it (or Reddit's moderators removed it): nothing is left to approve or remove,
    and the platform would refuse it. Restored, it waits for a decision again."""
    m, hold = await held_post(world)
    _, other = await held_post(world, "followers for sale", "seller2")
    csrf = await login(client, "mod", "/moderation")
    await on_platform(rt, m, "delete")
    page = await (await client.get("/moderation")).text()
    assert f'data-action-id="{hold.id}"' not in page and f'data-action-id="{other.id}"' in page
    r = await client.post(f"/moderation/{hold.id}/review", data={"decision": "approve", "csrf_token": csrf})
    assert r.status == 400
    assert alert_line(await r.text()) == ("«buy followers cheap»: the post was deleted on Reddit: "
                                          "there is nothing to approve there any more")
    assert world.connectors["reddit"].calls == []  # nothing asked of the platform
    async with rt.db.session() as s:
        assert (await s.get(ModerationAction, hold.id)).status == "pending"

    await on_platform(rt, m, "restore")
    assert f'data-action-id="{hold.id}"' in await (await client.get("/moderation")).text()


async def test_a_stale_pages_ban_of_a_post_deleted_on_its_platform_bans_its_author_alone(client, rt, world):
    """The spammer deleted the post: there is nothing left to remove and no one to tell of a removal,
    but the author is still banned, as the API's ban does."""
    m, hold = await held_post(world)
    csrf = await login(client, "mod", "/moderation")
    await on_platform(rt, m, "delete")
    r = await client.post(f"/moderation/{hold.id}/review",
                          data={"decision": "ban", "reason": "selling followers", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert world.connectors["reddit"].kinds() == ["ban"]  # no removal, no removal notice
    async with rt.db.session() as s:
        reviewed = await s.get(ModerationAction, hold.id)
        assert (reviewed.status, reviewed.details["decision"]) == ("reviewed", "ban")
        actions = (await s.scalars(select(ModerationAction.action).where(
            ModerationAction.mention_id == m.id, ModerationAction.id != hold.id))).all()
        assert sorted(actions) == ["ban", "filter"]  # the hold's own filter, and no removal
        assert not (await s.scalars(select(Reply).where(Reply.mention_id == m.id))).all()
