"""No "we're on it" after "it's fixed": a status reply the act stage commits after an agent closed
its incident with the fix (the stage read the incident open just before) is superseded on its way
out — as the channel's queue is released, and as its send is claimed when it was queued after
that — never sent. On SQLite and on PostgreSQL (the incident is read from the reply's key)."""

from __future__ import annotations

from datetime import UTC, datetime

from worker_fakes import SentOnX

from community import broadcast
from community.broadcast import FIXED_FIRST
from community.incidents import SpikePolicy
from models import Incident, IncidentUpdate, Mention, Reply
from service.dispatch import Dispatcher

X = "x"


async def open_incidents(db, n: int = 2) -> list[tuple[int, int, int]]:  # noqa: ANN001
    """``n`` open incidents on X, each with a status posted and a mention: (incident, update, mention) ids."""
    out = []
    async with db.session() as s:
        for i in range(n):
            incident = Incident(dedup_key=f"outage:x:{i}", issue_type="outage", channel=X, title="Outage",
                                status="open")
            mention = Mention(platform=X, external_id=f"m{i}", text="app down?", created_at=datetime.now(UTC),
                              content_hash=f"h{i}")
            s.add_all([incident, mention])
            await s.flush()
            update = IncidentUpdate(incident_id=incident.id, kind="status", message="we're on it")
            s.add(update)
            await s.flush()
            out.append((incident.id, update.id, mention.id))
        await s.commit()
    return out


async def fix(db, incident_id: int) -> None:  # noqa: ANN001
    async with db.session() as s:
        await broadcast.close(s, await s.get(Incident, incident_id), "alice", policy=SpikePolicy())
        await s.commit()


async def status_reply(db, incident_id: int, update_id: int, mention_id: int, status: str = "pending") -> int:  # noqa: ANN001
    async with db.session() as s:
        reply = Reply(dedup_key=f"incident:{incident_id}:update:{update_id}:author:m{mention_id}",
                      mention_id=mention_id, platform=X, visibility="public", kind="status",
                      text=f"we're on it ({incident_id})", status=status)
        s.add(reply)
        await s.commit()
        return reply.id


async def outcome(db, reply_id: int) -> tuple[str, str | None]:  # noqa: ANN001
    async with db.session() as s:
        reply = await s.get(Reply, reply_id)
        return reply.status, reply.error


async def test_a_status_committed_after_the_fix_is_superseded_as_it_is_delivered_not_sent(db):
    """The act stage read the incident open; an agent closed it with the fix; the stage then added
    its status reply (:func:`community.broadcast.reply_to_new_mention`) and delivered it."""
    (fixed_id, update_id, mention_id), (open_id, open_update, open_mention) = await open_incidents(db)
    async with db.session() as act:
        incident, update = await act.get(Incident, fixed_id), await act.get(IncidentUpdate, update_id)
        mention = await act.get(Mention, mention_id)
        await fix(db, fixed_id)  # meanwhile
        late = await broadcast.reply_to_new_mention(act, incident, update, mention, None, interval_minutes=30,
                                                    dry_run=False)
        await act.commit()
        late_id = late.id
    still_open = await status_reply(db, open_id, open_update, open_mention)
    async with db.session() as s:  # the fix's own follow-up (a status_fixed reply): never superseded
        fixed = Reply(dedup_key=f"incident:{fixed_id}:fixed:author:m{mention_id}", mention_id=mention_id,
                      platform=X, visibility="public", kind="status_fixed", text="it's fixed", status="pending")
        s.add(fixed)
        await s.commit()
    x = SentOnX()
    await Dispatcher(db, {X: x}, dry_run=False).deliver([late_id, still_open, fixed.id])  # well under the pace
    assert await outcome(db, late_id) == ("superseded", FIXED_FIRST)
    assert await outcome(db, still_open) == await outcome(db, fixed.id) == ("sent", None)
    assert x.calls == [f"we're on it ({open_id})", "it's fixed"]


async def test_a_status_queued_after_the_queue_was_checked_is_superseded_as_its_send_is_claimed(db):
    """Between the release's check of the queue and its pick, the incident is fixed and a status
    reply the act stage committed after the fix is queued (by its own delivery): picked, it is
    superseded as its send is claimed, and the release goes on with the others."""
    (fixed_id, update_id, mention_id), (open_id, open_update, open_mention) = await open_incidents(db)
    waiting = await status_reply(db, open_id, open_update, open_mention, status="queued")  # the channel's queue
    x = SentOnX()
    pacer = Dispatcher(db, {X: x}, dry_run=False)
    check = pacer._paced_recently
    late: list[int] = []

    async def meanwhile(session, platform, now):  # noqa: ANN001, ANN202 - after the check, before the pick
        if not late:
            await fix(db, fixed_id)
            late.append(await status_reply(db, fixed_id, update_id, mention_id, status="queued"))
        return await check(session, platform, now)

    pacer._paced_recently = meanwhile
    assert await pacer.release_queued() == 1
    assert await outcome(db, late[0]) == ("superseded", FIXED_FIRST)
    assert await outcome(db, waiting) == ("sent", None)
    assert x.calls == [f"we're on it ({open_id})"]
