"""The incident thresholds are settings (``SOCIALCARE_INCIDENT_*``) that reach the detector, the
route stage and the status broadcast: changing one changes what happens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from community import broadcast
from community.incidents import SpikePolicy
from models import Incident, IncidentMention, Reply, RouteDecision
from tests.community.conftest import T0, community_settings
from tests.community.test_incidents import DAY0, incidents, match, members, store


async def open_incident(world, opened, *members) -> Incident:  # noqa: ANN001
    async with world.db.session() as s:
        incident = Incident(dedup_key=f"outage:x:{opened.timestamp()}", issue_type="outage", channel="x",
                            title="Outage", opened_at=opened)
        s.add(incident)
        await s.flush()
        s.add_all([IncidentMention(incident_id=incident.id, mention_id=m.id) for m in members])
        await s.commit()
    return incident


async def outcome(world, mention) -> str:  # noqa: ANN001
    [d] = await world.get(RouteDecision, mention_id=mention.id)
    return d.outcome


@pytest.mark.parametrize(("confidence", "joins"), [(None, True), (0.5, False)])
async def test_the_report_confidence_decides_who_joins_an_open_incident(make_world, confidence, joins):
    world = make_world(**({} if confidence is None else {"incident_report_confidence": confidence}))
    opened = T0 + timedelta(hours=3)
    await open_incident(world, opened)
    unsure = await world.mention("@AcmeHelp acme down for anyone else", issue="outage", issue_p=0.4,
                                 sentiment="negative", at=opened + timedelta(minutes=5))
    await world.run(unsure)
    assert (await outcome(world, unsure) == "broadcast") is joins


@pytest.mark.parametrize(("quiet", "joins"), [(None, True), (10, False)])
async def test_the_quiet_time_decides_how_long_an_incident_collects_reports(make_world, quiet, joins):
    world = make_world(**({} if quiet is None else {"incident_quiet_minutes": quiet}))
    opened = T0 + timedelta(hours=4)
    await open_incident(world, opened)
    late = await world.mention("@AcmeHelp still down here", issue="outage", sentiment="negative",
                               at=opened + timedelta(minutes=20))
    await world.run(late)
    assert (await outcome(world, late) == "broadcast") is joins


async def test_the_status_reaches_only_the_reports_the_configured_confidence_admits(world, tmp_path):
    opened = T0 + timedelta(hours=5)
    sure = await world.mention("@AcmeHelp acme is down", author="ana", issue="outage", issue_p=0.9,
                               sentiment="negative", at=opened)
    unsure = await world.mention("@AcmeHelp acme down?", author="ben", issue="outage", issue_p=0.4,
                                 sentiment="negative", at=opened)
    incident = await open_incident(world, opened, sure, unsure)
    for confidence, told in ((0.25, {sure.id, unsure.id}), (0.5, {sure.id})):
        policy = SpikePolicy.from_settings(community_settings(tmp_path, incident_report_confidence=confidence))
        async with world.db.session() as s:
            _, replies = await broadcast.post_status(s, await s.get(Incident, incident.id), f"Update at {confidence}",
                                                     "alice", policy=policy, interval_minutes=0)
            await s.commit()
        assert {r.mention_id for r in replies} == told
    assert len(await world.get(Reply, kind="status")) == 3


async def test_the_spike_thresholds_from_the_settings_reach_the_detector(db, tmp_path):
    burst = await store(db, [DAY0 + timedelta(hours=10, seconds=20 * i) for i in range(6)])
    assert await match(db, burst, policy=SpikePolicy.from_settings(community_settings(tmp_path))) == {}
    lower = SpikePolicy.from_settings(community_settings(tmp_path, incident_min_count=5))
    assert set(await match(db, burst, policy=lower)) == set(burst)
    assert len(await incidents(db)) == 1


@pytest.mark.parametrize(("rising_count", "first_rising"), [(None, 3), (5, 5)])
async def test_reports_climbing_toward_a_spike_are_marked_rising_one_by_one_until_it_opens(db, tmp_path, rising_count,
                                                                                            first_rising):
    """Live, reports arrive a batch each: before the detector's threshold, a count above the usual is
    rising (what the router reads); the report that completes the spike opens the incident and every
    report of its window joins, the ones routed before it included."""
    settings = community_settings(tmp_path, **({} if rising_count is None else {"incident_rising_count": rising_count}))
    policy = SpikePolicy.from_settings(settings)
    start, ids = DAY0 + timedelta(hours=14), []
    for n in range(1, 9):
        ids += await store(db, [start + timedelta(seconds=40 * n)])
        found = await match(db, ids[-1:], policy=policy)
        if n < 8:
            assert found == {} and (ids[-1] in found.rising) is (n >= first_rising), n
            if n >= first_rising:
                assert found.rising[ids[-1]] == {"issue_type": "outage", "channel": "x", "count": n, "expected": 1.0,
                                                 "window_minutes": 30, "spike_at": 8}
    [incident] = await incidents(db)
    assert found == {ids[-1]: incident.id} and found.rising == {}
    assert await members(db, incident.id) == set(ids)


async def test_a_lone_report_on_a_quiet_day_is_not_rising_nor_a_usual_busy_hour_nor_log_in_trouble(db, tmp_path):
    """Log-in help does not deny a wider problem: three log-in reports a half-hour keep getting it."""
    policy = SpikePolicy.from_settings(community_settings(tmp_path))
    lone = await store(db, [DAY0 + timedelta(hours=9)])
    assert (await match(db, lone, policy=policy)).rising == {}
    logins = await store(db, [DAY0 + timedelta(hours=10, minutes=i) for i in range(4)], issue="account_access")
    assert (await match(db, logins, issue="account_access", policy=policy)).rising == {}
    # three an half-hour every half-hour for six hours: three is the usual here, not a climb
    busy = [DAY0 + timedelta(hours=12, minutes=10 * i) for i in range(37)]
    await store(db, busy[:-1])
    last = await store(db, busy[-1:])
    assert (await match(db, last, policy=policy)).rising == {}


async def test_reports_routed_while_they_climb_reach_an_agent_and_are_told_the_status_once_the_incident_opens(world):
    start, routed = T0 + timedelta(hours=6), []
    for n in range(8):
        report = await world.mention(f"@AcmeHelp is acme down? nothing loads {n}", author=f"fan{n}", issue="outage",
                                     sentiment="negative", at=start + timedelta(seconds=40 * n))
        await world.run(report)  # one batch each, as a live stream arrives
        [d] = await world.get(RouteDecision, mention_id=report.id)
        routed.append((report, d))
    assert [d.outcome for _, d in routed] == ["auto_answer"] * 2 + ["agent_queue"] * 5 + ["broadcast"]
    assert routed[2][1].reason.startswith("3 outage reports on x in the last 30 minutes (usually 1")
    checks = await world.get(Reply, template="outage_check")
    assert {r.mention_id for r in checks} == {routed[0][0].id, routed[1][0].id}  # before anything rose
    [incident] = await world.get(Incident)
    async with world.db.session() as s:
        _, replies = await broadcast.post_status(s, await s.get(Incident, incident.id), "Playback is down; on it.",
                                                 "alice", policy=world.route.spike)
        await s.commit()
    assert {r.mention_id for r in replies} == {m.id for m, _ in routed}  # the ones routed before it opened too
