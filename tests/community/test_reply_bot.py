"""The reply bot sends an automatic public answer only when every gate passes; each gate alone
blocks it, and a blocked answer becomes a one-click suggestion for an agent."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from community.replybot import GATES, ChannelPolicy, GateInput, blocked_by
from models import AuditEvent, Reply, RouteDecision

SAFE = GateInput(sensitivity="none", has_pii=False, toxicity="not_offensive", spam="ham", confidence=0.9,
                 thread_answered=False, author_recently_answered=False, sent_last_hour=0)
POLICY = ChannelPolicy(threshold=0.7, rate_per_hour=10, cooldown_hours=24)

ONE_GATE_EACH = {
    "sensitivity": dict(sensitivity="account"),
    "pii": dict(has_pii=True),
    "toxicity": dict(toxicity="offensive"),
    "spam": dict(spam="spam"),
    "confidence": dict(confidence=0.69),
    "thread_answered": dict(thread_answered=True),
    "author_cooldown": dict(author_recently_answered=True),
    "rate_limit": dict(sent_last_hour=10),
}


def test_a_safe_confident_first_answer_passes_every_gate():
    assert blocked_by(SAFE, POLICY) == []


@pytest.mark.parametrize("gate", sorted(ONE_GATE_EACH))
def test_each_gate_alone_blocks_the_reply(gate):
    assert blocked_by(replace(SAFE, **ONE_GATE_EACH[gate]), POLICY) == [gate]


def test_a_disabled_channel_blocks_everything_and_the_list_covers_every_gate():
    assert blocked_by(SAFE, replace(POLICY, enabled=False)) == ["enabled"]
    assert set(ONE_GATE_EACH) | {"enabled"} == set(GATES)


def test_channel_settings_override_the_defaults(tmp_path):
    from tests.community.conftest import community_settings

    s = community_settings(tmp_path, bot_rate_per_hour=50, bot_dry_run_channels=["reddit"],
                           bot_channels={"x": {"threshold": 0.8, "cooldown_hours": 2, "tone": "formal"}})
    x, reddit = ChannelPolicy.for_channel(s, "x"), ChannelPolicy.for_channel(s, "reddit")
    assert (x.threshold, x.cooldown_hours, x.rate_per_hour, x.dry_run, x.tone) == (0.8, 2.0, 50, False, "formal")
    assert (reddit.threshold, reddit.dry_run) == (s.auto_answer_threshold, True)
    with pytest.raises(ValueError, match="unknown keys"):
        ChannelPolicy.for_channel(community_settings(tmp_path, bot_channels={"x": {"treshold": 1}}), "x")


# --- the gates inside the act stage, with the real database -------------------------------------
LOGIN = "@AcmeHelp I forgot my password and the reset mail never arrives"


async def replies_of(world, mention):
    return await world.get(Reply, mention_id=mention.id)


async def test_a_safe_question_is_answered_in_public_once_and_audited(world, connectors):
    m = await world.mention(LOGIN)
    await world.run(m)
    await world.run(m)  # a redelivery sends nothing twice
    [reply] = await replies_of(world, m)
    assert (reply.kind, reply.status, reply.visibility, reply.template) == ("auto_answer", "sent", "public", "login_help")
    assert "help.acme.example" in reply.text and len(reply.text) <= 280
    assert connectors["x"].kinds() == ["public_reply"]
    [event] = await world.get(AuditEvent, action="bot.reply")
    assert event.object_id == str(m.id)


async def test_low_confidence_blocks_on_a_strict_channel_and_becomes_a_suggestion(make_world, connectors):
    world = make_world(bot_channels={"x": {"threshold": 0.9}})
    # one template answers cancellations: the cheap path decides with triage's confidence
    m = await world.mention("@AcmeHelp how do I cancel my plan?", issue="cancellation", issue_p=0.8)
    await world.run(m)
    [decision] = await world.get(RouteDecision, mention_id=m.id)
    assert decision.outcome == "auto_answer" and decision.confidence == pytest.approx(0.8)
    assert decision.details["bot"]["blocked_by"] == ["confidence"]
    [reply] = await replies_of(world, m)
    assert reply.status == "suggested" and connectors["x"].calls == []
    [event] = await world.get(AuditEvent, action="bot.suggested")
    assert "confidence" in event.reason


async def test_a_thread_already_answered_gets_no_second_bot_reply(world, connectors):
    first = await world.mention(LOGIN, author="ana")
    await world.run(first)
    follow_up = await world.mention("@AcmeHelp still can't sign in, forgot password again", author="ben",
                                    in_reply_to=first.external_id)
    await world.run(follow_up)
    [reply] = await replies_of(world, follow_up)
    assert reply.status == "suggested"
    [decision] = await world.get(RouteDecision, mention_id=follow_up.id)
    assert decision.details["bot"]["blocked_by"] == ["thread_answered"]
    assert connectors["x"].kinds() == ["public_reply"]


async def test_an_author_auto_answered_recently_is_not_answered_again(world, connectors):
    await world.run(await world.mention(LOGIN, author="carl"))
    again = await world.mention("@AcmeHelp how do I reset my password on the TV app", author="carl")
    await world.run(again)
    [reply] = await replies_of(world, again)
    assert reply.status == "suggested"
    [decision] = await world.get(RouteDecision, mention_id=again.id)
    assert decision.details["bot"]["blocked_by"] == ["author_cooldown"]


async def test_the_channel_rate_limit_turns_the_rest_of_a_burst_into_suggestions(make_world, connectors):
    world = make_world(bot_rate_per_hour=2)
    burst = [await world.mention(LOGIN + f" #{i}", author=f"burst{i}") for i in range(4)]
    await world.run(*burst)
    statuses = sorted(r.status for r in await world.get(Reply) if r.kind == "auto_answer")
    assert statuses == ["sent", "sent", "suggested", "suggested"]
    assert connectors["x"].kinds() == ["public_reply", "public_reply"]


@pytest.mark.parametrize("triage, gate_outcome", [
    (dict(sensitivity="account"), "agent_queue"),
    (dict(pii=[{"type": "email", "start": 0, "end": 4}]), "moderate"),
    (dict(toxicity=0.97), "moderate"),
    (dict(spam=0.97), "moderate"),
])
async def test_unsafe_mentions_never_get_a_public_bot_answer(world, connectors, triage, gate_outcome):
    m = await world.mention(LOGIN, **triage)
    await world.run(m)
    [decision] = await world.get(RouteDecision, mention_id=m.id)
    assert decision.outcome == gate_outcome
    assert not [r for r in await replies_of(world, m) if r.visibility == "public"]
    assert "public_reply" not in connectors["x"].kinds()


async def test_dry_run_channel_records_what_would_have_been_sent(make_world, connectors):
    world = make_world(bot_dry_run_channels=["x"])
    m = await world.mention(LOGIN)
    await world.run(m)
    [reply] = await replies_of(world, m)
    assert reply.status == "dry_run" and "help.acme.example" in reply.text
    assert connectors["x"].calls == []


async def test_a_bot_reply_can_be_taken_back_with_delete_reply(world, connectors):
    from community.replybot import revert_reply

    m = await world.mention(LOGIN)
    await world.run(m)
    async with world.db.session() as s:
        reply = await s.scalar(select(Reply).where(Reply.mention_id == m.id))
        result = await revert_reply(s, reply, connectors, "mod", "wrong answer")
        await s.commit()
    assert result.ok
    assert connectors["x"].calls[-1].kind == "delete_reply"
    assert connectors["x"].calls[-1].target_external_id == reply.external_ids[0]
    [reply] = await replies_of(world, m)
    assert reply.status == "deleted"
    [event] = await world.get(AuditEvent, action="bot.reply_deleted")
    assert event.actor == "mod" and event.reason == "wrong answer"


async def test_the_author_cooldown_expires_after_its_hours(make_world, connectors):
    """Two hours of cool-down: a second question just inside them waits for an agent, one just
    after them is answered by the bot again."""
    from datetime import timedelta

    from sqlalchemy import update

    world = make_world(bot_cooldown_hours=2)

    async def age_bot_replies(by: timedelta) -> None:  # the clock moves on: earlier replies get older
        async with world.db.session() as s:
            for r in await s.scalars(select(Reply).where(Reply.kind == "auto_answer")):
                await s.execute(update(Reply).where(Reply.id == r.id).values(created_at=r.created_at - by))
            await s.commit()

    await world.run(await world.mention(LOGIN, author="dora"))
    await age_bot_replies(timedelta(hours=1, minutes=58))
    inside = await world.mention("@AcmeHelp how do I reset my password on the TV app", author="dora")
    await world.run(inside)
    [held] = await replies_of(world, inside)
    assert held.status == "suggested"
    [decision] = await world.get(RouteDecision, mention_id=inside.id)
    assert decision.details["bot"]["blocked_by"] == ["author_cooldown"]

    await age_bot_replies(timedelta(minutes=4))  # the first answer is now 2 h 2 min old
    after = await world.mention("@AcmeHelp password reset link expired, how do I get a new one", author="dora")
    await world.run(after)
    [answered] = await replies_of(world, after)
    assert answered.status == "sent" and answered.kind == "auto_answer"
    [decision] = await world.get(RouteDecision, mention_id=after.id)
    assert decision.details["bot"]["blocked_by"] == []
    assert connectors["x"].kinds() == ["public_reply", "public_reply"]


async def test_a_dry_run_channel_only_records_every_automatic_reply_of_a_batch(make_world, connectors):
    """Not only the bot's answers: the secure-link notices and DMs an escalation queues on that
    channel are recorded too, however the batch's rows were flushed along the way."""
    world = make_world(bot_dry_run_channels=["x"])
    mentions = [await world.mention(f"@AcmeHelp someone hacked my account number {i}", sensitivity="security")
                for i in range(3)] + [await world.mention(LOGIN)]
    await world.run(*mentions)
    replies = [r for m in mentions for r in await replies_of(world, m)]
    assert {r.kind for r in replies} >= {"auto_answer"} and len(replies) >= 4
    assert {r.status for r in replies} == {"dry_run"}, [(r.kind, r.status) for r in replies]
    assert connectors["x"].calls == []
