"""Rules that act beside the routing decision — notify, lock, label — from a rules file through the
real route and act stages: a notify opens an alert the console lists and a signed webhook carries
(without the post's text or author), a lock reaches the platform, a label is kept with the post."""

from __future__ import annotations

from datetime import timedelta

import pytest

from community import moderation
from console.webhooks_out import scan
from models import AuditEvent, Mention, ModerationAction, RouteDecision, WebhookDelivery, WebhookSubscription
from models.base import utcnow

RULES = """
- name: legal-threat
  keywords: [lawyer, lawsuit]
  action: notify
  notify: care-leads
  reason: A legal threat; a team lead answers.
- name: lock-heated-threads
  keywords: [flame war]
  action: lock
- name: tag-refunds
  keywords: [refund]
  action: label
  label: refunds
"""


@pytest.fixture
def ruled(make_world, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return make_world(moderation_rules_path=path)


async def only(world, model, **where):
    [row] = await world.get(model, **where)
    return row


async def test_notify_opens_an_alert_for_the_team_in_the_console_and_as_a_webhook(ruled, connectors):
    async with ruled.db.session() as s:  # a bot subscribed before the post arrived
        s.add(WebhookSubscription(name="leads-pager", url="https://pager.example/hook", secret="s" * 32,
                                  events=["moderation.notify"], created_by="root"))
        await s.commit()
    text = "@AcmeHelp my lawyer will hear about this, mail me at jo@example.com"
    at = text.index("jo@example.com")
    m = await ruled.mention(text, platform="reddit", author="jo_smith", issue="billing", sentiment="negative",
                            pii=[{"type": "email", "start": at, "end": at + len("jo@example.com")}])
    await ruled.run(m)
    await ruled.run(m)  # redelivered: one alert
    alerts = [a for a in await ruled.get(ModerationAction, mention_id=m.id) if a.action == "notify"]
    assert [(a.rule, a.status, a.details["notify"]) for a in alerts] == [("legal-threat", "alert", "care-leads")]
    assert connectors["reddit"].kinds().count("lock") == 0  # a notify does nothing on the platform
    event = await only(ruled, AuditEvent, action="moderation.notify")
    assert event.details == {"rule": "legal-threat", "notify": "care-leads"}

    async with ruled.db.session() as s:
        [shown] = await moderation.alerts(s)
    assert (shown["notify"], shown["rule"], shown["mention_id"]) == ("care-leads", "legal-threat", m.id)
    assert shown["reason"] == alerts[0].reason == "A legal threat; a team lead answers."  # the rule's own words
    assert "lawyer" in shown["text"] and "jo@example.com" not in shown["text"]

    assert await scan(ruled.db, now=utcnow() + timedelta(seconds=5)) == 1
    assert await scan(ruled.db, now=utcnow() + timedelta(seconds=5)) == 0  # once per alert
    delivery = await only(ruled, WebhookDelivery, event_type="moderation.notify")
    data = delivery.payload["data"]
    assert delivery.payload["id"] == f"moderation.notify:{alerts[0].id}"
    assert (data["notify"], data["rule"], data["mention_id"], data["platform"]) == (
        "care-leads", "legal-threat", m.id, "reddit")
    body = str(delivery.payload)
    assert "jo@example.com" not in body and "lawyer" not in body and "jo_smith" not in body  # no text, no author

    async with ruled.db.session() as s:
        row = await s.get(ModerationAction, alerts[0].id)
        assert await moderation.acknowledge(s, row, "session:lead")
        assert not await moderation.acknowledge(s, row, "session:lead")  # already in hand
        await s.commit()
        assert await moderation.alerts(s) == []
        [done] = await moderation.alerts(s, open_only=False)
    assert (done["status"], done["acknowledged_by"]) == ("acknowledged", "session:lead")


async def test_lock_reaches_reddit_and_discourse_and_is_only_recorded_on_x(ruled, connectors):
    r = await ruled.mention("this thread is a flame war now", platform="reddit", issue="other")
    d = await ruled.mention("stop this flame war please", platform="discourse", issue="other")
    x = await ruled.mention("@AcmeHelp flame war in your replies", platform="x", issue="other")
    await ruled.run(r, d, x)
    await ruled.run(r, d, x)
    assert connectors["reddit"].kinds() == ["lock"] and connectors["reddit"].calls[0].target_external_id == r.external_id
    assert connectors["discourse"].kinds() == ["lock"]
    assert "lock" not in connectors["x"].kinds()
    statuses = {m.platform: (await only(ruled, ModerationAction, mention_id=m.id)).status for m in (r, d, x)}
    assert statuses == {"reddit": "done", "discourse": "done", "x": "recorded"}
    for m in (r, d, x):
        assert not (await only(ruled, Mention, id=m.id)).hidden  # locked, not removed


async def test_label_is_recorded_with_the_post_and_changes_nothing_else(ruled, connectors):
    m = await ruled.mention("@AcmeHelp still waiting for my refund", platform="x", issue="billing",
                            sentiment="negative")
    await ruled.run(m)
    action = await only(ruled, ModerationAction, mention_id=m.id)
    assert (action.action, action.status, action.rule, action.details) == (
        "label", "recorded", "tag-refunds", {"label": "refunds"})
    decision = await only(ruled, RouteDecision, mention_id=m.id)
    assert decision.details["labels"] == ["refunds"] and decision.outcome != "moderate"
    assert [k for k in connectors["x"].kinds() if k not in ("public_reply",)] == []
