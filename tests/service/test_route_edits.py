"""An edit can make a post more sensitive than its first decision allowed for: a card number added to
an answered question, a takeover told in an edit. The post is routed again — hidden, redacted, its
author told, or escalated — and an edit never makes a decision less careful."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from listener.protocol import NormalizedMention
from models import AuditEvent, Case, Mention, ModerationAction, Reply, RouteDecision
from models.mentions import DELETED_TEXT
from service.runtime import Runtime
from service.seed import seed_demo

FIRST = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def post(external_id: str, text: str, *, handle: str = "nia") -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=external_id, text=text, created_at=FIRST,
                             author_id=f"u-{handle}", author_handle=handle, author_name=handle.title())


async def route_of(rt: Runtime, external_id: str) -> tuple[Mention, RouteDecision]:
    async with rt.db.session() as s:
        return (await s.execute(select(Mention, RouteDecision).join(RouteDecision, RouteDecision.mention_id == Mention.id)
                                .where(Mention.external_id == external_id))).one()


async def redecided(rt: Runtime) -> list[AuditEvent]:
    async with rt.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "route.redecided")
                                    .order_by(AuditEvent.id)))  # in the order they were written


async def test_an_edit_that_exposes_a_card_or_tells_of_a_takeover_is_routed_again(embedded_settings, triager):
    rt = await Runtime.open(embedded_settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        question = post("9001", "@AcmeHelp how do I change my plan to the family one?")
        praise = post("9002", "@AcmeHelp love the new playlist feature, thanks!", handle="kim")
        await rt.submit([question, praise])
        await rt.pipeline.wait_idle(timeout=120)
        _, before = await route_of(rt, "9001")
        assert before.outcome not in ("moderate", "escalate_private")

        later = FIRST + timedelta(minutes=5)
        await rt.submit([replace(question, text=question.text + " my card 4111 1111 1111 1111 keeps failing",
                                 edited_at=later),
                         replace(praise, text=praise.text + " really great", edited_at=later)])
        await rt.pipeline.wait_idle(timeout=120)
        mention, after = await route_of(rt, "9001")
        assert after.outcome == "moderate" and after.details["redact"] is True
        assert mention.hidden and "4111" not in mention.text and "[card_number]" in mention.text
        async with rt.db.session() as s:
            hides = list(await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == mention.id)))
        assert [a.action for a in hides] == ["hide"]
        events = await redecided(rt)
        assert [(e.object_id, e.details["was"]) for e in events] == [(str(mention.id), before.outcome)]
        _, kept = await route_of(rt, "9002")  # an edit that asks for no more care keeps its decision
        assert kept.outcome not in ("moderate", "escalate_private")

        await rt.submit([replace(post("9003", "@AcmeHelp is the app down?", handle="ola"))])
        await rt.pipeline.wait_idle(timeout=120)
        await rt.submit([replace(post("9003", "@AcmeHelp is the app down? someone hacked my account and changed "
                                              "my email, I can't log in", handle="ola"), edited_at=later)])
        await rt.pipeline.wait_idle(timeout=120)
        takeover, decision = await route_of(rt, "9003")
        assert decision.outcome == "escalate_private"
        async with rt.db.session() as s:
            assert await s.scalar(select(Case.id).where(Case.opened_by_mention_id == takeover.id)) is not None

        await rt.submit([replace(question, text=question.text + " my card 4111 1111 1111 1111 keeps failing",
                                 edited_at=later)])  # the same edit again: a redelivery changes nothing
        await rt.pipeline.wait_idle(timeout=120)
        assert len(await redecided(rt)) == 2

        # a later edit puts the number back (or the platform restores the post): redacted again
        await rt.submit([replace(question, text=question.text + " card is 4111 1111 1111 1111 exp 04/29",
                                 edited_at=later + timedelta(minutes=5))])
        await rt.pipeline.wait_idle(timeout=120)
        mention, again = await route_of(rt, "9001")
        assert again.outcome == "moderate" and "4111" not in mention.text and "[card_number]" in mention.text
        assert [e.details["was"] for e in await redecided(rt)][-1] == "moderate"
    finally:
        await rt.close()


async def test_a_post_back_on_its_platform_is_routed_again_and_its_cancelled_answer_is_not_sent_twice(
        embedded_settings, triager):
    """A tweet's deletion removed the words of its routing reason with its content; when X shows it
    again its decision is made again from the words it has now (with an audit event), and a reply
    already made for it is not made twice."""
    rt = await Runtime.open(embedded_settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        question = post("9101", "@AcmeHelp how do I change my plan to the family one?")
        await rt.submit([question])
        await rt.pipeline.wait_idle(timeout=120)
        _, before = await route_of(rt, "9101")
        assert before.reason != DELETED_TEXT
        async with rt.db.session() as s:
            replies_before = (await s.scalars(select(Reply.dedup_key).where(Reply.mention_id == before.mention_id))).all()

        gone = NormalizedMention(platform="x", external_id="9101", text="", created_at=FIRST, event="delete",
                                 remove_content=True)
        await rt.submit([gone])
        await rt.pipeline.wait_idle(timeout=120)
        _, scrubbed = await route_of(rt, "9101")
        assert (scrubbed.id, scrubbed.reason) == (before.id, DELETED_TEXT)

        await rt.submit([replace(question, event="restore", edited_at=FIRST + timedelta(hours=1))])
        await rt.pipeline.wait_idle(timeout=120)
        mention, after = await route_of(rt, "9101")
        assert (mention.deleted, mention.text) == (False, question.text)
        assert after.reason not in (DELETED_TEXT, "") and after.outcome == before.outcome
        assert [(e.object_id, e.reason, e.details["was"]) for e in await redecided(rt)] == [
            (str(mention.id), "restored on its platform", before.outcome)]
        async with rt.db.session() as s:
            replies = (await s.scalars(select(Reply.dedup_key).where(Reply.mention_id == mention.id))).all()
        assert sorted(replies) == sorted(replies_before)  # nothing made twice

        await rt.submit([replace(question, event="restore", edited_at=FIRST + timedelta(hours=1))])  # redelivered
        await rt.pipeline.wait_idle(timeout=120)
        assert len(await redecided(rt)) == 1
    finally:
        await rt.close()
