"""The retention purge and the sign-in audit entries of older releases, on SQLite and PostgreSQL:
they kept the client's IP address in their details, in an audit log never purged by age; the purge
strips the address, whatever the entry's age, and keeps the rest of the entry."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from models import AuditEvent
from models.base import utcnow
from service import retention


async def test_the_purge_strips_the_client_address_older_sign_in_entries_kept_and_nothing_else(db):
    async with db.session() as s:
        s.add_all([
            AuditEvent(actor="session:alice", action="login.success", object_type="user", object_id="1",
                       details={"ip": "203.0.113.7"}, at=utcnow() - timedelta(days=900)),
            AuditEvent(actor="session:bob", action="login.throttled", object_type="user", object_id="2",
                       details={"ip": "203.0.113.8", "limit": "user"}),  # today: younger than any cutoff
            AuditEvent(actor="session:alice", action="logout", object_type="user", object_id="1",
                       details={"ip": "203.0.113.7"}),
            AuditEvent(actor="admin", action="webhook.created", object_type="webhook", object_id="3",
                       details={"ip": "not a sign-in: left as it is"}),
        ])
        await s.commit()
    cutoff = retention.cutoff_for(365)
    assert (await retention.purge_plan(db, cutoff))["sign_in_addresses"] == 3
    assert (await retention.purge(db, cutoff, dry_run=True))["sign_in_addresses"] == 3
    counts = await retention.purge(db, cutoff)
    assert counts["sign_in_addresses"] == 3
    async with db.session() as s:
        events = {e.action: e.details for e in await s.scalars(select(AuditEvent).where(
            AuditEvent.action != "privacy.purged"))}
    assert events == {"login.success": {}, "login.throttled": {"limit": "user"}, "logout": {},
                      "webhook.created": {"ip": "not a sign-in: left as it is"}}
    assert (await retention.purge(db, cutoff)) == Counter()  # done once
