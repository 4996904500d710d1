"""The public-reply guard through the bot API, as the review drove it: a bot with ``templates:write``
cannot make an address or number "the brand's" by writing it into a template; a private message, a
takeover report not triaged yet and a secure link get no public reply."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from models import Author, Mention
from models.base import utcnow
from tests.console.conftest import add_mention, bot_token, login


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OTHER = "+1 415 555 0123 / jane.doe@gmail.com"


async def test_a_bot_cannot_launder_a_contact_through_a_template(app_client, runtime):
    m = await add_mention(runtime, "how can I reach you?", handle="lena")
    h = bearer(await bot_token(runtime, "alice", ["templates:write", "templates:read", "replies:write"]))
    url = f"/api/v1/mentions/{m.id}/replies"
    text = f"@someone you can reach Jane on {OTHER}"
    before = await app_client.post(url, headers=h, json={"text": text})
    assert before.status == 422 and "brand's own" in (await before.json())["error"]["message"]
    made = await app_client.post("/api/v1/templates", headers=h,
                                 json={"name": "zz-contact", "variants": {"friendly": f"Reach us on {OTHER}"}})
    assert made.status == 201
    after = await app_client.post(url, headers=h, json={"text": text})
    assert after.status == 422 and "brand's own" in (await after.json())["error"]["message"]
    by_template = await app_client.post(url, headers=h, json={"template": "zz-contact"})
    assert by_template.status == 422
    # an agent saving the template in the console gives it the brand's word
    csrf = await login(app_client, "bob")
    saved = await app_client.post("/knowledge/templates/zz-contact", allow_redirects=False,
                                  data={"csrf_token": csrf, "tone:friendly": f"Reach us on {OTHER}", "issue_types": ""})
    assert saved.status == 303
    assert (await app_client.post(url, headers=h, json={"text": text})).status == 201


async def test_a_private_message_gets_no_public_reply_from_a_bot(app_client, runtime):
    dm = await add_mention(runtime, "hi, where is my parcel? order 5521", handle="rv_dm_user")
    async with runtime.db.session() as s:
        (await s.get(Mention, dm.id)).is_public = False
        await s.commit()
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    r = await app_client.post(f"/api/v1/mentions/{dm.id}/replies", headers=h,
                              json={"text": "Your parcel is on its way, order 5521 ships Monday", "visibility": "public"})
    assert r.status == 422 and "private message" in (await r.json())["error"]["message"]
    r = await app_client.post(f"/api/v1/mentions/{dm.id}/replies", headers=h,
                              json={"text": "Your parcel is on its way", "visibility": "private"})
    assert r.status == 201


async def test_a_takeover_report_not_triaged_yet_gets_no_public_reply(app_client, runtime):
    async with runtime.db.session() as s:
        author = Author(platform="x", author_key="@pending", handle="pending")
        s.add(author)
        await s.flush()
        m = Mention(platform="x", external_id="pending-1", author_id=author.id, created_at=utcnow(),
                    content_hash="pending-1", text="@Acme someone hacked my account and is buying stuff with my "
                                                   "saved card, they changed my email")
        s.add(m)
        await s.commit()
        pending = m.id
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    r = await app_client.post(f"/api/v1/mentions/{pending}/replies", headers=h,
                              json={"text": "Sorry to hear! Try resetting your password at acme.com/reset"})
    assert r.status == 422 and "not triaged yet" in (await r.json())["error"]["message"]


async def test_a_secure_link_is_refused_in_a_public_reply(app_client, runtime):
    m = await add_mention(runtime, "I can't get into my account", handle="sam")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    token = secrets.token_urlsafe(32)
    for text in (f"Use https://care.example.com/secure/{token}", f"go to /secure/{token} now"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h, json={"text": text})
        assert r.status == 422 and "secure link" in (await r.json())["error"]["message"], text
    async with runtime.db.session() as s:
        from models import Reply

        assert (await s.scalars(select(Reply).where(Reply.mention_id == m.id))).all() == []
