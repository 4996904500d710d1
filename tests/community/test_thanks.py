"""What QA saw: a thank-you that names the outage or offline mode, read as ``outage`` by the cheap
issue-type head, was answered in public with the outage template, told the incident's status and
counted as an outage report. It goes where praise goes; a mixed post ("thanks for nothing, app is
down again") is still a report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from community import broadcast
from community.reports import is_report, is_thanks
from models import Incident, IncidentMention, Reply, RouteDecision
from tests.community.conftest import T0
from tests.community.test_incidents import DAY0, POLICY, incidents, match, store

THANKS = ["@brand thanks, offline mode saved my commute today!",
          "thank you for fixing the outage so fast, you're the best",
          "@AcmeHelp offline mode saved my 12 hour flight, ty", "I want to thank the whole team, back online"]
MIXED = ["thanks for nothing, app is down again", "@AcmeHelp thanks but it's still down",
         "@AcmeHelp app down again, thanks a lot", "@AcmeHelp thanks! is the app down though? nothing plays",
         # a question without its mark, a wish, a loss: from the demo day, each read positive or as praise
         "@AcmeHelp I want to go back to the free plan, how",
         "@AcmeHelp music is back but my queue and my downloads for tonight got wiped 😑"]


@pytest.mark.parametrize("text", THANKS)
@pytest.mark.parametrize("sentiment", ["positive", "neutral"])
def test_a_thank_you_is_not_a_report_whatever_issue_type_it_names(text, sentiment):
    assert is_thanks(text, sentiment)
    assert not is_report(text, sentiment, 0.95, 0.0, min_confidence=0.25)


@pytest.mark.parametrize("text", MIXED)
@pytest.mark.parametrize("sentiment", ["positive", "neutral", "negative"])
def test_a_problem_wins_over_thanks(text, sentiment):
    assert not is_thanks(text, sentiment, praise_probability=0.9)
    assert is_report(text, sentiment, 0.9, 0.9, min_confidence=0.25)


def test_thanks_in_words_that_read_negative_is_sarcasm_unless_the_head_reads_praise():
    assert not is_thanks("thanks a lot acme, 3 hours without music", "negative")
    assert is_thanks("kudos to Acme for fixing the outage so fast last night", "negative", praise_probability=0.6)
    assert is_thanks("offline mode is the best", "positive")  # positive, nothing wrong: praise
    assert not is_thanks("@AcmeHelp is acme down for everyone", "neutral", praise_probability=0.1)


async def decision(world, mention) -> RouteDecision:  # noqa: ANN001
    [d] = await world.get(RouteDecision, mention_id=mention.id)
    return d


@pytest.mark.parametrize("text", THANKS)
@pytest.mark.parametrize("sentiment", ["positive", "neutral"])
async def test_a_thank_you_read_as_outage_goes_where_praise_goes_not_to_the_outage_template(
        world, connectors, text, sentiment):
    thanks = await world.mention(text, issue="outage", issue_p=0.9, sentiment=sentiment)
    praise = await world.mention("@AcmeHelp love the new playlist feature, thanks!", issue="praise",
                                 sentiment="positive")
    await world.run(thanks, praise)
    assert (await decision(world, thanks)).outcome == (await decision(world, praise)).outcome == "ignore"
    assert await world.get(Reply, mention_id=thanks.id) == [] and connectors["x"].calls == []


async def test_a_mixed_post_outside_an_incident_still_gets_the_outage_checks(world):
    # an hour apart: six outage reports in one window would be a count climbing toward a spike
    # (community.incidents: rising), for an agent rather than the checks
    mixed = [await world.mention(text, issue="outage", issue_p=0.9, sentiment="positive", at=T0 + timedelta(hours=i))
             for i, text in enumerate(MIXED)]
    await world.run(*mixed)
    for m in mixed:
        d = await decision(world, m)
        assert (d.outcome, d.details["answer"]["ref"]) == ("auto_answer", "outage_check"), m.text


@pytest.mark.parametrize("issue", ["billing", "product_question", "order_delivery"])
async def test_a_thank_you_under_another_type_is_not_answered_with_the_outage_checks_retrieval_finds(
        world, issue):
    """Retrieval found the outage template for "ty for the status updates" (0.985, shared words)."""
    thanks = await world.mention("@AcmeHelp ty for the status updates during the outage, love the status page",
                                 issue=issue, issue_p=0.3, sentiment="positive")
    await world.run(thanks)
    d = await decision(world, thanks)
    offered = [(d.details.get(k) or {}).get("ref") for k in ("answer", "suggestion")]
    assert not {"outage_check", "service-status", "outage_status"} & set(offered), (d.outcome, offered)
    assert not [r for r in await world.get(Reply, mention_id=thanks.id) if r.template == "outage_check"]


async def test_a_request_that_says_thanks_is_still_answered(world):
    request = await world.mention("@AcmeHelp need to reset my password, thanks", issue="account_access",
                                  sentiment="neutral")
    await world.run(request)
    d = await decision(world, request)
    assert (d.outcome, d.details["answer"]["ref"]) == ("auto_answer", "login_help")


async def test_during_an_outage_a_thank_you_is_not_told_the_status_nor_grouped_but_a_mixed_post_is(world):
    opened = T0 + timedelta(hours=5)
    report = await world.mention("@AcmeHelp is acme down? nothing plays", author="ana", issue="outage",
                                 sentiment="negative", at=opened)
    async with world.db.session() as s:
        incident = Incident(dedup_key="outage:x:thanks", issue_type="outage", channel="x", title="Outage",
                            opened_at=opened)
        s.add(incident)
        await s.flush()
        s.add(IncidentMention(incident_id=incident.id, mention_id=report.id))
        await broadcast.post_status(s, incident, "Playback is down; engineers are on it.", "alice", policy=POLICY)
        await s.commit()
    at = opened + timedelta(minutes=10)
    thanks = [await world.mention(text, issue="outage", sentiment=sentiment, at=at)
              for text in THANKS for sentiment in ("positive", "neutral")]
    mixed = [await world.mention(text, issue="outage", sentiment=sentiment, at=at)
             for text, sentiment in zip(MIXED, ("negative", "positive", "positive", "neutral"))]
    await world.run(*thanks, *mixed)
    async with world.db.session() as s:
        grouped = set(await s.scalars(select(IncidentMention.mention_id)))
        status = {r.mention_id for r in await s.scalars(select(Reply).where(Reply.kind == "status"))}
    for m in thanks:
        assert (await decision(world, m)).outcome == "ignore", m.text
    for m in mixed:
        assert (await decision(world, m)).outcome == "broadcast", m.text
    assert grouped == {report.id} | {m.id for m in mixed}
    assert {m.id for m in mixed} <= status and not status & {m.id for m in thanks}


async def test_a_thank_you_grouped_before_this_rule_is_not_told_the_status_but_a_mixed_report_is(world):
    opened = T0 + timedelta(hours=6)
    thanks = await world.mention(THANKS[0], author="tia", issue="outage", sentiment="neutral", at=opened)
    mixed = await world.mention(MIXED[1], author="uma", issue="outage", sentiment="positive", at=opened)
    async with world.db.session() as s:
        incident = Incident(dedup_key="outage:x:old", issue_type="outage", channel="x", title="Outage",
                            opened_at=opened)
        s.add(incident)
        await s.flush()
        s.add_all([IncidentMention(incident_id=incident.id, mention_id=m.id) for m in (thanks, mixed)])
        _, replies = await broadcast.post_status(s, incident, "We are restoring playback.", "alice", policy=POLICY)
        _, fixed = await broadcast.close(s, incident, "alice", policy=POLICY)
        await s.commit()
    assert [r.mention_id for r in replies] == [r.mention_id for r in fixed] == [mixed.id]


async def test_a_burst_of_thank_yous_read_as_outage_is_not_counted_towards_a_spike(db):
    at = DAY0 + timedelta(hours=10)
    thanks = await store(db, [at + timedelta(seconds=10 * i) for i in range(40)], sentiment="neutral",
                         text="ty @AcmeHelp, offline mode saved my commute")
    reports = await store(db, [at + timedelta(seconds=500 + i) for i in range(3)], text="acme down?")
    assert await match(db, thanks + reports) == {}
    assert await incidents(db) == []


async def test_a_burst_of_mixed_reports_that_read_positive_opens_an_incident(db):
    at = DAY0 + timedelta(hours=10)
    mixed = await store(db, [at + timedelta(seconds=10 * i) for i in range(12)], sentiment="positive",
                        text="thanks but it's still down")
    found = await match(db, mixed)
    [incident] = await incidents(db)
    assert found == {m: incident.id for m in mixed}


# --- QA: a thank-you under a type the bot answers got an unrelated article ----------------------------
# "thanks, the family plan works now" read as product_question or billing was answered in public with the
# family-plan article (retrieval 0.61): nothing in a thank-you asks a question, so it goes where praise goes.
FAMILY_THANKS = "@AcmeHelp thanks, the family plan works now"
FAMILY_QUESTION = "@AcmeHelp thanks, but how do I add my sister to the family plan?"


@pytest.mark.parametrize("issue", ["product_question", "billing"])
@pytest.mark.parametrize("sentiment", ["positive", "neutral"])
async def test_a_thank_you_under_a_type_the_bot_answers_gets_no_article_and_no_reply(world, connectors, issue,
                                                                                     sentiment):
    thanks = await world.mention(FAMILY_THANKS, issue=issue, issue_p=0.3, sentiment=sentiment)
    await world.run(thanks)
    d = await decision(world, thanks)
    assert (d.outcome, d.reason) == ("ignore", f"{issue}: thanks or praise, not a report: nothing to answer")
    assert "answer" not in d.details
    assert await world.get(Reply, mention_id=thanks.id) == [] and connectors["x"].calls == []


@pytest.mark.parametrize("issue", ["product_question", "billing"])
async def test_a_question_that_says_thanks_still_gets_the_family_plan_article(world, issue):
    question = await world.mention(FAMILY_QUESTION, issue=issue, issue_p=0.3, sentiment="positive")
    await world.run(question)
    d = await decision(world, question)
    assert (d.outcome, d.details["answer"]["ref"]) == ("auto_answer", "family-plan")
    [reply] = await world.get(Reply, mention_id=question.id)
    assert reply.visibility == "public"


async def test_a_thank_you_on_a_community_channel_is_not_given_an_answer_nor_left_to_the_community(world, connectors):
    """From the demo day: "the family plan is still the best value..." on reddit, read as billing,
    was linked to the family-plan article as if the community had answered a question."""
    thanks = await world.mention("honestly the family plan is still the best value streaming deal I have. "
                                 "6 accounts for $20", platform="reddit", issue="billing", issue_p=0.5,
                                 sentiment="positive")
    await world.run(thanks)
    assert (await decision(world, thanks)).outcome == "ignore"
    assert await world.get(Reply, mention_id=thanks.id) == [] and connectors["reddit"].calls == []


async def test_a_thank_you_under_a_feature_request_still_reaches_an_agent_with_the_acknowledgement(world, connectors):
    """"would love a dark mode, thanks!" reports nothing broken and asks nothing in words is_thanks
    knows: a person weighs it, with the type's own acknowledgement to send; nothing goes out by itself."""
    wish = await world.mention("@AcmeHelp would love a dark mode on the web player, thanks!", issue="feature_request",
                               issue_p=0.8, sentiment="positive")
    await world.run(wish)
    d = await decision(world, wish)
    assert (d.outcome, d.details["suggestion"]["ref"]) == ("agent_queue", "feature_ack")
    assert connectors["x"].calls == []
