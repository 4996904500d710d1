"""Incidents: the spike detector on synthetic streams (a known outage; quiet days with their daily
peak), and the one-to-many replies: a status to everyone affected, a "fixed" follow-up."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from community import broadcast
from community.incidents import SpikePolicy, match_batch
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import (
    Author,
    Incident,
    IncidentMention,
    IncidentUpdate,
    Mention,
    Reply,
    RouteDecision,
    TriageResult,
)
from tests.community.conftest import scores

DAY0 = datetime(2026, 11, 16, tzinfo=timezone.utc)
POLICY = SpikePolicy(window=timedelta(minutes=30), min_count=8, factor=4.0, baseline_windows=12, history_days=3)


def daily_rhythm(day: int, per_window_at_peak: float = 10.0, sharp: bool = False) -> list[datetime]:
    """Outage-type reports of one ordinary day: a trough at night and an evening peak at 20:00,
    either smooth or a sharp step (12 an half-hour from 20:00 to 21:00, 1 otherwise)."""
    times = []
    for w in range(48):
        start = DAY0 + timedelta(days=day, minutes=30 * w)
        hour = w / 2
        if sharp:
            n = 12 if 20 <= hour < 21 else 1
        else:
            n = round(1 + (per_window_at_peak - 1) * (0.5 + 0.5 * math.cos((hour - 20) / 24 * 2 * math.pi)) ** 3)
        times += [start + timedelta(seconds=(i + 1) * 1800 / (n + 1)) for i in range(n)]
    return times


async def store(db, times: list[datetime], issue: str = "outage", platform: str = "x", *,
                sentiment: str = "negative", issue_p: float = 0.9, text: str = "is acme down?") -> list[int]:
    batch = [NormalizedMention(platform=platform, external_id=f"{issue}-{platform}-{t.timestamp()}-{i}",
                               text=f"{text} {i}", created_at=t, author_id=f"a{i % 50}",
                               author_handle=f"a{i % 50}")
             for i, t in enumerate(times)]
    async with db.session() as s:
        results = await ingest_batch(s, batch)
        sc = scores(issue, issue_p, sentiment=sentiment)
        for r in results:
            s.add(TriageResult(mention_id=r.mention_id, model_version="t", sentiment=sentiment, sensitivity="none",
                               issue_type=issue, toxicity="not_offensive", spam="ham", scores=sc))
        await s.commit()
    return [r.mention_id for r in results]


async def stream(db, times: list[datetime], issue: str = "outage", batch: int = 25) -> dict[int, int]:
    """Store and detect in pipeline-sized batches, in time order."""
    out: dict[int, int] = {}
    for i in range(0, len(times), batch):
        ids = await store(db, times[i:i + batch], issue)
        async with db.session() as s:
            mentions = list(await s.scalars(select(Mention).where(Mention.id.in_(ids))))
            out.update(await match_batch(s, [(m, issue) for m in mentions], POLICY))
            await s.commit()
    return out


async def incidents(db) -> list[Incident]:
    async with db.session() as s:
        return list(await s.scalars(select(Incident)))


async def test_a_known_outage_opens_one_incident_within_its_first_window_and_groups_later_reports(db):
    await store(db, [t for d in range(3) for t in daily_rhythm(d)])
    normal = daily_rhythm(3)
    outage_start = DAY0 + timedelta(days=3, hours=14)
    outage = [outage_start + timedelta(seconds=40 * i) for i in range(60)]  # 60 reports in 40 minutes
    found = await stream(db, sorted(normal + outage))
    [incident] = await incidents(db)
    assert incident.issue_type == "outage" and incident.channel == "x"
    assert outage_start <= incident.opened_at < outage_start + timedelta(minutes=30)
    async with db.session() as s:
        grouped = set(await s.scalars(select(IncidentMention.mention_id)))
        outage_ids = set(await s.scalars(select(Mention.id).where(Mention.created_at >= outage_start,
                                                                  Mention.created_at <= outage[-1])))
        [opened] = list(await s.scalars(select(IncidentUpdate)))
    assert outage_ids <= grouped  # every outage report, including those before and after it opened
    assert set(found) == grouped
    assert opened.kind == "opened" and opened.details["detector"]["count"] >= POLICY.min_count


async def test_quiet_days_with_their_evening_peak_open_no_incident(db):
    await stream(db, [t for d in range(4) for t in daily_rhythm(d)])
    assert await incidents(db) == []


async def test_a_sharp_daily_peak_is_expected_once_the_detector_has_seen_previous_days(db):
    await store(db, [t for d in range(3) for t in daily_rhythm(d, sharp=True)])
    await stream(db, daily_rhythm(3, sharp=True))
    assert await incidents(db) == []


async def test_without_history_the_same_sharp_peak_is_a_spike(db):
    """The control for the test above: the seasonal baseline is what keeps the peak quiet."""
    await stream(db, daily_rhythm(3, sharp=True))
    assert [i.issue_type for i in await incidents(db)] == ["outage"]


async def test_other_issue_types_never_open_incidents(db):
    burst = [DAY0 + timedelta(hours=10, seconds=10 * i) for i in range(40)]
    await stream(db, burst, issue="billing")
    assert await incidents(db) == []


# --- one-to-many replies --------------------------------------------------------------------------
async def outage_world(world, authors=("ana", "ben", "ana", "cy")):
    at = datetime(2026, 11, 20, 14, 0, tzinfo=timezone.utc)
    ms = [await world.mention(f"@AcmeHelp is acme down? nothing plays #{i}", author=a, issue="outage",
                              at=at + timedelta(seconds=20 * i)) for i, a in enumerate(authors)]
    async with world.db.session() as s:
        incident = Incident(dedup_key="outage:x:test", issue_type="outage", channel="x", title="Outage", opened_at=at)
        s.add(incident)
        await s.flush()
        s.add_all([IncidentMention(incident_id=incident.id, mention_id=m.id) for m in ms])
        await s.commit()
    return incident, ms


async def post(world, incident, message, **kw):
    async with world.db.session() as s:
        inc = await s.get(Incident, incident.id)
        update, replies = await broadcast.post_status(s, inc, message, "alice", policy=POLICY, **kw)
        await s.commit()
        return update, replies


async def test_a_status_reaches_every_affected_author_once_and_not_again_too_soon(world):
    incident, ms = await outage_world(world)
    update, replies = await post(world, incident, "Playback is down; engineers are on it.")
    assert update.recipients == 3 and len(replies) == 3  # ana posted twice, answered once
    by_author = {r.mention_id for r in replies}
    assert ms[2].id in by_author and ms[0].id not in by_author  # to the author's latest mention
    assert all("engineers are on it" in r.text and r.visibility == "public" for r in replies)
    update2, again = await post(world, incident, "Still working on it.", interval_minutes=30)
    assert again == [] and update2.details["skipped_recently_told"] == 3
    _, later = await post(world, incident, "Fix rolling out.", interval_minutes=0)
    assert len(later) == 3


async def test_a_status_with_personal_data_is_refused_before_anyone_is_told(world):
    """A status goes out in public to every affected author: a card number pasted into it never does."""
    incident, _ = await outage_world(world)
    with pytest.raises(broadcast.IncidentError, match="card number"):
        await post(world, incident, "Call us with card 4111 1111 1111 1111 and we'll refund you")
    async with world.db.session() as s:
        assert (await s.scalars(select(Reply))).all() == []
    _, replies = await post(world, incident, "Refunds are automatic; questions to help@acme.example")
    assert len(replies) == 3


async def test_an_author_without_a_name_is_greeted_as_there(world):
    incident, ms = await outage_world(world, authors=("ana",))
    async with world.db.session() as s:
        author = await s.get(Author, (await s.get(Mention, ms[0].id)).author_id)
        author.display_name, author.handle = None, None
        await s.commit()
    _, [reply] = await post(world, incident, "Playback is down.")
    assert reply.text.startswith("Hi there,") and "None" not in reply.text


async def test_a_mention_joining_later_gets_the_current_status_through_the_pipeline(world, connectors):
    incident, _ = await outage_world(world)
    await post(world, incident, "We are restoring playback.")
    late = await world.mention("@AcmeHelp acme down for anyone else?", author="dee", issue="outage",
                               at=datetime(2026, 11, 20, 14, 20, tzinfo=timezone.utc))
    await world.run(late)
    [decision] = await world.get(RouteDecision, mention_id=late.id)
    assert decision.outcome == "broadcast" and decision.details["incident_id"] == incident.id
    [reply] = await world.get(Reply, mention_id=late.id)
    assert reply.kind == "status" and "restoring playback" in reply.text and reply.status == "sent"
    await world.run(late)
    assert len(await world.get(Reply, mention_id=late.id)) == 1


async def test_closing_sends_one_fixed_follow_up_to_everyone_and_the_timeline_tells_the_story(world):
    incident, ms = await outage_world(world)
    await post(world, incident, "Investigating.")
    async with world.db.session() as s:
        inc = await s.get(Incident, incident.id)
        update, replies = await broadcast.close(s, inc, "alice", policy=POLICY)
        await s.commit()
        with pytest.raises(broadcast.IncidentError):
            await broadcast.close(s, inc, "alice", policy=POLICY)
        events = await broadcast.timeline(s, incident.id)
    assert len(replies) == 3 and {r.kind for r in replies} == {"status_fixed"}
    assert {r.template for r in replies} == {"outage_fixed"}
    assert sorted(next(n for n in ("Ana", "Ben", "Cy") if n in r.text) for r in replies) == ["Ana", "Ben", "Cy"]
    assert [e["kind"] for e in events if e["kind"] != "mentions"] == ["status", "fixed"]
    assert sum(e["details"].get("count", 0) for e in events if e["kind"] == "mentions") == len(ms)
    with pytest.raises(broadcast.IncidentError):
        await post(world, incident, "too late")


# --- pacing: a per-channel cap on one-to-many replies -----------------------------------------------
class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def paced(world, per_minute: int):
    from service.dispatch import Dispatcher

    clock = Clock(datetime.now(timezone.utc))
    return Dispatcher(world.db, world.connectors, False, paced_per_minute=per_minute, clock=clock), clock


async def sent_to(world) -> dict[int, list[str]]:
    """Author id -> the texts of the status replies the platform received for them."""
    out: dict[int, list[str]] = {}
    async with world.db.session() as s:
        for r, author_id in (await s.execute(select(Reply, Mention.author_id).join(Mention, Mention.id == Reply.mention_id)
                                             .where(Reply.status == "sent").order_by(Reply.sent_at, Reply.id))).all():
            out.setdefault(author_id, []).append(r.text)
    return out


async def test_a_status_for_more_authors_than_the_cap_is_paced_never_dropped_nor_duplicated(world, connectors):
    incident, _ = await outage_world(world, authors=[f"fan{i}" for i in range(5)])
    _, replies = await post(world, incident, "Playback is down; engineers are on it.")
    dispatcher, clock = paced(world, per_minute=2)
    await dispatcher.deliver([r.id for r in replies])
    await dispatcher.deliver([r.id for r in replies])  # delivered twice (a retry): nothing twice
    assert connectors["x"].kinds() == ["public_reply"] * 2
    assert sorted(r.status for r in await world.get(Reply)) == ["queued"] * 3 + ["sent"] * 2
    clock.advance(30)
    assert await dispatcher.release_queued() == 0  # this minute's two are spent
    clock.advance(31)
    assert await dispatcher.release_queued() == 2
    clock.advance(30)
    assert await dispatcher.release_queued() == 0
    clock.advance(31)
    assert await dispatcher.release_queued() == 1
    clock.advance(600)
    assert await dispatcher.release_queued() == 0
    told = await sent_to(world)
    assert len(told) == 5 and all(len(texts) == 1 for texts in told.values())  # everyone, once
    assert len({c.target_external_id for c in connectors["x"].calls}) == 5
    assert {r.status for r in await world.get(Reply)} == {"sent"}


async def test_a_newer_status_updates_the_replies_still_waiting_instead_of_adding_a_second(world, connectors):
    incident, _ = await outage_world(world, authors=[f"fan{i}" for i in range(5)])
    _, first = await post(world, incident, "Investigating.")
    dispatcher, clock = paced(world, per_minute=2)
    await dispatcher.deliver([r.id for r in first])  # two sent, three waiting
    update, second = await post(world, incident, "Fix rolling out.", interval_minutes=0)
    assert len(second) == 2 and update.details["refreshed_waiting"] == 3 and update.recipients == 5
    await dispatcher.deliver([r.id for r in second])  # behind the three already waiting
    for _ in range(4):
        clock.advance(61)
        await dispatcher.release_queued()
    told = await sent_to(world)
    assert sorted(len(texts) for texts in told.values()) == [1, 1, 1, 2, 2]
    assert all("Fix rolling out." in texts[-1] for texts in told.values())  # the newest, for everyone
    assert len(connectors["x"].calls) == 7


async def test_closing_supersedes_waiting_status_replies_and_everyone_gets_the_fix(world, connectors):
    incident, _ = await outage_world(world, authors=[f"fan{i}" for i in range(4)])
    _, first = await post(world, incident, "Investigating.")
    dispatcher, clock = paced(world, per_minute=1)
    await dispatcher.deliver([r.id for r in first])
    async with world.db.session() as s:
        _, fixed = await broadcast.close(s, await s.get(Incident, incident.id), "alice", policy=POLICY)
        await s.commit()
    await dispatcher.deliver([r.id for r in fixed])
    for _ in range(6):
        clock.advance(61)
        await dispatcher.release_queued()
    statuses = sorted((r.kind, r.status) for r in await world.get(Reply))
    assert statuses == [("status", "sent")] + [("status", "superseded")] * 3 + [("status_fixed", "sent")] * 4
    assert len(connectors["x"].calls) == 5


async def test_a_mention_joining_while_the_channel_is_at_its_cap_waits_for_its_slot(make_world, connectors):
    world = make_world(incident_broadcast_per_minute=1)
    incident, _ = await outage_world(world, authors=["ana", "ben"])
    _, replies = await post(world, incident, "We are restoring playback.")
    await world.act.dispatcher.deliver([r.id for r in replies])  # one sent, one waiting
    late = await world.mention("@AcmeHelp acme down for anyone else?", author="dee", issue="outage",
                               at=datetime(2026, 11, 20, 14, 20, tzinfo=timezone.utc))
    await world.run(late)
    [reply] = await world.get(Reply, mention_id=late.id)
    assert reply.status == "queued" and "restoring playback" in reply.text
    later = datetime.now(timezone.utc) + timedelta(minutes=1, seconds=1)
    assert await world.act.dispatcher.release_queued(now=later) == 1  # the oldest waiting reply first
    assert [r.status for r in await world.get(Reply, mention_id=late.id)] == ["queued"]
    assert await world.act.dispatcher.release_queued(now=later + timedelta(minutes=2)) == 1
    assert [r.status for r in await world.get(Reply, mention_id=late.id)] == ["sent"]


async def match(db, ids: list[int], issue: str = "outage", policy: SpikePolicy = POLICY) -> dict[int, int]:
    async with db.session() as s:
        mentions = list(await s.scalars(select(Mention).where(Mention.id.in_(ids))))
        found = await match_batch(s, [(m, issue) for m in mentions], policy)
        await s.commit()
    return found


async def members(db, incident_id: int) -> set[int]:
    async with db.session() as s:
        return set(await s.scalars(select(IncidentMention.mention_id).where(IncidentMention.incident_id == incident_id)))


async def open_on_x(db, at: datetime) -> Incident:
    async with db.session() as s:
        incident = Incident(dedup_key="outage:x:1", issue_type="outage", channel="x", title="X is down", opened_at=at)
        s.add(incident)
        await s.commit()
        return incident


async def test_one_batch_across_channels_joins_the_open_incident_of_its_own_channel_only(db):
    """An incident opened on X answers X: Reddit's posts about it are Reddit's to spike on."""
    at = DAY0 + timedelta(hours=9)
    incident = await open_on_x(db, at)
    x_ids = await store(db, [at + timedelta(seconds=i) for i in range(3)], platform="x")
    reddit_ids = await store(db, [at + timedelta(seconds=10 + i) for i in range(3)], platform="reddit")
    billing_ids = await store(db, [at + timedelta(seconds=20 + i) for i in range(3)], issue="billing")
    async with db.session() as s:
        mentions = {m.id: m for m in await s.scalars(select(Mention))}
        found = await match_batch(s, [(mentions[i], "outage") for i in x_ids + reddit_ids]
                                  + [(mentions[i], "billing") for i in billing_ids]
                                  + [(mentions[i], "account_access") for i in billing_ids[:1]], POLICY)
        await s.commit()
    assert [i.id for i in await incidents(db)] == [incident.id]
    assert found == {i: incident.id for i in x_ids}
    assert await members(db, incident.id) == set(x_ids)


async def test_only_outage_reports_join_not_thanks_praise_or_unsure_guesses(db):
    """What QA saw: "offline mode saved my 12 hour flight, ty" and a Discourse thank-you scored as
    outage joined the incident and were told "we're on it"."""
    at = DAY0 + timedelta(hours=14)
    incident = await open_on_x(db, at)
    t = at + timedelta(minutes=5)
    report = await store(db, [t], text="nothing plays, acme down?")
    thanks = await store(db, [t + timedelta(seconds=1)], sentiment="positive", text="offline mode saved my flight, ty")
    unsure = await store(db, [t + timedelta(seconds=2)], sentiment="neutral", issue_p=0.2, text="my Year in Sound")
    sure_but_neutral = await store(db, [t + timedelta(seconds=3)], sentiment="neutral", text="still down in Madrid")
    found = await match(db, report + thanks + unsure + sure_but_neutral)
    assert found == {report[0]: incident.id, sure_but_neutral[0]: incident.id}


async def test_a_post_written_before_the_spike_does_not_join_it(db):
    """A late delivery or a replay of the morning's posts is not part of the afternoon's outage."""
    at = DAY0 + timedelta(hours=14)
    incident = await open_on_x(db, at)
    morning = await store(db, [at - timedelta(hours=5)])
    just_before = await store(db, [at - POLICY.window + timedelta(minutes=1)])  # inside the spike's window
    assert await match(db, morning + just_before) == {just_before[0]: incident.id}


async def test_an_incident_without_reports_for_a_while_goes_quiet_and_stays_open(db):
    """A 16-day-old incident nobody closed pulled an unrelated "downloads vanished" post in. After
    ``quiet_after`` without a report it collects nothing more; closing (and whether to send the
    "fixed" follow-up) stays an agent's decision."""
    at = DAY0 + timedelta(hours=14)
    incident = await open_on_x(db, at)
    spike = await store(db, [at + timedelta(minutes=m) for m in range(0, 40, 5)])
    assert set(await match(db, spike)) == set(spike)
    within_at = at + timedelta(minutes=35) + POLICY.quiet_after - timedelta(minutes=1)
    within = await store(db, [within_at], text="still down")
    assert await match(db, within) == {within[0]: incident.id}  # the quiet time counts from the latest report
    later = await store(db, [within_at + POLICY.quiet_after + timedelta(minutes=1)], text="downloads vanished")
    days_later = await store(db, [at + timedelta(days=16)], text="downloads vanished")
    assert await match(db, later + days_later) == {}
    [still] = await incidents(db)
    assert still.status == "open" and await members(db, incident.id) == set(spike + within)


async def test_a_new_spike_after_a_quiet_incident_opens_a_new_one(db):
    first = DAY0 + timedelta(hours=10)
    second = first + timedelta(hours=5)
    found = await stream(db, [first + timedelta(seconds=40 * i) for i in range(30)]
                         + [second + timedelta(seconds=40 * i) for i in range(30)])
    old, new = sorted(await incidents(db), key=lambda i: i.id)
    assert old.opened_at < second <= new.opened_at and old.status == new.status == "open"
    assert {found[i] for i in await members(db, new.id)} == {new.id}
    assert await members(db, old.id) and not (await members(db, old.id)) & (await members(db, new.id))


async def test_a_burst_of_praise_scored_as_outage_opens_no_incident(db):
    burst = [DAY0 + timedelta(hours=10, seconds=10 * i) for i in range(40)]
    await store(db, burst, sentiment="positive", text="offline mode is the best")
    async with db.session() as s:
        mentions = list(await s.scalars(select(Mention)))
        assert await match_batch(s, [(m, "outage") for m in mentions], POLICY) == {}
    assert await incidents(db) == []


async def test_a_status_goes_only_to_the_reports_on_the_incidents_channel(world):
    """Members grouped before reports were told apart (a Reddit post, a thank-you, an unsure guess)
    are not told "we're on it", nor "it's fixed"."""
    incident, ms = await outage_world(world, authors=("ana",))
    at = ms[0].created_at + timedelta(minutes=5)
    strays = [await world.mention("Year in Sound roasted me", platform="reddit", author="rob", issue="outage", at=at),
              await world.mention("offline mode saved my flight, ty", author="tia", issue="outage",
                                  sentiment="positive", at=at),
              await world.mention("@AcmeHelp do downloads expire?", author="uma", issue="outage", issue_p=0.2, at=at)]
    async with world.db.session() as s:
        s.add_all([IncidentMention(incident_id=incident.id, mention_id=m.id) for m in strays])
        await s.commit()
    _, replies = await post(world, incident, "Playback is down; engineers are on it.")
    assert [r.mention_id for r in replies] == [ms[0].id]
    async with world.db.session() as s:
        _, fixed = await broadcast.close(s, await s.get(Incident, incident.id), "alice", policy=POLICY)
        await s.commit()
    assert [r.mention_id for r in fixed] == [ms[0].id]


async def test_a_late_thank_you_through_the_pipeline_is_not_broadcast_to(world):
    incident, ms = await outage_world(world)
    await post(world, incident, "We are restoring playback.")
    thanks = await world.mention("@AcmeHelp offline mode saved my 12 hour flight, ty", author="tia", issue="outage",
                                 sentiment="positive", at=ms[-1].created_at + timedelta(minutes=20))
    await world.run(thanks)
    [decision] = await world.get(RouteDecision, mention_id=thanks.id)
    assert decision.outcome != "broadcast"
    assert not [r for r in await world.get(Reply, mention_id=thanks.id) if r.kind == "status"]


async def test_a_spike_detected_late_opens_the_timeline_at_its_own_time_and_says_when_it_was_seen(world):
    """A backlog or a replay is detected days after the posts: the timeline keeps the posts' clock (the
    opening before the status an agent posted about it) and names the detection time."""
    from models import IncidentUpdate

    incident, ms = await outage_world(world)  # opened_at 2026-11-20 14:00
    async with world.db.session() as s:
        s.add(IncidentUpdate(incident_id=incident.id, kind="opened", actor="detector", message="Outage",
                             created_at=datetime(2026, 12, 6, 22, 28, tzinfo=timezone.utc)))
        await s.commit()
    await post(world, incident, "Investigating.")
    async with world.db.session() as s:
        events = await broadcast.timeline(s, incident.id)
    opened = next(e for e in events if e["kind"] == "opened")
    assert opened["at"] == datetime(2026, 11, 20, 14, 0, tzinfo=timezone.utc)
    assert opened["message"] == "Outage (detected 2026-12-06 22:28 UTC)"
    assert [e["kind"] for e in events] == ["opened", "mentions", "status"]
