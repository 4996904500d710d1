"""The QA report on the real triage engine (cascade): thank-yous that name the outage or offline mode
are not told the outage status, not grouped into the outage and not given the outage checks; mixed
posts that report the outage are, and praise keeps going where it went."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from listener.protocol import NormalizedMention
from models import Incident, IncidentMention, IncidentUpdate, Mention, Reply, RouteDecision, TriageResult
from service.runtime import Runtime
from service.seed import seed_demo

OPENED = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
THANKS = ["@AcmeHelp thanks, offline mode saved my commute today!",
          "@AcmeHelp thank you for fixing the outage so fast, you're the best",
          "@AcmeHelp offline mode saved my 12 hour flight, ty",  # the cheap head: outage, neutral
          "thx @AcmeHelp offline mode is a lifesaver during the outage",
          "@AcmeHelp ty for the status updates during the outage"]
MIXED = ["@AcmeHelp thanks for nothing, app is down again",
         "@AcmeHelp thanks but it's still down"]  # the cheap head: outage, positive
PRAISE = "@AcmeHelp love the new playlist feature, thanks!"


def post(i: int, text: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=f"t{i}", text=text, created_at=OPENED + timedelta(minutes=i),
                             author_id=f"u{i}", author_handle=f"fan{i}", author_name=f"Fan {i}")


async def routed(rt: Runtime) -> dict[str, tuple[str, str, str, list[Reply], bool]]:
    """text → (issue type, sentiment, outcome, public replies, grouped into an incident)."""
    async with rt.db.session() as s:
        rows = (await s.execute(select(Mention, TriageResult, RouteDecision)
                                .join(TriageResult, TriageResult.mention_id == Mention.id)
                                .join(RouteDecision, RouteDecision.mention_id == Mention.id))).all()
        replies = list(await s.scalars(select(Reply).where(Reply.visibility == "public")))
        grouped = set(await s.scalars(select(IncidentMention.mention_id)))
    return {m.text: (t.issue_type, t.sentiment, d.outcome, [r for r in replies if r.mention_id == m.id], m.id in grouped)
            for m, t, d in rows}


async def test_thank_yous_get_no_outage_answer_and_mixed_posts_still_do(embedded_settings, triager):
    rt = await Runtime.open(embedded_settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        await rt.submit([post(i, text) for i, text in enumerate([*THANKS, *MIXED, PRAISE])])
        await rt.pipeline.wait_idle(timeout=120)
        out = await routed(rt)
    finally:
        await rt.close()
    assert out["@AcmeHelp offline mode saved my 12 hour flight, ty"][0] == "outage"  # what QA saw
    for text in [*THANKS, PRAISE]:
        issue, sentiment, outcome, replies, _ = out[text]
        assert (outcome, replies) == ("ignore", []), (text, issue, sentiment)
    for text in MIXED:
        issue, sentiment, outcome, replies, _ = out[text]
        assert issue == "outage" and outcome == "auto_answer", (text, sentiment, outcome)
        assert [r.template for r in replies] == ["outage_check"]


async def test_during_an_outage_thank_yous_are_not_told_the_status_and_mixed_posts_are(embedded_settings, triager):
    rt = await Runtime.open(embedded_settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        async with rt.db.session() as s:
            incident = Incident(dedup_key="outage:x:qa", issue_type="outage", channel="x", title="Outage",
                                opened_at=OPENED)
            s.add(incident)
            await s.flush()
            s.add(IncidentUpdate(incident_id=incident.id, kind="status", actor="alice",
                                 message="Playback is down; engineers are on it."))
            await s.commit()
        await rt.start()
        await rt.submit([post(i, text) for i, text in enumerate([*THANKS, *MIXED])])
        await rt.pipeline.wait_idle(timeout=120)
        out = await routed(rt)
    finally:
        await rt.close()
    for text in THANKS:
        issue, sentiment, outcome, replies, grouped = out[text]
        assert (outcome, replies, grouped) == ("ignore", [], False), (text, issue, sentiment)
    for text in MIXED:
        issue, sentiment, outcome, replies, grouped = out[text]
        assert (outcome, grouped) == ("broadcast", True), (text, issue, sentiment)
        assert [(r.kind, r.template) for r in replies] == [("status", "outage_status")]


# A thank-you triage files under a type the bot answers with a template or an article: QA saw "thanks,
# the family plan works now" (product_question / billing) answered with the family-plan article.
ANSWERED_THANKS = ["@AcmeHelp got the invoice as a PDF, thanks",  # the cheap head: billing, positive
                   "@AcmeHelp parcel arrived today, thanks",  # order_delivery
                   "@AcmeHelp headphones arrived a day early and the packaging is so nice 😍"]  # the demo day's
QUESTION = "@AcmeHelp thanks, but how do I add my sister to the family plan?"  # product_question


async def test_a_thank_you_gets_no_template_or_article_and_a_question_with_thanks_still_does(embedded_settings,
                                                                                           triager):
    rt = await Runtime.open(embedded_settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        await rt.submit([post(i, text) for i, text in enumerate([*ANSWERED_THANKS, QUESTION])])
        await rt.pipeline.wait_idle(timeout=120)
        out = await routed(rt)
    finally:
        await rt.close()
    assert {out[text][0] for text in ANSWERED_THANKS} == {"billing", "order_delivery"}  # what QA saw
    for text in ANSWERED_THANKS:
        issue, sentiment, outcome, replies, _ = out[text]
        assert (outcome, replies) == ("ignore", []), (text, issue, sentiment)
    issue, sentiment, outcome, replies, _ = out[QUESTION]
    assert (issue, outcome) == ("product_question", "auto_answer"), (sentiment, outcome)
    [reply] = replies
    assert "family-plan" in reply.text, reply.text
