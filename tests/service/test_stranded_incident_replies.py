"""The pacer's safety net for an incident's replies a dead deliverer left ``pending``: past the
stranded bound they join their channel's queue (sent paced, once), where a status reply of an
incident fixed meanwhile is superseded as the queue is released. On SQLite and on PostgreSQL (the
incident is read from the reply's key)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from worker_fakes import SentOnX

from models import Incident, IncidentUpdate, Reply
from models.base import utcnow
from service.dispatch import Dispatcher

BOUND = timedelta(minutes=10)  # Settings.stranded_send_minutes
X = "x"


async def test_orphaned_incident_replies_are_queued_once_past_the_bound_and_a_fixed_status_superseded(db):
    old, young = utcnow() - BOUND - timedelta(minutes=1), utcnow()
    async with db.session() as s:
        for iid, status in ((1, "closed"), (11, "open")):  # "incident:1:" is no prefix of "incident:11:"
            s.add(Incident(id=iid, dedup_key=f"outage:x:{iid}", issue_type="outage", channel=X, title="Outage",
                           status=status))
        await s.flush()
        s.add(IncidentUpdate(incident_id=1, kind="fixed"))
        rows = {  # key -> (kind, status, created)
            "incident:1:update:5:author:ana": ("status", "pending", old),  # fixed since: queued, superseded
            "incident:11:update:6:author:ben": ("status", "pending", old),
            "incident:1:fixed:author:ana": ("status_fixed", "pending", old),
            "incident:11:update:6:author:cy": ("status", "pending", young),  # its deliverer may be at it
            "incident:11:update:6:author:dee": ("status", "queued", old),
            "agent:7": ("agent", "pending", old),  # release_orphans' (delivered at once, unpaced)
        }
        for key, (kind, status, created) in rows.items():
            s.add(Reply(dedup_key=key, platform=X, kind=kind, text=key, status=status, created_at=created))
        await s.commit()
        ids = {r.dedup_key: r.id for r in await s.scalars(select(Reply))}
    x = SentOnX()
    pacer = Dispatcher(db, {X: x}, dry_run=False, paced_per_minute=2)
    assert await pacer.queue_orphans() == [ids["incident:1:update:5:author:ana"],
                                           ids["incident:11:update:6:author:ben"], ids["incident:1:fixed:author:ana"]]
    assert await pacer.queue_orphans() == []
    assert await pacer.release_queued() == 2  # the channel's pace: the oldest two of those still queued
    assert x.calls == ["incident:11:update:6:author:ben", "incident:1:fixed:author:ana"]
    async with db.session() as s:
        left = {r.dedup_key: r.status for r in await s.scalars(select(Reply))}
    assert left == {"incident:1:update:5:author:ana": "superseded", "incident:11:update:6:author:ben": "sent",
                    "incident:1:fixed:author:ana": "sent", "incident:11:update:6:author:cy": "pending",
                    "incident:11:update:6:author:dee": "queued", "agent:7": "pending"}
