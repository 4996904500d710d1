"""Personal data posted in public, and the public notices of private cases: an agent's one-click
escalation hides the post on the platform before anything public is said beside it, redacts it
and tells the author privately; the private notice goes out even without its template; and a
public notice never claims a DM that did not go out."""

from __future__ import annotations

from sqlalchemy import delete, select

from escalation.handoff import PUBLIC_DM_REQUEST_NOTICE, PUBLIC_SECURE_NOTICE, escalate_mention
from listener.protocol import ActionResult
from models import AuditEvent, Author, Case, Mention, ModerationAction, Reply, Template
from service.dispatch import Dispatcher

EMAIL = "pat.doe@example.com"


async def only(world, model, **where):
    [row] = await world.get(model, **where)
    return row


async def leaked(world, platform="x", **kw):
    text = f"@AcmeHelp my refund is late, reach me at {EMAIL} please"
    at = text.index(EMAIL)
    return await world.mention(text, platform=platform, author="pat_d", issue="billing", sensitivity="account",
                               pii=[{"type": "email", "start": at, "end": at + len(EMAIL)}], **kw)


async def escalate(world, mention):
    async with world.db.session() as s:
        row = await s.get(Mention, mention.id)
        _, added = await escalate_mention(s, row, world.settings, "session:alice")
        await s.commit()
    await Dispatcher(world.db, world.connectors, False).deliver([r.id for r in added])  # what the console does


async def test_one_click_escalation_hides_the_post_before_the_public_notice_is_delivered(world, connectors):
    m = await leaked(world)
    await escalate(world, m)
    await escalate(world, m)  # a second click: nothing twice
    calls = connectors["x"].calls
    kinds = [c.kind for c in calls]
    assert kinds.count("hide") == 1 and kinds.count("public_reply") == 1
    assert kinds.index("hide") < kinds.index("public_reply")  # hidden on the platform first
    assert calls[kinds.index("hide")].target_external_id == m.external_id
    hide = await only(world, ModerationAction, mention_id=m.id)
    assert (hide.action, hide.status, hide.rule) == ("hide", "done", "builtin:pii")
    stored = await only(world, Mention, id=m.id)
    assert stored.hidden and EMAIL not in stored.text and "refund" in stored.text
    replies = {r.kind: r for r in await world.get(Reply, mention_id=m.id)}
    assert set(replies) == {"notice", "secure_link", "secure_link_dm"}
    assert replies["notice"].visibility == "private" and replies["notice"].template == "pii_removed_notice"
    assert replies["secure_link"].text == PUBLIC_SECURE_NOTICE
    assert all(r.status == "sent" for r in replies.values())
    assert all(EMAIL not in c.text for c in calls if c.text)
    assert kinds.index("private_message") < kinds.index("public_reply")  # the DM the notice speaks of, first


async def test_the_private_notice_goes_out_with_built_in_words_when_its_template_is_missing(world, connectors):
    async with world.db.session() as s:
        await s.execute(delete(Template).where(Template.name == "pii_removed_notice"))
        await s.commit()
    card = "4111 1111 1111 1111"
    text = f"why does my card {card} keep failing"
    m = await world.mention(text, platform="reddit", author="kimberly", issue="billing",
                            pii=[{"type": "card_number", "start": text.index(card), "end": text.index(card) + len(card)}])
    await world.run(m)
    notice = await only(world, Reply, mention_id=m.id)
    assert (notice.visibility, notice.kind, notice.status) == ("private", "notice", "sent")
    assert "hidden your post" in notice.text and "Kimberly" in notice.text
    assert card not in notice.text and "4111" not in notice.text
    assert connectors["reddit"].kinds() == ["remove", "private_message"]


async def test_without_a_way_to_dm_the_public_notice_asks_for_a_dm_and_never_claims_one(world, connectors):
    m = await world.mention("@AcmeHelp someone hacked my account and changed the email", author="lee_c",
                            sensitivity="security", issue="account_security")
    async with world.db.session() as s:  # an author the brand cannot message privately
        author = await s.get(Author, m.author_id)
        author.handle, author.platform_user_id = None, None
        await s.commit()
    await world.run(m)
    [notice] = await world.get(Reply, mention_id=m.id)
    assert (notice.kind, notice.visibility, notice.status) == ("secure_link", "public", "sent")
    assert notice.text == PUBLIC_DM_REQUEST_NOTICE and "secure link" not in notice.text
    assert "hacked" not in notice.text and "email" not in notice.text
    case = await only(world, Case, opened_by_mention_id=m.id)
    [event] = await world.get(AuditEvent, action="case.dm_unavailable")
    assert event.object_id == str(case.id)


class RefusingDMs:
    """A platform that accepts public replies but refuses private messages (closed DMs)."""

    def __init__(self, inner) -> None:
        self.inner, self.platform = inner, inner.platform

    async def perform(self, action):
        if action.kind == "private_message":
            self.inner.calls.append(action)
            return ActionResult(ok=False, error="403 this user does not accept messages")
        return await self.inner.perform(action)


async def test_when_the_dm_fails_the_public_notice_is_reworded_before_it_is_sent(world, connectors):
    world.act.dispatcher.connectors = {**connectors, "x": RefusingDMs(connectors["x"])}
    m = await world.mention("@AcmeHelp there are charges on my card I never made", author="ray_k",
                            sensitivity="fraud", issue="fraud")
    await world.run(m)
    replies = {r.kind: r for r in await world.get(Reply, mention_id=m.id)}
    assert replies["secure_link_dm"].status == "failed"
    notice = replies["secure_link"]
    assert notice.status == "sent" and notice.text == PUBLIC_DM_REQUEST_NOTICE
    assert connectors["x"].kinds() == ["private_message", "public_reply"]
    assert connectors["x"].calls[1].text == PUBLIC_DM_REQUEST_NOTICE
    async with world.db.session() as s:  # the secure-link wording was never posted
        assert not await s.scalar(select(Reply.id).where(Reply.text == PUBLIC_SECURE_NOTICE))
