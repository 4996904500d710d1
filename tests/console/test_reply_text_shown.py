"""A reply's text is shown in the console as the thread shows it, a secure link masked, and a
moderator takes back only the bot replies the moderation page lists: public ones that went out (or
may have), never a private message carrying a customer's secure link, nor one still in the outbox."""

from __future__ import annotations

import re

from models import Reply
from tests.console.conftest import add_mention, login

TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCd"
LINK = f"https://care.example.com/secure/{TOKEN}"


async def add_reply(runtime, m, *, text: str, visibility: str = "public", status: str = "sent",
                    kind: str = "auto_answer", key: str) -> int:
    async with runtime.db.session() as s:
        r = Reply(dedup_key=key, mention_id=m.id, conversation_id=m.conversation_id, platform=m.platform,
                  visibility=visibility, kind=kind, text=text, status=status, sent_by="bot")
        s.add(r)
        await s.commit()
        return r.id


async def status_of(runtime, reply_id: int) -> str:
    async with runtime.db.session() as s:
        return (await s.get(Reply, reply_id)).status


async def test_a_moderator_cannot_take_back_a_private_or_unsent_bot_reply_nor_read_it(app_client, runtime):
    m = await add_mention(runtime, "someone took over my account", sensitivity="security",
                          outcome="escalate_private")
    dm = await add_reply(runtime, m, text=f"Hi carol, continue here: {LINK}", visibility="private",
                         kind="secure_link_dm", key="t:dm")
    queued = await add_reply(runtime, m, text=f"Hi carol, continue here: {LINK}", visibility="private",
                             kind="secure_link_dm", status="pending", key="t:dm2")
    outbox = await add_reply(runtime, m, text="We've sent you a DM", status="pending", kind="secure_link",
                             key="t:pending")
    csrf = await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    for reply_id in (dm, queued, outbox):
        assert f'data-reply-id="{reply_id}"' not in page
        for reason in ("", "wrong"):  # the refusal names nothing: not even that the reply exists
            r = await app_client.post(f"/moderation/replies/{reply_id}/delete",
                                      data={"csrf_token": csrf, "reason": reason}, allow_redirects=False)
            assert r.status == 404 and TOKEN not in await r.text() and "continue here" not in await r.text()
        assert await status_of(runtime, reply_id) in ("sent", "pending")


async def test_a_bot_reply_holding_a_secure_link_is_listed_and_quoted_masked(app_client, runtime):
    m = await add_mention(runtime, "the link you sent me fails", handle="dana")
    reply_id = await add_reply(runtime, m, text=f"Please use this link again: {LINK}", key="t:pub")
    csrf = await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    row = re.search(rf'<tr data-reply-id="{reply_id}">(.*?)</tr>', page, re.DOTALL).group(1)
    assert TOKEN not in page and "Please use this link again: [secure link]" in row
    r = await app_client.post(f"/moderation/replies/{reply_id}/delete", data={"csrf_token": csrf, "reason": ""})
    html = await r.text()
    assert r.status == 400 and TOKEN not in html and "«Please use this link again: [secure link]»" in html
    r = await app_client.post(f"/moderation/replies/{reply_id}/delete", data={"csrf_token": csrf, "reason": "wrong"})
    html = await r.text()
    assert r.status == 200 and TOKEN not in html and "taken back" in html
    assert await status_of(runtime, reply_id) == "deleted"


async def test_replies_to_earlier_contacts_mask_a_secure_link_still_in_the_outbox(app_client, runtime):
    earlier = await add_mention(runtime, "someone took over my account", sensitivity="security",
                                outcome="escalate_private", handle="carol")
    await add_reply(runtime, earlier, text=f"Hi carol, continue here: {LINK}", visibility="private",
                    kind="secure_link_dm", status="pending", key="t:dm")
    today = await add_mention(runtime, "also my invoice is wrong", handle="carol")
    await login(app_client, "alice")
    html = await (await app_client.get(f"/conversations/{today.conversation_id}")).text()
    earlier_replies = re.search(r"<h3>Replies to earlier contacts</h3>\s*<ul[^>]*>(.*?)</ul>", html, re.DOTALL).group(1)
    assert "Hi carol, continue here: [secure link]" in earlier_replies
    assert TOKEN not in html


async def test_every_bot_reply_a_moderator_may_take_back_shows_the_post_it_answers_redacted(app_client, runtime):
    """Whether a reply must go depends on what it answers: every listed reply shows that post (not
    only one whose sending was interrupted), as the page shows posts; its reason box has a label."""
    m = await add_mention(runtime, f"your link {LINK} fails, mail me at dana.k@example.com", handle="dana")
    reply_id = await add_reply(runtime, m, text="Sorry Dana, try the app instead", key="t:answered")
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    row = re.search(rf'<tr data-reply-id="{reply_id}">(.*?)</tr>', page, re.DOTALL).group(1)
    answers = re.search(r'<td class="answers">(.*?)</td>', row, re.DOTALL).group(1)
    assert "your link [secure link] fails, mail me at [email]" in answers and f'href="{m.url}"' in answers
    assert TOKEN not in page and "dana.k@" not in page
    assert re.search(rf'<label class="visually-hidden" for="take-back-{reply_id}">Why reply #{reply_id} is taken back',
                     row) and f'id="take-back-{reply_id}"' in row
