"""SLA timers: deadlines from the settings, breaches recorded once, audited, logged without
personal data, and shown to the console."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select

from escalation import sla
from models import AuditEvent, Case, SlaBreach
from models.base import utcnow


async def test_deadlines_follow_the_settings(tmp_path, sqlite_url, smtp_sink):
    from escalation_support import World, escalation_settings, open_world

    rt, client, *_ = await open_world(escalation_settings(tmp_path, sqlite_url, smtp_sink.port,
                                                          sla_first_response_minutes=15, sla_resolution_hours=4))
    try:
        from escalation.cases import SlaPolicy

        policy = SlaPolicy.from_settings(rt.settings)
        assert policy.first_response == timedelta(minutes=15) and policy.resolution == timedelta(hours=4)
        case_id, _ = await World(rt, client, 0, 0).case("someone")  # opened with the default policy
        async with rt.db.session() as s:
            case = await s.get(Case, case_id)
            assert case.resolution_due - case.first_response_due == timedelta(hours=23)
    finally:
        await client.close()
        await rt.close()


async def test_breaches_are_recorded_once_audited_and_logged_without_personal_data(world, caplog):
    late, _ = await world.case("maria_music3", text="my card 4111 1111 1111 1111 was used")
    on_time, _ = await world.case("someone_else")
    now = utcnow()
    async with world.rt.db.session() as s:
        case = await s.get(Case, late)
        case.first_response_due, case.resolution_due = now - timedelta(minutes=5), now + timedelta(hours=1)
        other = await s.get(Case, on_time)
        other.first_response_due = now - timedelta(minutes=5)
        other.first_response_at = now - timedelta(minutes=10)  # answered in time
        await s.commit()
    with caplog.at_level(logging.WARNING, logger="socialcare.escalation.sla"):
        assert await sla.sweep(world.rt.db) == 1
        assert await sla.sweep(world.rt.db) == 0  # idempotent
    async with world.rt.db.session() as s:
        rows = list(await s.scalars(select(SlaBreach)))
        audits = list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "sla.breached")))
    assert [(b.case_id, b.kind) for b in rows] == [(late, "first_response")]
    assert [a.object_id for a in audits] == [str(late)]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"case {late}" in logged and "4111 1111" not in logged and "maria" not in logged.lower()


async def test_a_late_resolution_and_a_late_answer_are_breaches_too(world):
    case_id, _ = await world.case("maria_music3")
    now = utcnow()
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        case.first_response_due, case.resolution_due = now - timedelta(hours=2), now - timedelta(hours=1)
        case.first_response_at = now - timedelta(minutes=90)  # answered, but 30 minutes late
        case.status, case.resolved_at = "resolved", now - timedelta(minutes=1)
        await s.commit()
        new = await sla.check_breaches(s)
        await s.commit()
    assert sorted(b.kind for b in new) == ["first_response", "resolution"]


async def test_breaches_reach_the_console_and_the_api(world):
    case_id, _ = await world.case("maria_music3")
    async with world.rt.db.session() as s:
        (await s.get(Case, case_id)).first_response_due = utcnow() - timedelta(seconds=1)
        await s.commit()
    await sla.sweep(world.rt.db)
    await world.login("alice")
    page = await (await world.client.get("/cases")).text()
    assert "1 SLA breach on open cases" in page and 'class="breached"' in page
    api = await (await world.client.get("/api/v1/cases/breaches")).json()
    assert [(b["case_id"], b["kind"]) for b in api["breaches"]] == [(case_id, "first_response")]


async def test_a_deadline_gone_since_the_checkers_last_pass_reads_as_breached(world):
    """The checker runs once a minute: between its passes the pages still say a deadline went."""
    case_id, _ = await world.case("maria_music3")
    answered, _ = await world.case("someone_else")
    now = utcnow()
    async with world.rt.db.session() as s:
        (await s.get(Case, case_id)).first_response_due = now - timedelta(seconds=1)
        other = await s.get(Case, answered)
        other.first_response_due, other.first_response_at = now - timedelta(minutes=5), now - timedelta(minutes=10)
        await s.commit()
    await world.login("alice")
    page = await (await world.client.get("/cases")).text()  # no sweep has run
    assert "1 SLA breach on open cases" in page
    assert f'<tr data-case-id="{case_id}" class="breached">' in page
    assert f'<tr data-case-id="{answered}">' in page  # answered in time
    one = await (await world.client.get(f"/cases/{case_id}")).text()
    assert "breached" in one
    async with world.rt.db.session() as s:
        assert await s.scalar(select(SlaBreach.id)) is None  # shown, not recorded: the checker records (and audits) it
    await sla.sweep(world.rt.db)
    page = await (await world.client.get("/cases")).text()
    assert "1 SLA breach on open cases" in page  # recorded and live: counted once


async def test_the_periodic_checker_runs_until_stopped(world):
    case_id, _ = await world.case("maria_music3")
    async with world.rt.db.session() as s:
        (await s.get(Case, case_id)).resolution_due = utcnow() - timedelta(seconds=1)
        await s.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(sla.run_periodically(world.rt.db, 0.05, stop))
    for _ in range(100):
        async with world.rt.db.session() as s:
            if await s.scalar(select(SlaBreach.id).where(SlaBreach.case_id == case_id)):
                break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
    async with world.rt.db.session() as s:
        kinds = list(await s.scalars(select(SlaBreach.kind).where(SlaBreach.case_id == case_id)))
    assert kinds == ["resolution"]


async def test_every_list_of_cases_counts_the_open_cases_breaches_and_marks_its_own(world):
    """The count is of every open case, listed or not; a resolved case shows the breach recorded for it."""
    recorded, _ = await world.case("maria_music3")
    unrecorded, _ = await world.case("someone_else")
    resolved, _ = await world.case("third_one")
    now = utcnow()
    async with world.rt.db.session() as s:
        (await s.get(Case, recorded)).first_response_due = now - timedelta(minutes=5)
        late = await s.get(Case, resolved)
        late.resolution_due, late.status, late.resolved_at = now - timedelta(hours=1), "resolved", now
        await s.commit()
    await sla.sweep(world.rt.db)  # records two: the open case's and the late resolution
    async with world.rt.db.session() as s:  # missed since the sweep: shown, not yet recorded
        (await s.get(Case, unrecorded)).resolution_due = utcnow() - timedelta(seconds=1)
        await s.commit()
    await world.login("alice")
    for shown, listed in (("open", [recorded, unrecorded]), ("resolved", [resolved]),
                          ("all", [recorded, unrecorded, resolved])):
        page = await (await world.client.get(f"/cases?status={shown}")).text()
        assert "2 SLA breaches on open cases" in page, shown
        for case_id in listed:
            assert f'<tr data-case-id="{case_id}" class="breached">' in page, (shown, case_id)
