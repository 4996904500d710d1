"""The bundled demo stream end to end: listen → triage → route → act, on SQLite with the in-process
bus and on PostgreSQL with Redis Streams and two workers per stage."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import select

from models import Author, Case, Conversation, Customer, Incident, Mention, Reply, RouteDecision
from service.runtime import Runtime
from service.seed import DEMO_MENTIONS, seed_demo
from triage.pii import detect_pii

SECURE_NOTICE = "We've sent you a secure link by DM — please don't share account details here."


def demo_labels() -> dict[tuple[str, str], dict]:
    out = {}
    for line in DEMO_MENTIONS.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out[(d["platform"], d["external_id"])] = d | {"labels": d["labels"]}
    return out


async def run_demo(settings, triager, workers: int):
    from service.seed import demo_settings

    rt = await Runtime.open(demo_settings(settings), triager=triager, workers=workers, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        await rt.feed_demo(DEMO_MENTIONS)
        await rt.pipeline.wait_idle(timeout=300)
        async with rt.db.session() as s:
            rows = (await s.execute(select(Mention, RouteDecision).join(RouteDecision,
                                                                        RouteDecision.mention_id == Mention.id))).all()
            replies = list(await s.scalars(select(Reply)))
            cases = list(await s.scalars(select(Case)))
            incidents = list(await s.scalars(select(Incident)))
            maria = await s.scalar(select(Author).where(Author.handle == "maria_music3"))
            maria_customer = await s.get(Customer, maria.customer_id) if maria and maria.customer_id else None
            maria_conv = await s.scalar(select(Conversation).join(Mention, Mention.conversation_id == Conversation.id)
                                        .where(Mention.author_id == maria.id)) if maria else None
            customer_of = dict((await s.execute(select(Author.id, Author.customer_id))).all())
        return rows, replies, cases, incidents, maria_customer, maria_conv, customer_of
    finally:
        await rt.close()


def check(result) -> None:
    rows, replies, cases, incidents, maria_customer, maria_conv, customer_of = result
    labels = demo_labels()
    assert len(rows) == len(labels)  # every mention routed, once
    by_label: dict[str, Counter] = {}
    routed = {}
    for m, d in rows:
        lab = labels[(m.platform, m.external_id)]["labels"]
        by_label.setdefault(lab["expected_route"], Counter())[d.outcome] += 1
        routed[m.id] = (m, d, lab)
        assert d.acted_at is not None
    share = {k: c[k] / sum(c.values()) for k, c in by_label.items()}
    assert share["escalate_private"] >= 0.9, by_label["escalate_private"]
    assert share["moderate"] >= 0.8, by_label["moderate"]
    assert share["broadcast"] >= 0.6, by_label["broadcast"]
    assert share["auto_answer"] >= 0.5, by_label["auto_answer"]
    agree = sum(c[k] for k, c in by_label.items()) / len(rows)
    assert agree >= 0.6

    # safety: nothing sensitive is answered in public, and no public reply carries personal data
    public = [r for r in replies if r.visibility == "public"]
    for r in public:
        assert detect_pii(r.text) == [], r.text
        m, d, lab = routed[r.mention_id]
        if lab["sensitivity"] in ("security", "fraud"):
            assert r.kind == "secure_link" and r.text == SECURE_NOTICE
    for m, d, lab in routed.values():
        if "card_number" in lab["pii"]:
            assert m.hidden, m.text
    assert all(r.status in ("dry_run", "suggested") for r in replies)  # the demo never sends

    # one case per escalating person (a customer's identities on several platforms share theirs),
    # each with its public notice; the known customer is linked
    escalated = {customer_of[m.author_id] or f"author {m.author_id}" for m, d, _ in routed.values()
                 if d.outcome == "escalate_private"}
    assert len(cases) == len(escalated)
    assert {c.customer_id or f"author {c.author_id}" for c in cases} == escalated
    assert {r.case_id for r in public if r.kind == "secure_link"} == {c.id for c in cases}
    assert maria_customer is not None and maria_customer.name == "Maria Lopez"
    assert maria_conv.customer_id == maria_customer.id

    # the outage spike opened an incident during the spike; the quiet types opened none
    outage = [i for i in incidents if i.issue_type == "outage"]
    assert len(outage) == 1 and outage[0].opened_at.hour == 14 and outage[0].opened_at.minute < 40
    assert not [i for i in incidents if i.issue_type == "account_access"]


async def test_demo_stream_end_to_end_embedded(embedded_settings, triager):
    check(await run_demo(embedded_settings, triager, workers=1))


@pytest.mark.timeout(600)
async def test_demo_stream_end_to_end_on_postgres_and_redis_streams(services_settings, triager):
    check(await run_demo(services_settings, triager, workers=2))


def spike_posts(until: str = "2026-11-20T14:09:30Z") -> list:
    """The demo day's posts on X from the outage spike's start (14:00) to a couple of minutes after its
    incident opened, in time order: reports, and whatever else was posted meanwhile."""
    from listener.replay import mention_from_record

    lines = [line for line in DEMO_MENTIONS.read_text(encoding="utf-8").splitlines()
             if "2026-11-20T14:00:00Z" <= json.loads(line)["created_at"] <= until]
    posts = [mention_from_record(json.loads(line), line, "x") for line in lines]
    return sorted((p for p in posts if p.platform == "x"), key=lambda p: p.created_at)


async def test_the_demo_outage_arriving_post_by_post_tells_no_reporter_there_is_no_wider_problem_once_it_rises(
        embedded_settings, triager):
    """Replayed at real speed, the seven reports written before the detector opened its incident were
    told "we're not seeing a wider problem" (all at once they were routed broadcast): from the third
    report in the window they reach an agent, and the incident's status reaches every report in it."""
    from community import broadcast
    from community.incidents import SpikePolicy
    from service.seed import demo_settings

    rt = await Runtime.open(demo_settings(embedded_settings), triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        for post in spike_posts():
            await rt.submit([post])
            await rt.pipeline.wait_idle(timeout=120)
        async with rt.db.session() as s:
            [incident] = list(await s.scalars(select(Incident)))
            rows = (await s.execute(select(Mention, RouteDecision)
                                    .join(RouteDecision, RouteDecision.mention_id == Mention.id)
                                    .order_by(Mention.created_at))).all()
            checks = {r.mention_id for r in await s.scalars(select(Reply).where(Reply.template == "outage_check"))}
            _, told = await broadcast.post_status(s, incident, "Playback is down everywhere; engineers are on it.",
                                                  "alice", policy=SpikePolicy.from_settings(rt.settings))
            await s.commit()
    finally:
        await rt.close()
    before = [(m, d) for m, d in rows if m.created_at < incident.opened_at]
    assert len(before) >= 5 and incident.opened_at.minute < 10
    rising = [(m, d) for m, d in before if d.details.get("rising")]
    assert len(rising) >= 4, [(m.text, d.outcome, d.reason) for m, d in before]
    assert all(d.outcome == "agent_queue" and " outage reports on x in the last 30 minutes" in d.reason
               for _, d in rising)
    assert len(checks) <= 2  # the first reports of a window look like any lone one
    assert not checks & {m.id for m, _ in rising}
    first_rising = min(m.created_at for m, _ in rising)
    assert not [m.text for m, d in before if m.created_at > first_rising and d.outcome == "auto_answer"]
    # the status reaches the reports routed before the incident opened, not only the later ones
    assert {m.id for m, _ in rising} <= {r.mention_id for r in told}
    assert checks <= {r.mention_id for r in told}
