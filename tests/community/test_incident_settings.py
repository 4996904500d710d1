"""The incident thresholds are settings (``SOCIALCARE_INCIDENT_*``) that reach the detector, the
route stage and the status broadcast: changing one changes what happens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from community import broadcast
from community.incidents import SpikePolicy
from models import Incident, IncidentMention, Reply, RouteDecision
from tests.community.conftest import T0, community_settings
from tests.community.test_incidents import DAY0, incidents, match, store


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
